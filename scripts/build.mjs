// `npm run build`: tsc compiles src/ to dist/.tsc/, then esbuild bundles that into dist/, with
// the dashboard's static files copied beside it. A bundled proxy loads a couple of dozen files
// instead of ~115 modules of its own and of its dependencies: resolving and linking that many
// ES modules at startup warmed V8's optimizing compilers into several MiB of extra resident
// code before the first request (issue 5, idle RSS; bench/tools/idle-rss.sh).
//
// Two bundles, one per thread that starts from a file: dist/cli.js (bin/ and every cluster
// worker; the commands' modules, imported when a command runs, are inside it and evaluated only
// then) and dist/admin/request-log-worker.js (the request-log reader thread, its own isolate).
// One file, not shared chunks: each file costs the ES module loader path and URL work at
// startup. Files that locate other files do it from the package root (src/paths.ts). Native
// addons, and what src/ reads with createRequire at run time, stay in node_modules.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
// `--out DIR`: build somewhere else (test/built-package.test.ts lays out a package around it)
const outAt = process.argv.indexOf('--out');
const out = outAt > 0 && process.argv[outAt + 1] ? resolve(process.argv[outAt + 1]) : join(root, 'dist');
const tscOut = join(out, '.tsc');

rmSync(out, { recursive: true, force: true });
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
  // native addons; pino-pretty (required on demand); what src/ reads with createRequire
  external: ['better-sqlite3', 'bcrypt', 'pino-pretty', 'undici', 'prom-client', '@peculiar/x509', 'reflect-metadata'],
  // CommonJS dependencies inside an ES module bundle call require() for Node's built-ins
  banner: { js: "import { createRequire as __mtlsCreateRequire } from 'node:module'; const require = __mtlsCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
cpSync(join(root, 'src/admin/dashboard'), join(out, 'admin/dashboard'), { recursive: true });
rmSync(tscOut, { recursive: true, force: true });
