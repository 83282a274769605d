#!/usr/bin/env bash
# Configures and builds Outpost into build/; the server binary lands at build/outpost.
# Usage: packaging/build.sh [TARGET...]   (no target: everything, tests and benchmarks too)
# Warnings are errors: the supported toolchain is Debian 12's g++ 12, and run.sh and test.sh
# share one configuration so that neither rebuilds what the other built.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DOUTPOST_WERROR=ON >/dev/null
ninja -C "$root/build" -j "$(nproc)" "$@"
