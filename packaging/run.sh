#!/usr/bin/env bash
# Installs what is missing, builds, and runs Outpost in the foreground with the default
# configuration (conf/outpost.yaml: 127.0.0.1:5000, data in data/). Extra arguments go to
# `outpost serve`, for example --config FILE or --log-level debug.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/packaging/install-deps.sh" --build-only
"$root/packaging/build.sh" outpost
cd "$root"
exec "$root/build/outpost" serve --config conf/outpost.yaml "$@"
