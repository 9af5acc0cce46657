// Writes a throwaway PKI with the file names bench/origin.ts and bench/loadgen.ts read:
//   node bench/tools/setup-pki.ts <dir>
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDevPki } from '../../src/pki/dev-pki.ts';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: node bench/tools/setup-pki.ts <dir>\n');
  process.exit(2);
}
mkdirSync(dir, { recursive: true });
const p = await createDevPki();
const files: Record<string, string> = {
  'ca.pem': p.ca.cert,
  'server.pem': p.server.cert,
  'server-key.pem': p.server.key,
  'client.pem': p.client.cert,
  'client-key.pem': p.client.key,
  'proxy.pem': p.proxy.cert,
  'proxy-key.pem': p.proxy.key,
};
for (const [name, pem] of Object.entries(files)) writeFileSync(join(dir, name), pem, { mode: 0o600 });
