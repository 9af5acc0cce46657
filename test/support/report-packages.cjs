// Preloaded (-r) into a child proxy by lazy-admin-plane.test.ts: on SIGUSR2 it writes the npm
// packages loaded so far (the CommonJS cache, which ESM imports of CJS packages fill too) to
// stderr as one JSON line.
'use strict';
process.on('SIGUSR2', () => {
  const names = new Set();
  for (const file of Object.keys(require.cache)) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file);
    if (m) names.add(m[1]);
  }
  process.stderr.write(`${JSON.stringify({ loaded_packages: [...names].sort() })}\n`);
});
