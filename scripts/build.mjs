// `npm run build`: tsc compiles src/ into a temporary .tsc-* folder, then esbuild bundles that
// into dist/, with the dashboard's static files copied beside it. A bundled proxy loads a couple
// of dozen files instead of ~115 modules of its own and of its dependencies: resolving and
// linking that many ES modules at startup warmed V8's optimizing compilers into several MiB of
// extra resident code before the first request (issue 5, idle RSS; bench/tools/idle-rss.sh).
//
// Two entry points, one per thread that starts from a file: dist/cli.js (bin/ and every cluster
// worker) and dist/admin/request-log-worker.js (the request-log reader thread, its own isolate).
// Code split into shared chunks (dist/chunks/): each command's modules are imported when that
// command runs, and an external that only a command uses (bcrypt, better-sqlite3, prom-client,
// @peculiar/x509) is imported by its chunk, not hoisted into cli.js where every start would load
// it. Whitespace is minified (names are kept, so stack traces still read; the source maps give
// the original lines with --enable-source-maps): V8 keeps each script's source on its heap, and
// this is ~0.3 MiB of the idle RSS. Files that locate other files do it from the package root
// (src/paths.ts). Native addons, and what src/ reads with createRequire at run time, stay in
// node_modules.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
// `--out DIR`: build somewhere else (test/built-package.test.ts lays out a package around it)
const outAt = process.argv.indexOf('--out');
const out = outAt > 0 && process.argv[outAt + 1] ? resolve(process.argv[outAt + 1]) : join(root, 'dist');
// tsc's output goes inside the checkout, whatever --out is: esbuild resolves a package from the
// importing file's folder upward, so from here it finds this checkout's node_modules, never one
// that happens to sit above a temporary --out folder.
const tscOut = mkdtempSync(join(root, '.tsc-'));

// pino loads its transport machinery (thread-stream, node:worker_threads, node:assert) when it
// is imported, though the proxy never starts a transport (log.ts writes stderr through its own
// sonic-boom, or through pino-pretty in-process). Those built-ins and their helpers are ~1 MiB
// of the idle proxy's RSS (issue 5; bench/tools/idle-rss.sh: 60.8 -> 59.7 MiB with the minified
// whitespace). These rewrites make each of those require() calls happen when first used, which
// in the proxy is never; the code is still in the bundle and still works if something does use
// it. A rewrite whose text is not found fails the build: a pino or sonic-boom upgrade must be
// looked at, not silently lose the trim.
const LAZY_REQUIRES = [
  {
    file: 'node_modules/pino/lib/tools.js',
    edits: [
      ["const { isMainThread } = require('worker_threads')", "const isMainThread = () => require('worker_threads').isMainThread"],
      ['if (!opts.sync && isMainThread) {', 'if (!opts.sync && isMainThread()) {'],
    ],
  },
  {
    file: 'node_modules/pino/lib/transport.js',
    edits: [
      ["const ThreadStream = require('thread-stream')", "const ThreadStream = function (opts) { return new (require('thread-stream'))(opts) }"],
    ],
  },
  {
    file: 'node_modules/sonic-boom/index.js',
    edits: [["const assert = require('assert')", "const assert = (...args) => require('assert')(...args)"]],
  },
];
const lazyRequires = {
  name: 'lazy-requires',
  setup(b) {
    const seen = new Set();
    b.onLoad({ filter: /[\\/]node_modules[\\/](pino|sonic-boom)[\\/].*\.js$/ }, (args) => {
      const rel = relative(root, args.path).split(sep).join('/');
      if (rel.startsWith('..')) throw new Error(`scripts/build.mjs: ${args.path} resolved outside this checkout`);
      const entry = LAZY_REQUIRES.find((e) => e.file === rel);
      if (!entry) return undefined;
      let text = readFileSync(args.path, 'utf8');
      for (const [from, to] of entry.edits) {
        if (text.split(from).length !== 2) throw new Error(`scripts/build.mjs: "${from}" is not found exactly once in ${rel}; update LAZY_REQUIRES for this version`);
        text = text.replace(from, to);
      }
      seen.add(rel);
      return { contents: text, loader: 'js' };
    });
    b.onEnd(() => {
      const missed = LAZY_REQUIRES.filter((e) => !seen.has(e.file)).map((e) => e.file);
      if (missed.length > 0) throw new Error(`scripts/build.mjs: not in the bundle any more: ${missed.join(', ')}; update LAZY_REQUIRES`);
    });
  },
};

