// The request-duration histogram (src/admin/histogram.ts) is our own, observed with number
// additions. Its exposition must be what prom-client's Histogram would print for the same
// observations (a property test over random values, bucket bounds included), and the workers'
// copies must merge through AggregatorRegistry like prom-client's own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AggregatorRegistry, Histogram, Registry } from 'prom-client';
import { FastHistogram } from '../src/admin/histogram.ts';

const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const help = 'h';

test('the exposition equals prom-client Histogram for the same observations', async () => {
  // values on the bounds themselves (le is inclusive), between them, at 0 and beyond the last
  const value = fc.oneof(fc.constantFrom(0, ...BUCKETS, 31, 1e6), fc.double({ min: 0, max: 60, noNaN: true }));
  const obs = fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), value), { maxLength: 200 });
  await fc.assert(fc.asyncProperty(obs, async (observations) => {
    const ours = new Registry();
    const theirs = new Registry();
    const fast = new FastHistogram({ name: 'd_seconds', help, labelNames: ['route'], buckets: BUCKETS, registers: [ours] });
    const ref = new Histogram({ name: 'd_seconds', help, labelNames: ['route'], buckets: BUCKETS, registers: [theirs] });
    for (const [route, v] of observations) {
      fast.series({ route }).observe(v);
      ref.labels(route).observe(v);
    }
    assert.equal(await ours.metrics(), await theirs.metrics());
  }), { numRuns: 200 });
});

test('a series is exported from its first use, at zero', async () => {
  const r = new Registry();
  const h = new FastHistogram({ name: 'd_seconds', help, labelNames: ['listener', 'upstream'], buckets: [0.5, 1], registers: [r] });
  h.series({ listener: 'edge', upstream: 'app' });
  const text = await r.metrics();
  assert.match(text, /^d_seconds_bucket\{le="0.5",listener="edge",upstream="app"\} 0$/m);
  assert.match(text, /^d_seconds_bucket\{le="\+Inf",listener="edge",upstream="app"\} 0$/m);
  assert.match(text, /^d_seconds_count\{listener="edge",upstream="app"\} 0$/m);
  h.series({ listener: 'edge', upstream: 'app' }).observe(0.7);
  assert.match(await r.metrics(), /^d_seconds_bucket\{le="1",listener="edge",upstream="app"\} 1$/m);
  r.resetMetrics();
  assert.doesNotMatch(await r.metrics(), /d_seconds_count/);
});

test('workers\' histograms add up through AggregatorRegistry, as prom-client\'s do', async () => {
  const merge = async (make: (r: Registry) => (v: number) => void): Promise<string> => {
    const workers = [new Registry(), new Registry()];
    const observe = workers.map(make);
    observe[0]!(0.05);
    observe[1]!(0.5);
    observe[1]!(5);
    return await AggregatorRegistry.aggregate(await Promise.all(workers.map((r) => r.getMetricsAsJSON()))).metrics();
  };
  const ours = await merge((r) => {
    const s = new FastHistogram({ name: 'd_seconds', help, labelNames: ['upstream'], buckets: [0.1, 1], registers: [r] }).series({ upstream: 'app' });
    return (v) => s.observe(v);
  });
  const theirs = await merge((r) => {
    const h = new Histogram({ name: 'd_seconds', help, labelNames: ['upstream'], buckets: [0.1, 1], registers: [r] }).labels('app');
    return (v) => h.observe(v);
  });
  assert.equal(ours, theirs);
  assert.match(ours, /^d_seconds_bucket\{le="1",upstream="app"\} 2$/m);
  assert.match(ours, /^d_seconds_count\{upstream="app"\} 3$/m);
});

test('buckets must be finite and distinct', () => {
  assert.throws(() => new FastHistogram({ name: 'x', help, labelNames: [], buckets: [1, 1], registers: [] }), RangeError);
  assert.throws(() => new FastHistogram({ name: 'x', help, labelNames: [], buckets: [Infinity], registers: [] }), RangeError);
});
