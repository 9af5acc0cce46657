// Summarises a sampling heap profile (bench/tools/alloc.sh with ALLOC_PROBE_SAMPLE): bytes
// allocated per request by allocating function, with the JS callers that lead to it.
//   node bench/tools/heap-summary.ts <file.heapprofile> <requests> [N] [depth]
import { readFileSync } from 'node:fs';

interface Frame { functionName: string; url: string; lineNumber: number; columnNumber: number }
interface Node { id: number; callFrame: Frame; selfSize: number; children: Node[] }
interface Sample { size: number; nodeId: number; ordinal: number }
interface Profile { head: Node; samples: Sample[] }

const [file, reqArg] = process.argv.slice(2);
if (file === undefined || reqArg === undefined) {
  process.stderr.write('usage: node bench/tools/heap-summary.ts <file.heapprofile> <requests> [N] [depth]\n');
  process.exit(2);
}
const requests = Number(reqArg);
const top = Number(process.argv[4] ?? 40);
const depth = Number(process.argv[5] ?? 4);
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;

const name = (f: Frame): string => {
  const url = f.url.replace(/^file:\/\/.*?\/(node_modules|src|dist|bench)\//, '$1/').replace(/^node:/, '');
  return `${f.functionName || '(anonymous)'}${url ? ` ${url}:${f.lineNumber + 1}` : ''}`;
};
const bySite = new Map<string, number>();
const byFile = new Map<string, number>();
let total = 0;
const walk = (n: Node, stack: string[]): void => {
  const s = [name(n.callFrame), ...stack];
  if (n.selfSize > 0) {
    const key = s.slice(0, depth).join(' <- ');
    bySite.set(key, (bySite.get(key) ?? 0) + n.selfSize);
    const f = n.callFrame.url.replace(/^file:\/\/.*?\/((node_modules\/[^/]+)|src\/.*|dist\/.*)$/, '$1') || n.callFrame.functionName;
    byFile.set(f, (byFile.get(f) ?? 0) + n.selfSize);
    total += n.selfSize;
  }
  for (const c of n.children) walk(c, s);
};
walk(p.head, []);
const show = (title: string, m: Map<string, number>): void => {
  process.stdout.write(`\n${title} (total ${(total / requests).toFixed(0)} bytes/request)\n`);
  for (const [k, b] of [...m].sort((a, c) => c[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${(b / requests).toFixed(0).padStart(6)}  ${k}\n`);
  }
};
show('bytes/request by file', byFile);
show('bytes/request by site', bySite);
