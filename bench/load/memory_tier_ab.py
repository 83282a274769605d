#!/usr/bin/python3
"""A/B of Outpost's memory tier: warm GETs with the tier on and off, side by side.

It starts a plain docker-registry upstream and two Outposts in front of it, each with one
event loop: "on" with storage.memory_cache_bytes at 256 MiB and "off" with 0. Both take
storage.memory_cache_max_item_bytes from --max-item-bytes (1 MiB by default), so that on the
"on" side every blob up to that size is in memory. After two warm-up GETs of each blob and of
the manifest through each Outpost, wrk (one thread) runs for --duration against each Outpost
in turn, --repetitions times per case. The script prints the medians with their (min-max)
range: requests per second, and the Outpost's CPU microseconds per request (utime plus stime
from /proc/PID/stat, which varies less than requests per second when the machine is shared).

On a machine with 2 or more cores, both Outposts run on core 1 and wrk, the upstream and
this script on core 0. Every server listens on 127.0.0.1 and is stopped by pid at the end.

    bench/load/memory_tier_ab.py --outpost build/outpost --sizes 4096,32768,524288 \
        --connections 1,16
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import registry_client
from processes import BenchError, ProcessGroup, cpu_seconds, free_port, wait_for_http

REPOSITORY = "bench/app"
ON_BUDGET_BYTES = 256 << 20


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outpost", default="build/outpost", help="the outpost binary")
    parser.add_argument("--sizes", default="4096,32768,524288",
                        help="blob sizes in bytes, comma-separated")
    parser.add_argument("--connections", default="1,16",
                        help="wrk connection counts, comma-separated")
    parser.add_argument("--repetitions", type=int, default=5, help="runs per case and side")
    parser.add_argument("--duration", default="5s", help="wrk duration of one run")
    parser.add_argument("--max-item-bytes", type=int, default=1 << 20,
                        help="storage.memory_cache_max_item_bytes of the \"on\" side")
    return parser.parse_args()


def start_upstream(group, work_dir, cpus):
    port = free_port()
    config_path = os.path.join(work_dir, "registry.yml")
    with open(config_path, "w", encoding="utf-8") as config:
        config.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                     f"    rootdirectory: {work_dir}/registry\nhttp:\n  addr: 127.0.0.1:{port}\n")
    # distribution reads every REGISTRY_* variable as a configuration override.
    env = {name: value for name, value in os.environ.items() if not name.startswith("REGISTRY_")}
    process = group.start("upstream", ["docker-registry", "serve", config_path],
                          os.path.join(work_dir, "registry.log"), env=env, cpus=cpus)
    wait_for_http(port, "/v2/", process)
    return port


def seed(upstream_port, sizes):
    """Push one random blob per size and an OCI manifest; return (blob digests, manifest)."""
    blobs = {size: registry_client.push_blob(upstream_port, REPOSITORY, os.urandom(size))
             for size in sizes}
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = os.urandom(1000)

    def descriptor(media_type, data):
        digest = registry_client.push_blob(upstream_port, REPOSITORY, data)
        return {"mediaType": media_type, "size": len(data), "digest": digest}

    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": registry_client.OCI_MANIFEST_TYPE,
        "config": descriptor(registry_client.OCI_CONFIG_TYPE, config),
        "layers": [descriptor(registry_client.OCI_LAYER_TYPE, layer)]}).encode()
    status, _, body = registry_client.request(
        upstream_port, "PUT", f"/v2/{REPOSITORY}/manifests/v1", body=manifest,
        headers={"Content-Type": registry_client.OCI_MANIFEST_TYPE})
    if status != 201:
        raise BenchError(f"manifest push returned {status}: {body[:200]!r}")
    return blobs, manifest


def start_outpost(group, args, work_dir, name, budget_bytes, upstream_port, cpus):
    folder = os.path.join(work_dir, name)
    os.makedirs(folder)
    port = free_port()
    config_path = os.path.join(folder, "outpost.yaml")
    with open(config_path, "w", encoding="utf-8") as config:
        config.write(
            f"server:\n  listen_host: 127.0.0.1\n  port: {port}\n  loops: 1\n"
            f"storage:\n  data_dir: {folder}/data\n  memory_cache_bytes: {budget_bytes}\n"
            f"  memory_cache_max_item_bytes: {args.max_item_bytes}\n"
            f"log:\n  level: info\n"
            f"remotes:\n  - name: upstream\n    url: http://127.0.0.1:{upstream_port}\n"
            f"    tag_ttl: 1h\n")
    process = group.start(name, [args.outpost, "serve", "--config", config_path],
                          os.path.join(folder, "outpost.log"), cpus=cpus)
    wait_for_http(port, "/healthz", process)
    return port, process


def warm(port, blobs, manifest):
    """GET every blob and the manifest twice and check the bytes."""
    manifest_digest = registry_client.sha256_digest(manifest)
    for digest in blobs.values():
        for _ in range(2):
            status, _, body = registry_client.request(
                port, "GET", f"/v2/upstream/{REPOSITORY}/blobs/{digest}")
            if status != 200 or registry_client.sha256_digest(body) != digest:
                raise BenchError(f"warm-up GET of {digest} returned {status}")
    for _ in range(2):
        status, _, body = registry_client.request(
            port, "GET", f"/v2/upstream/{REPOSITORY}/manifests/{manifest_digest}",
            headers={"Accept": registry_client.OCI_MANIFEST_TYPE})
        if status != 200 or body != manifest:
            raise BenchError(f"warm-up GET of the manifest returned {status}")


def run_wrk(port, path, connections, duration, cpus):
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}",
            "-H", f"Accept: {registry_client.OCI_MANIFEST_TYPE}", f"http://127.0.0.1:{port}{path}"]
    if cpus is not None:
        argv = ["taskset", "-c", cpus] + argv
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    if "Non-2xx or 3xx responses" in output:
        raise BenchError(f"wrk saw error responses for {path}:\n{output}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if rate is None or total is None:
        raise BenchError(f"unexpected wrk output:\n{output}")
    return float(rate.group(1)), int(total.group(1))


def median_and_range(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[0], ordered[-1]


def measure(args, group, work_dir, sizes, connection_counts, server_cpus, client_cpus):
    """Start the servers, warm them, and print one table row per case."""
    upstream_port = start_upstream(group, work_dir, client_cpus)
    blobs, manifest = seed(upstream_port, sizes)
    sides = {}
    for name, budget_bytes in (("on", ON_BUDGET_BYTES), ("off", 0)):
        port, process = start_outpost(group, args, work_dir, name, budget_bytes, upstream_port,
                                      server_cpus)
        warm(port, blobs, manifest)
        sides[name] = (port, process)

    manifest_digest = registry_client.sha256_digest(manifest)
    cases = [("manifest GET by digest", f"/v2/upstream/{REPOSITORY}/manifests/{manifest_digest}")]
    cases += [(f"blob GET {size} B", f"/v2/upstream/{REPOSITORY}/blobs/{digest}")
              for size, digest in blobs.items()]
    print("| connections | case | on: requests/s | off: requests/s | ratio | "
          "on: CPU us/request | off: CPU us/request |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for connections in connection_counts:
        for case, path in cases:
            rates = {"on": [], "off": []}
            cpu = {"on": [], "off": []}
            # The sides alternate, so that a change in the machine's load hits both alike.
            for _ in range(args.repetitions):
                for name, (port, process) in sides.items():
                    before = cpu_seconds([process.pid])
                    rate, requests = run_wrk(port, path, connections, args.duration, client_cpus)
                    used = cpu_seconds([process.pid]) - before
                    rates[name].append(rate)
                    cpu[name].append(used * 1e6 / max(requests, 1))
                    time.sleep(0.5)
            on, off = median_and_range(rates["on"]), median_and_range(rates["off"])
            print(f"| {connections} | {case} | {on[0]:,.0f} ({on[1]:,.0f}-{on[2]:,.0f}) | "
                  f"{off[0]:,.0f} ({off[1]:,.0f}-{off[2]:,.0f}) | {on[0] / off[0]:.2f} | "
                  f"{median_and_range(cpu['on'])[0]:.1f} | "
                  f"{median_and_range(cpu['off'])[0]:.1f} |", flush=True)


def main():
    args = parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    connection_counts = [int(count) for count in args.connections.split(",")]
    server_cpus, client_cpus = ("1", "0") if os.cpu_count() >= 2 else (None, None)
    group = ProcessGroup()
    try:
        with tempfile.TemporaryDirectory(prefix="outpost-memory-ab-") as work_dir:
            try:
                measure(args, group, work_dir, sizes, connection_counts, server_cpus,
                        client_cpus)
            finally:
                group.stop_all()
    except BenchError as error:
        print(f"memory_tier_ab: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
