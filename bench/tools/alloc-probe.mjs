// Preloaded into the proxy by bench/tools/alloc.sh (node --import): counts the bytes allocated
// on the JS heap over a window that SIGUSR2 opens and closes, and the GCs in it. Plain .mjs so
// it loads into the dist build as well as the sources.
//   bytes allocated = used heap at the end - used heap at the start + what each GC freed
// (v8.GCProfiler reports the heap before and after each GC; it collects in C++, so the probe
// allocates nothing on the JS heap during the window). With ALLOC_PROBE_SAMPLE=<bytes> it also
// runs the sampling heap profiler over the window, objects later collected by either GC
// included, and writes a .heapprofile beside the result.
import v8 from 'node:v8';
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';

const out = process.env.ALLOC_PROBE_OUT ?? '/tmp/alloc-probe.json';
const sampleInterval = Number(process.env.ALLOC_PROBE_SAMPLE ?? 0);
let profiler = null;
let usedAtStart = 0;
let session = null;

process.on('SIGUSR2', () => {
  if (profiler === null) {
    if (sampleInterval > 0) {
      session = new Session();
      session.connect();
      session.post('HeapProfiler.startSampling', { samplingInterval: sampleInterval, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    }
    profiler = new v8.GCProfiler();
    usedAtStart = v8.getHeapStatistics().used_heap_size;
    profiler.start();
    return;
  }
  const usedAtEnd = v8.getHeapStatistics().used_heap_size;
  const { statistics } = profiler.stop();
  profiler = null;
  let freed = 0;
  const gcs = {};
  for (const s of statistics) {
    freed += s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize;
    gcs[s.gcType] = (gcs[s.gcType] ?? 0) + 1;
  }
  const result = { allocated: usedAtEnd - usedAtStart + freed, gcs };
  if (session !== null) {
    session.post('HeapProfiler.stopSampling', (err, r) => {
      if (!err) writeFileSync(out.replace(/\.json$/, '') + '.heapprofile', JSON.stringify(r.profile));
      session.disconnect();
      session = null;
      writeFileSync(out, JSON.stringify(result));
    });
  } else {
    writeFileSync(out, JSON.stringify(result));
  }
});
