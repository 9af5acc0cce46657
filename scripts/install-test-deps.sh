#!/usr/bin/env bash
# System packages the tests need beyond npm: Debian's Chromium for the dashboard browser test
# (driven by playwright-core, which never downloads a browser) and curl for the demo checks.
# Idempotent: installs only what is missing. Needs root (or sudo) and Debian's apt.
set -euo pipefail

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v curl >/dev/null 2>&1 || missing+=(curl)

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-test-deps: chromium and curl already present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "install-test-deps: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi

echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y "${missing[@]}"

if [ ! -x /usr/bin/chromium ]; then
  echo "install-test-deps: /usr/bin/chromium still missing after apt-get install" >&2
  exit 1
fi
echo "install-test-deps: done"
