#!/usr/bin/env bash
# Configures and builds Outpost into build/ (the binary lands at build/outpost).
# Usage: packaging/build.sh [extra cmake arguments]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
ninja -C "$root/build" -j "$(nproc)"
