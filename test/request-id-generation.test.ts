// Generated request ids are random version 4 UUIDs (RFC 9562 §5.4), distinct across the
// refills of the random batch they are cut from (src/http/headers.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newRequestId } from '../src/http/headers.ts';

const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('generated request ids are distinct version 4 UUIDs across batch refills', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 1000; i++) {
    const id = newRequestId();
    assert.match(id, V4);
    seen.add(id);
  }
  assert.equal(seen.size, 1000);
});
