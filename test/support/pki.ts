// Test PKI: a fresh CA per run, written to a temp folder so configs can point at files.
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAuthority, issue, type Authority, type Issued, type IssueOptions } from '../../src/pki/dev-pki.ts';

export interface TestPki {
  dir: string;
  ca: Authority;
  /** Server cert for localhost / 127.0.0.1 (serverAuth). */
  server: Issued;
  /** Client cert CN=test-client, URI spiffe://test/client, DNS client.internal (clientAuth). */
  client: Issued;
  /** The proxy's client cert toward upstreams (CN=proxy). */
  proxyClient: Issued;
  /** Write PEM text to a file in `dir`, return its path. */
  file(name: string, pem: string): string;
  issue(opts: IssueOptions): Promise<Issued>;
  cleanup(): void;
}

export async function makeTestPki(): Promise<TestPki> {
  const dir = mkdtempSync(join(tmpdir(), 'mtls-test-'));
  const ca = await createAuthority('test CA');
  const server = await issue(ca, { cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'], usage: ['server'] });
  const client = await issue(ca, { cn: 'test-client', org: 'Example', dns: ['client.internal'], uris: ['spiffe://test/client'], usage: ['client'] });
  const proxyClient = await issue(ca, { cn: 'proxy', uris: ['spiffe://test/proxy'], usage: ['client'] });
  const file = (name: string, pem: string): string => {
    const p = join(dir, name);
    writeFileSync(p, pem, { mode: 0o600 });
    return p;
  };
  return {
    dir, ca, server, client, proxyClient, file,
    issue: (opts) => issue(ca, opts),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