// Node's built-ins, imported by src/ as ES modules, taken through process.getBuiltinModule()
// instead: each `import { a, b as c } from 'node:x'` in tsc's output becomes
// `const { a, b: c } = process.getBuiltinModule('node:x')`. An ES import of a built-in makes
// Node build its ES facade, which reads every export, lazy ones included: importing anything
// from node:fs loaded node:fs/promises (with readline and the REPL history), from node:crypto
// its webcrypto, from node:util worker_threads. This way only the names a module imports are
// read. The proxy's idle RSS is ~0.9 MiB lower (bench/tools/idle-rss.sh: 59.7 -> 58.8 MiB).
// tsc prints imports at the top of a module, so the constants are set where the imports were.
const BUILTIN_IMPORT = /^import\s+([^;'"]+?)\s+from\s+'(node:[^']+)';$/gm;
function builtinConstants(text, file) {
  return text.replace(BUILTIN_IMPORT, (_all, clause, spec) => {
    const m = /^(?:([A-Za-z_$][\w$]*)\s*,?\s*)?(?:\{([^}]*)\}|\*\s+as\s+([A-Za-z_$][\w$]*))?$/.exec(clause.trim());
    if (m === null || (m[1] === undefined && m[2] === undefined && m[3] === undefined)) {
      throw new Error(`scripts/build.mjs: cannot rewrite \`import ${clause} from '${spec}'\` in ${file}`);
    }
    const get = `process.getBuiltinModule(${JSON.stringify(spec)})`;
    const out = [];
    if (m[1] !== undefined) out.push(`const ${m[1]} = ${get};`);
    if (m[3] !== undefined) out.push(`const ${m[3]} = ${get};`);
    if (m[2] !== undefined) {
      const names = m[2].split(',').map((n) => n.trim()).filter((n) => n !== '').map((n) => n.replace(/^([\w$]+)\s+as\s+([\w$]+)$/, '$1: $2'));
      out.push(`const { ${names.join(', ')} } = ${get};`);
    }
    return out.join(' ');
  });
}
const builtinImports = {
  name: 'builtin-imports',
  setup(b) {
    b.onLoad({ filter: /\.js$/ }, (args) => {
      if (!args.path.startsWith(tscOut + sep)) return undefined;
      const file = relative(tscOut, args.path);
      const contents = builtinConstants(readFileSync(args.path, 'utf8'), file);
      // an import of a built-in in a shape the rewrite missed would silently keep the facade
      if (/^(?:import|export)\b[^;]*\bfrom\s*['"]node:/m.test(contents)) throw new Error(`scripts/build.mjs: an import of a Node built-in in ${file} was not rewritten`);
      return { contents, loader: 'js' };
    });
  },
};

rmSync(out, { recursive: true, force: true });
try {
  execFileSync(process.execPath, [`${root}node_modules/typescript/bin/tsc`, '-p', 'tsconfig.json', '--outDir', tscOut], { cwd: root, stdio: 'inherit' });

  const entries = ['cli', 'admin/request-log-worker'];
  await build({
    absWorkingDir: root,
    entryPoints: entries.map((f) => join(tscOut, `${f}.js`)),
    outdir: out,
    outbase: tscOut,
    bundle: true,
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    packages: 'bundle',
    format: 'esm',
    platform: 'node',
    target: 'node24',
    sourcemap: true,
    minifyWhitespace: true,
    // native addons; pino-pretty (required on demand); what src/ reads with createRequire
    external: ['better-sqlite3', 'bcrypt', 'pino-pretty', 'undici', 'prom-client', '@peculiar/x509', 'reflect-metadata'],
    // CommonJS dependencies inside an ES module bundle call require() for Node's built-ins
    banner: { js: "import { createRequire as __mtlsCreateRequire } from 'node:module'; const require = __mtlsCreateRequire(import.meta.url);" },
    logLevel: 'warning',
    plugins: [lazyRequires, builtinImports],
  });
  cpSync(join(root, 'src/admin/dashboard'), join(out, 'admin/dashboard'), { recursive: true });
} finally {
  rmSync(tscOut, { recursive: true, force: true });
}
