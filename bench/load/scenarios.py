"""The scenarios of a run. Each appends Sample rows; report.py turns them into tables.

Within a case the targets alternate (A B C A B C ...), so that a slow drift of the machine
spreads over all targets instead of landing on one.
"""

import json
import os
import statistics
import threading
import time

import driver
import loadgen
import registry_client
from processes import BenchError, cpu_seconds, resident_bytes
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
        self.duration_s = 1 if quick else 2
        # Manifest runs are short. At 50,000 to 100,000 requests per second one second gives
        # enough requests for a p99.9, and the full run has 36 manifest cases.
        self.manifest_duration_s = 1
        self.warm_blob_sizes = [1 * MIB] if quick else [1 * MIB, 64 * MIB, 512 * MIB]
        self.warm_blob_connections = [1] if quick else [1, 16, 64]
        self.manifest_connections = [1] if quick else [1, 64, 256]
        self.fan_out_clients = [1, 3] if quick else [1, 10, 100]
        self.cold_blob_size = 1 * MIB if quick else 200 * MIB
        self.pull_clients = 3 if quick else 50
        self.pull_layer_sizes = ([MIB // 4, MIB // 2] if quick
                                 else [1 * MIB, 4 * MIB, 8 * MIB, 16 * MIB, 32 * MIB])
        self.idle_connections = 100 if quick else 1000
        self.streaming_connections = 4 if quick else 64
        self.streaming_blob_size = 1 * MIB if quick else 64 * MIB
        # The WAN hop's cap per connection, in bytes per second: about 840 Mbit/s.
        self.wan_rate_bytes_per_s = 100 * MIB

    def warm_duration_s(self, size):
        # A 512 MiB response takes a fifth of a second alone and seconds under load, so its
        # runs are longer to hold more than a few responses.
        return self.duration_s + (1 if size >= 512 * MIB else 0)

    def cold_repetitions(self, target_name, clients):
        # distribution-proxy downloads the blob once per client: 100 clients take it about a
        # minute, so that case runs once to keep a full run within 15 minutes.
        if target_name == "distribution-proxy" and clients >= 100:
            return 1
        return self.repetitions

    def cold_blob_count(self, fan_out_target_count):
        return len(self.fan_out_clients) * self.repetitions * fan_out_target_count


def _size_label(size):
    return f"{size // MIB} MiB"


def _wait_until_idle(target, timeout_s=5.0):
    """Wait until target's server has used under 5 ms of CPU in 100 ms, or timeout_s passes.

    A slow server still works through requests queued before the load generator stopped, and
    without this wait it would take the shared core from the next target's run.
    """
    pids = target.server_pids()
    deadline = time.monotonic() + timeout_s
    before = cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = cpu_seconds(pids)
        if now - before < 0.005:
            return
        before = now


def warm_blob_get(settings, targets, blobs, cpus):
    """Keep-alive GETs of one cached blob: MB/s, p50, p99 and server CPU seconds per GB.

    With 512 MiB blobs and many connections a run may end before any response is complete;
    MB/s then counts the bytes received and the latency columns stay empty.
    """
    samples = []
    for size in settings.warm_blob_sizes:
        digest = blobs[size]
        for connections in settings.warm_blob_connections:
            case = f"{_size_label(size)}, {connections} conn"
            duration_s = settings.warm_duration_s(size)
            for _ in range(settings.repetitions):
                for target in targets:
                    pids = target.server_pids()
                    cpu_before = cpu_seconds(pids)
                    report = loadgen.run_wrk(target.port, target.blob_path(digest), connections,
                                             duration_s, cpus,
                                             allow_incomplete=size * connections >= 4 << 30)
                    cpu_used = cpu_seconds(pids) - cpu_before
                    _wait_until_idle(target)
                    seconds = report["duration_us"] / 1e6
                    figures = {"MB/s": report["bytes"] / seconds / 1e6}
                    if report["requests"] > 0:
                        figures["p50 ms"] = report["p50_us"] / 1000
                        figures["p99 ms"] = report["p99_us"] / 1000
                    figures["CPU s/GB"] = cpu_used / (report["bytes"] / 1e9)
                    samples.append(Sample("warm blob GET", case, target.name, figures))
    return samples


def memory(settings, targets, blob_digest, load_binary, cpus):
    """Resident memory of each server idle, holding idle connections, and streaming a blob.

    The streaming figure is the peak of samples taken every 50 ms while wrk runs.
    """
    idle_case = "idle"
    held_case = f"{settings.idle_connections} idle connections"
    streaming_case = (f"{settings.streaming_connections} connections streaming "
                      f"{_size_label(settings.streaming_blob_size)}")
    samples = []
    for _ in range(settings.repetitions):
        for target in targets:
            pids = target.server_pids()
            samples.append(Sample("memory", idle_case, target.name,
                                  {"RSS MiB": resident_bytes(pids) / MIB}))

            with driver.idle(load_binary, target.port, settings.idle_connections,
                             cpus=cpus) as held:
                held_bytes = resident_bytes(pids)
                held.release()
            samples.append(Sample("memory", held_case, target.name,
                                  {"RSS MiB": held_bytes / MIB}))

            peak = 0
            wrk_error = []

            def stream(port=target.port, path=target.blob_path(blob_digest)):
                try:
                    loadgen.run_wrk(port, path, settings.streaming_connections,
                                    settings.duration_s, cpus, allow_incomplete=True)
                except BenchError as error:
                    wrk_error.append(error)

            streamer = threading.Thread(target=stream)
            streamer.start()
            while streamer.is_alive():
                peak = max(peak, resident_bytes(pids))
                time.sleep(0.05)
            streamer.join()
            if wrk_error:
                raise wrk_error[0]
            samples.append(Sample("memory", streaming_case, target.name,
                                  {"RSS MiB": peak / MIB}))
    return samples


def manifest_requests(settings, targets, manifest_digest, tag, cpus):
    """GET and HEAD of the manifest by digest, and GET by tag: requests/s and percentiles."""
    kinds = [
        ("GET by digest", "GET", manifest_digest),
        ("HEAD by digest", "HEAD", manifest_digest),
        ("GET by tag", "GET", tag),
        ("HEAD by tag", "HEAD", tag),
    ]
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
                                                     settings.manifest_duration_s, cpus, headers)
                    else:
                        report = loadgen.run_wrk(target.port, path, connections,
                                                 settings.manifest_duration_s, cpus,
                                                 headers=headers)
                    _wait_until_idle(target)
                    figures = {
                        "req/s": report["requests"] / (report["duration_us"] / 1e6),
                        "p50 ms": report["p50_us"] / 1000,
                        "p99 ms": report["p99_us"] / 1000,
                    }
                    if report["p999_us"] is not None:
                        figures["p99.9 ms"] = report["p999_us"] / 1000
                    samples.append(Sample("manifest requests", case, target.name, figures))
    return samples


