#!/usr/bin/env bash
# Installs what is missing (the test peers included), builds with warnings as errors, and runs
# every test: unit tests, then integration tests against real registries and clients on
# 127.0.0.1. Extra arguments go to ctest, for example -L unit or -R Skopeo.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/packaging/install-deps.sh" --bench
"$root/packaging/build.sh"
cd "$root/build"
ctest --output-on-failure --timeout 600 -j "$(nproc)" "$@"
