// Loaded with `node --import` in front of the mtls-proxy bin by test/cli-selftest.test.ts only:
// a deliberately weakened build (llhttp's lenient flags on every request parser) that the
// selftest must catch. Nothing in src/ or in a config can do this.
import { weakenRequestParsersForTesting } from '../../src/http/llhttp.ts';

// llhttp LENIENT_FLAGS bits (undici/lib/llhttp/constants.js)
const HEADERS = 1 << 0; // CR, LF and NUL inside values, obs-fold
const CHUNKED_LENGTH = 1 << 1; // Content-Length together with Transfer-Encoding: chunked
const TRANSFER_ENCODING = 1 << 3; // Transfer-Encoding that does not end in chunked
const OPTIONAL_CR_BEFORE_LF = 1 << 8; // bare LF line ends
const SPACES_AFTER_CHUNK_SIZE = 1 << 9;

weakenRequestParsersForTesting(HEADERS | CHUNKED_LENGTH | TRANSFER_ENCODING | OPTIONAL_CR_BEFORE_LF | SPACES_AFTER_CHUNK_SIZE);
