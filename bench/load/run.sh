#!/usr/bin/env bash
# Runs the side-by-side load benchmark of Outpost against nginx and distribution-proxy, all
# started on 127.0.0.1 and stopped again by bench.py (by pid, on failure and Ctrl-C too).
# Usage: bench/load/run.sh [--quick] [--out FILE] [--keep-work]
# The outpost binary is $OUTPOST_BINARY, else build/outpost, else built into build/. The
# suite's own programs (outpost_load, outpost_index_fill) are taken from the same folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)

# Installs nginx, wrk and the registry when missing (needs root then), else does nothing.
"$root/packaging/install-deps.sh" --bench

binary=${OUTPOST_BINARY:-}
if [[ -z "$binary" ]]; then
  binary="$root/build/outpost"
  for program in outpost outpost_load outpost_index_fill; do
    if [[ ! -x "$root/build/$program" ]]; then
      echo "bench: $root/build/$program not found; building with packaging/build.sh" >&2
      "$root/packaging/build.sh" outpost outpost_load outpost_index_fill
      break
    fi
  done
fi
if [[ ! -x "$binary" ]]; then
  echo "bench: outpost binary $binary is missing or not executable; set OUTPOST_BINARY" >&2
  exit 1
fi

# Debian's python3, not a pyenv one that may come first on PATH: the driver uses only the
# standard library of Debian 12's Python 3.11.
exec /usr/bin/python3 -B "$root/bench/load/bench.py" --outpost "$binary" "$@"
