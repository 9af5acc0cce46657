#!/usr/bin/env bash
# ab.sh for two builds: A and B are checkouts (their bin/mtls-proxy.js, dist/ with
# MTLS_PROXY_DIST=1), both in the "off" variant, e.g. bench/tools/ab-builds.sh /tmp/base . 7
# (LG_FLAGS=--close: a new TLS connection per request). Everything else as ab.sh.
set -euo pipefail
ROOT_A=$(cd "${1:?checkout A}" && pwd) ROOT_B=$(cd "${2:?checkout B}" && pwd) exec "$(dirname "$0")/ab.sh" off off "${3:-5}"