def settled(read, timeout_s=5.0):
    """Return read() once two calls half a second apart agree, or the last value at timeout_s.

    A proxy may still fetch in the background after its clients are served, so its traffic is
    read only once it stops changing.
    """
    deadline = time.monotonic() + timeout_s
    value = read()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        latest = read()
        if latest == value:
            break
        value = latest
    return value


class ColdBlobs:
    """Blobs seeded in the upstream that no target has fetched yet, handed out one at a time.

    They share their random bytes after a distinct 16-byte prefix, so one copy of the body is
    kept in memory and each blob's bytes are written to a file only while it is measured.
    """

    def __init__(self, body, prefixes_by_digest):
        self._body = body
        self._unused = list(prefixes_by_digest.items())

    def take(self):
        """Return (digest, bytes) of a blob not used before."""
        digest, prefix = self._unused.pop()
        return digest, prefix + self._body[len(prefix):]


def _check_fan_out(target, clients, report):
    if len(report["results"]) != clients:
        raise BenchError(f"{target.name} fan-out: {len(report['results'])} results for "
                         f"{clients} clients")
    for index, result in enumerate(report["results"]):
        if result["status"] != 200:
            raise BenchError(f"{target.name} fan-out client {index} got status "
                             f"{result['status']}")


def cold_fan_out(settings, targets, cold_blobs, wan, load_binary, work_dir, cpus):
    """N clients GET one uncached blob at once: upstream traffic, first byte and total time.

    The upstream traffic is what crossed the WAN hop for that blob. The load driver compares
    every body with the blob's bytes. Right after, the same clients GET the now cached blob
    again: that warm total is what the clients and the loopback allow with no upstream at all.
    """
    expected_path = os.path.join(work_dir, "cold-blob.expected")
    samples = []
    for clients in settings.fan_out_clients:
        case = f"{clients} client" + ("s" if clients > 1 else "")
        for repetition in range(settings.repetitions):
            for target in targets:
                if repetition >= settings.cold_repetitions(target.name, clients):
                    continue
                digest, data = cold_blobs.take()
                with open(expected_path, "wb") as expected_file:
                    expected_file.write(data)
                path = target.blob_path(digest)
                cold = driver.fan_out(load_binary, target.port, path, clients,
                                      expect_file=expected_path, cpus=cpus)
                _check_fan_out(target, clients, cold)
                gets, heads, body_bytes = settled(lambda: wan.traffic(digest))
                warm = driver.fan_out(load_binary, target.port, path, clients,
                                      expect_file=expected_path, cpus=cpus)
                _check_fan_out(target, clients, warm)
                os.unlink(expected_path)

                first_bytes = [result["first_byte_us"] for result in cold["results"]]
                samples.append(Sample("cold fan-out", case, target.name, {
                    "upstream GETs": gets,
                    "upstream HEADs": heads,
                    "upstream bytes / blob": body_bytes / len(data),
                    "TTFB p50 ms": statistics.median(first_bytes) / 1000,
                    "TTFB max / min": max(first_bytes) / max(min(first_bytes), 1),
                    "total ms": cold["last_byte_us"]["max"] / 1000,
                    "warm total ms": warm["last_byte_us"]["max"] / 1000,
                }))
    _add_total_against_one_client(samples, settings.fan_out_clients[0])
    return samples


