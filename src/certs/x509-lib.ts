// @peculiar/x509, loaded on first use. It (with reflect-metadata, which it needs loaded first)
// costs ~16 MiB of RSS, and a proxy without [admin] or a CRL never needs it: certificate
// descriptions are for the admin API and metrics, CRL checks only for a configured `crl`.
import { createRequire } from 'node:module';
import type * as X509 from '@peculiar/x509';

let lib: typeof X509 | null = null;

export function x509(): typeof X509 {
  if (lib === null) {
    const require = createRequire(import.meta.url);
    require('reflect-metadata');
    lib = require('@peculiar/x509') as typeof X509;
  }
  return lib;
}
