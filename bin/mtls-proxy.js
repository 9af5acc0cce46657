#!/usr/bin/env -S node --max-semi-space-size=1
// --max-semi-space-size=1: a proxy makes many short-lived objects per chunk, and V8 otherwise
// grows the young generation to tens of MiB of RSS that buy nothing here (measured with
// 256 MiB streamed: peak RSS +50 MiB at the default, +10 MiB at 1 MiB, and no slower).
// It must be given at startup (v8.setFlagsFromString is too late), hence here and in
// package.json's start script.
// Entry point. Checked before anything else loads: better-sqlite3 13 crashes on
// Node 20, and the sources rely on Node 24's built-in TypeScript type stripping.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `mtls-proxy: Node.js ${process.versions.node} is too old; Node 24 or newer is required ` +
      '(inside the checkout, run it through npm: `npm start`, `npx mtls-proxy ...`).\n',
  );
  process.exit(1);
}
// ArrayBuffer sweeping on the main thread, during the scavenge. By default V8 frees the backing
// stores of dead Buffers on a background thread; with the proxy's core busy (or pinned) that
// thread lags, the bytes still count as external memory, and V8 answers the "pressure" with a
// full mark-compact every ~30 ms. Measured with bench/tools/after-load.sh (256 MiB downloads
// after small-request load): 40 mark-compacts per GiB and 435 ms of proxy CPU per 256 MiB by
// default, 8 and 235 ms with this. V8 reads the flag at each sweep, so setting it here, before
// any load, takes effect.
// Built-ins through process.getBuiltinModule, not import(): an ES import of node:fs reads its
// lazy `promises` getter, which loads node:fs/promises and readline (scripts/build.mjs does the
// same for the bundle; ~0.9 MiB of idle RSS together).
const v8 = process.getBuiltinModule('node:v8');
v8.setFlagsFromString('--no-concurrent-array-buffer-sweeping');
const { existsSync } = process.getBuiltinModule('node:fs');
const here = new URL('..', import.meta.url);
// A checkout runs the TypeScript sources directly; a built package runs dist/.
// MTLS_PROXY_DIST=1 runs dist/ in a checkout too (after `npm run build`), as the bench does:
// Node's type stripping costs ~27 MiB of RSS that a published package never pays.
const useDist = process.env.MTLS_PROXY_DIST === '1' || !existsSync(new URL('src/cli.ts', here));
const entry = new URL(useDist ? 'dist/cli.js' : 'src/cli.ts', here);
if (useDist && !existsSync(entry)) {
  process.stderr.write('mtls-proxy: dist/cli.js is missing; run `npm run build` first.\n');
  process.exit(1);
}
const { main } = await import(entry.href);
await main(process.argv);
