#!/usr/bin/env bash
# Installs every Debian 12 package that building, running and testing Outpost needs.
# Idempotent: packages already present are skipped, so reruns cost one dpkg query.
# Usage: packaging/install-deps.sh [--build-only | --bench]
#   --build-only  only what building needs
#   --bench       also the anchors and load generator of bench/load/run.sh
set -euo pipefail

build_packages=(
  build-essential cmake ninja-build pkg-config
  libuv1-dev libssl-dev librocksdb-dev libmimalloc-dev libxxhash-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libspdlog-dev libfmt-dev libyaml-cpp-dev libcli11-dev
  node-llhttp ca-certificates
)

# Real peers that the integration tests start on 127.0.0.1.
test_packages=(
  docker-registry skopeo containerd umoci apache2-utils python3 python3-jwt
  openssl curl
)

# The nginx anchor and the HTTP load generator of bench/load/run.sh.
bench_packages=(nginx-light wrk)

mode="${1:-}"
case "$mode" in
  "" | --build-only | --bench) ;;
  *)
    echo "install-deps: unknown option '$mode'; use --build-only, --bench or no option" >&2
    exit 2
    ;;
esac

wanted=("${build_packages[@]}")
if [[ "$mode" != "--build-only" ]]; then
  wanted+=("${test_packages[@]}")
fi
if [[ "$mode" == "--bench" ]]; then
  wanted+=("${bench_packages[@]}")
fi

missing=()
for package in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed'; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"

# The Debian packages enable and start their own daemons; Outpost's tests start private
# instances on loopback instead, so stop the system ones where a service manager runs.
if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
  systemctl disable --now docker-registry containerd nginx 2>/dev/null || true
fi
