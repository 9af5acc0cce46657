// Where the package's own files are: found from the package root, not from each module's
// location, because the build bundles dist/ (scripts/bundle.mjs) and a module's code may then
// run from a shared chunk in another folder.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const NAME = 'mtls-proxy';

interface PackageJson {
  name?: unknown;
  version?: unknown;
}

function readPackageJson(dir: string): PackageJson | null {
  const file = join(dir, 'package.json');
  if (!existsSync(file)) return null;
  const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
  return typeof parsed === 'object' && parsed !== null ? (parsed as PackageJson) : null;
}

/** The nearest folder at or above `from` whose package.json is ours. */
export function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (readPackageJson(dir)?.name === NAME) return dir;
    if (dirname(dir) === dir) throw new Error(`${NAME}: no package.json named "${NAME}" at or above ${from}`);
  }
}

const here = fileURLToPath(import.meta.url);
const fromSources = here.endsWith('.ts');

/** The package's folder (package.json, src/, dist/, fuzz/). */
export const PACKAGE_ROOT = findPackageRoot(dirname(here));

/** The tree the running code came from: src/ in a checkout run from source, dist/ when built. */
export const CODE_ROOT = join(PACKAGE_ROOT, fromSources ? 'src' : 'dist');

/** A module of the running tree by its path under src/ without extension, e.g. "admin/request-log-worker". */
export function codeFile(pathNoExt: string): string {
  return join(CODE_ROOT, pathNoExt + (fromSources ? '.ts' : '.js'));
}

/** package.json's version ("0.0.0" if it has none). */
export const VERSION: string = (() => {
  const v = readPackageJson(PACKAGE_ROOT)?.version;
  return typeof v === 'string' ? v : '0.0.0';
})();
