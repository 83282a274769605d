"""The scenarios of a run. Each appends Sample rows; report.py turns them into tables.

Within a case the targets alternate (A B C A B C ...), so that a slow drift of the machine
spreads over all targets instead of landing on one.
"""

import re
import statistics
import time

import loadgen
from processes import BenchError, cpu_seconds
from registry_client import MANIFEST_ACCEPT

MIB = 1 << 20


class Sample:
    """One measurement of one target in one case, with its figures by metric name."""

    def __init__(self, scenario, case, target, figures):
        self.scenario = scenario
        self.case = case
        self.target = target
        self.figures = figures


class RunSettings:
    """Sizes, counts and durations of a full or a quick run."""

    def __init__(self, quick):
        self.quick = quick
        self.repetitions = 1 if quick else 3
        self.duration_s = 1 if quick else 5
        self.warm_blob_sizes = [1 * MIB] if quick else [1 * MIB, 64 * MIB]
        self.warm_blob_connections = [1] if quick else [1, 16]
        self.manifest_connections = [1] if quick else [1, 64]
        self.fan_out_clients = [1, 3] if quick else [1, 10, 100]
        self.cold_blob_size = 1 * MIB if quick else 16 * MIB

    def cold_blob_count(self, fan_out_target_count):
        return len(self.fan_out_clients) * self.repetitions * fan_out_target_count


def _size_label(size):
    return f"{size // MIB} MiB"


def warm_blob_get(settings, targets, blobs, cpus):
    """Keep-alive GETs of one cached blob: MB/s, p50, p99 and server CPU seconds per GB."""
    samples = []
    for size in settings.warm_blob_sizes:
        digest = blobs[size]
        for connections in settings.warm_blob_connections:
            case = f"{_size_label(size)}, {connections} conn"
            for _ in range(settings.repetitions):
                for target in targets:
                    pids = target.server_pids()
                    cpu_before = cpu_seconds(pids)
                    report = loadgen.run_wrk(target.port, target.blob_path(digest), connections,
                                             settings.duration_s, cpus)
                    cpu_used = cpu_seconds(pids) - cpu_before
                    seconds = report["duration_us"] / 1e6
                    samples.append(Sample("warm blob GET", case, target.name, {
                        "MB/s": report["bytes"] / seconds / 1e6,
                        "p50 ms": report["p50_us"] / 1000,
                        "p99 ms": report["p99_us"] / 1000,
                        "CPU s/GB": cpu_used / (report["bytes"] / 1e9),
                    }))
    return samples


def manifest_requests(settings, targets, manifest_digest, tag, cpus):
    """GET and HEAD of the manifest by digest, and GET by tag: requests/s and percentiles."""
    kinds = [("GET by digest", "GET", manifest_digest), ("HEAD by digest", "HEAD",
                                                          manifest_digest), ("GET by tag", "GET", tag)]
    headers = {"Accept": MANIFEST_ACCEPT}
    samples = []
    for kind, method, reference in kinds:
        kind_targets = [t for t in targets if t.serves_tags or reference != tag]
        for connections in settings.manifest_connections:
            case = f"{kind}, {connections} conn"
            for _ in range(settings.repetitions):
                for target in kind_targets:
                    path = target.manifest_path(reference)
                    if method == "HEAD":
                        report = loadgen.run_ab_head(target.port, path, connections,
                                                     settings.duration_s, cpus, headers)
                    else:
                        report = loadgen.run_wrk(target.port, path, connections,
                                                 settings.duration_s, cpus, headers=headers)
                    figures = {
                        "req/s": report["requests"] / (report["duration_us"] / 1e6),
                        "p50 ms": report["p50_us"] / 1000,
                        "p99 ms": report["p99_us"] / 1000,
                    }
                    if report["p999_us"] is not None:
                        figures["p99.9 ms"] = report["p999_us"] / 1000
                    samples.append(Sample("manifest requests", case, target.name, figures))
    return samples


def count_upstream_requests(upstream_log_path, digest):
    """Return (GET count, HEAD count) of requests for digest in the upstream's access log."""
    pattern = re.compile(r'"(GET|HEAD) /v2/\S*/blobs/' + re.escape(digest) + r"[ ?]")
    counts = {"GET": 0, "HEAD": 0}
    with open(upstream_log_path, encoding="utf-8", errors="replace") as log_file:
        for line in log_file:
            match = pattern.search(line)
            if match:
                counts[match.group(1)] += 1
    return counts["GET"], counts["HEAD"]


def _settled_upstream_counts(upstream_log_path, digest, timeout_s=5.0):
    # A proxy may still fetch in the background after its clients are served, so wait until
    # the counts stop changing for half a second.
    deadline = time.monotonic() + timeout_s
    counts = count_upstream_requests(upstream_log_path, digest)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        latest = count_upstream_requests(upstream_log_path, digest)
        if latest == counts:
            break
        counts = latest
    return counts


def cold_fan_out(settings, targets, cold_blobs, upstream_log_path):
    """N clients GET one uncached blob at once: upstream fetches, first byte and total time.

    cold_blobs is a list of digests that no target has seen, one used per measurement.
    """
    unused = list(cold_blobs)
    samples = []
    for clients in settings.fan_out_clients:
        case = f"{clients} client" + ("s" if clients > 1 else "")
        for _ in range(settings.repetitions):
            for target in targets:
                digest = unused.pop()
                results = loadgen.fan_out(target.port, target.blob_path(digest), clients)
                for index, result in enumerate(results):
                    if result.error is not None:
                        raise BenchError(f"{target.name} fan-out client {index}: {result.error}")
                    if result.status != 200:
                        raise BenchError(f"{target.name} fan-out client {index} got status "
                                         f"{result.status} for {digest}")
                    if result.digest != digest:
                        raise BenchError(f"{target.name} fan-out client {index} got a body with "
                                         f"digest {result.digest}, expected {digest}")
                gets, heads = _settled_upstream_counts(upstream_log_path, digest)
                first_bytes = [result.first_byte_s for result in results]
                samples.append(Sample("cold fan-out", case, target.name, {
                    "upstream GETs": gets,
                    "upstream HEADs": heads,
                    "TTFB p50 ms": statistics.median(first_bytes) * 1000,
                    "TTFB max ms": max(first_bytes) * 1000,
                    "total ms": max(result.done_s for result in results) * 1000,
                }))
    return samples