class PullImage:
    """An image seeded in its own upstream repository for one image-pull measurement."""

    def __init__(self, repository, image_bytes):
        self.repository = repository
        self.image_bytes = image_bytes


def seed_pull_images(settings, upstream_port, storage_root, count):
    """Push `count` images of settings.pull_layer_sizes, each in its own repository.

    Layers share their random bytes after a distinct 16-byte prefix, as the cold blobs do.
    """
    bodies = {size: os.urandom(size) for size in set(settings.pull_layer_sizes)}
    images = []
    for number in range(count):
        repository = f"bench/pull-{number}"
        layers = []
        for size in settings.pull_layer_sizes:
            data = os.urandom(16) + bodies[size][16:]
            layers.append((registry_client.store_blob(storage_root, repository, data), size))
        _, manifest = registry_client.push_image(upstream_port, repository, "latest", layers)
        config_size = json.loads(manifest)["config"]["size"]
        images.append(PullImage(repository, sum(settings.pull_layer_sizes) + len(manifest)
                                + config_size))
    return images


def image_pull(settings, targets, images, wan, load_binary, cpus):
    """N clients pull one uncached image at once as a runtime does, then pull it again warm.

    Upstream bytes are everything that crossed the WAN hop under the image's repository,
    divided by the bytes of its manifest, config and layers.
    """
    unused = list(images)
    case = f"{settings.pull_clients} clients"
    samples = []
    for _ in range(settings.repetitions):
        for target in targets:
            image = unused.pop()
            repository = target.repository_prefix + image.repository
            cold = driver.pull(load_binary, target.port, repository, "latest",
                               clients=settings.pull_clients, cpus=cpus)
            requests, body_bytes = settled(
                lambda: wan.traffic_under(f"/v2/{image.repository}/"))
            warm = driver.pull(load_binary, target.port, repository, "latest",
                               clients=settings.pull_clients, cpus=cpus)
            samples.append(Sample("image pull", case, target.name, {
                "cold wall ms": cold["wall_us"] / 1000,
                "warm wall ms": warm["wall_us"] / 1000,
                "upstream requests": requests,
                "upstream bytes / image": body_bytes / image.image_bytes,
            }))
    return samples


def _add_total_against_one_client(samples, single_clients):
    """Add "total / alone": each total divided by the target's median total for one client."""
    single_case = f"{single_clients} client"
    alone = {}
    for sample in samples:
        if sample.case == single_case:
            alone.setdefault(sample.target, []).append(sample.figures["total ms"])
    for sample in samples:
        sample.figures["total / alone"] = (sample.figures["total ms"]
                                           / statistics.median(alone[sample.target]))
