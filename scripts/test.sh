#!/usr/bin/env bash
# Install STaR Studio with its test tools, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --test
exec "${PYTHON:-python3}" -m pytest "$@"
