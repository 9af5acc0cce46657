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
const { existsSync } = await import('node:fs');
const here = new URL('..', import.meta.url);
// A checkout runs the TypeScript sources directly; a built package runs dist/.
const entry = existsSync(new URL('src/cli.ts', here)) ? new URL('src/cli.ts', here) : new URL('dist/cli.js', here);
const { main } = await import(entry.href);
await main(process.argv);
