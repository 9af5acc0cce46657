// Bodies whose every part differs from the others: a byte taken from the wrong read (a view of a
// reused read buffer kept instead of a copy) changes the body's sha256.

/** Block i: its bytes depend on i, so two different blocks never look alike. */
export function block(i: number, size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = (i * 2654435761) >>> 0;
  for (let k = 0; k < size; k++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[k] = x >>> 24;
  }
  return b;
}

/** Block sizes that straddle TLS records and the 16 KiB read buffers, to be repeated. */
export const SIZES = [1, 700, 16384, 16385, 40000, 3, 65536, 9000, 16383, 100000];
