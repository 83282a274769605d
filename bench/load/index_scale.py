"""The "index scale" scenario: Outpost's start-up and manifest lookups over a large index.

outpost_index_fill writes a fresh index of IMAGES images: per image a blob record, an OCI
image manifest of about 500 bytes and the link of that manifest to the remote, plus a tag
per 1,000 images. It writes no blob files, because start-up must not read them. Then the
scenario measures, with Outpost pinned to the server CPU:

- start-up: the time from starting the process until GET /healthz returns 200, and VmRSS
  (/proc/PID/status) right after. It is measured on the filled data folder, and for
  comparison on a new data folder, where the start creates the index, and again on that
  folder, where it opens an empty index;
- manifest GET by digest: wrk cycles through digests sampled evenly over the whole index
  (sample_paths.lua), at 1, 64 and 256 connections (1 in a quick run), with VmRSS after
  each run.

Every Outpost runs with the scrub off: the scrub would delete each blob record, since its
file does not exist, and would compete with the requests for the core.

NOTE: the fill has just written the index, so its files are in the page cache. A start-up
after a reboot, or with the index evicted from memory, reads them from the disk and may be
slower than measured here.
"""

import contextlib
import http.client
import os
import time

import loadgen
import registry_client
import servers
from processes import BenchError, ProcessGroup, free_port, resident_bytes
from scenarios import Sample

SCENARIO = "index scale"
MIB = 1 << 20

_SAMPLE_PATHS_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "sample_paths.lua")
# Interval between two GET /healthz while a server starts, which bounds the error of a start-up
# time. Until the server listens, each poll is a refused connection that costs it nothing.
_HEALTH_POLL_S = 0.002
# Time allowed for a start-up before the run fails, generous for a large index on a slow disk.
_START_TIMEOUT_S = 120.0


class _Sizes:
    """The index size and digest sample of a full or a quick run."""

    def __init__(self, quick):
        self.images = 10_000 if quick else 1_000_000
        # In a full run the sampled manifests lie in about 10,000 data blocks of 4 KiB, more
        # than the index's 8 MiB block cache has room for, so lookups also read table files.
        self.sample_count = 1_000 if quick else 10_000


def _folder_bytes(folder):
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(parent, name))
    return total


def _fill(group, fill_binary, folder, sizes):
    """Run outpost_index_fill into folder/data; return (data folder, sample file, seconds)."""
    data_dir = os.path.join(folder, "data")
    sample_path = os.path.join(folder, "sample-digests.txt")
    log_path = os.path.join(folder, "index-fill.log")
    argv = [fill_binary, "--data-dir", data_dir, "--remote", servers.OUTPOST_REMOTE,
            "--repository", servers.REPOSITORY, "--count", str(sizes.images),
            "--sample-out", sample_path, "--sample-count", str(sizes.sample_count)]

    started = time.monotonic()
    process = group.start("outpost_index_fill", argv, log_path)
    process.popen.wait()
    seconds = time.monotonic() - started
    if process.popen.returncode != 0:
        raise BenchError(f"outpost_index_fill {process.exit_description()}; log {log_path}:\n"
                         f"{process.log_tail()}")
    return data_dir, sample_path, seconds


def _wait_until_healthy(port, process):
    """Poll GET /healthz until it returns 200. Raises BenchError on exit or timeout."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if not process.is_running():
            raise BenchError(f"outpost {process.exit_description()} during start; "
                             f"log {process.log_path}:\n{process.log_tail()}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                return
            last_error = f"status {response.status}"
        except (http.client.HTTPException, OSError) as error:
            last_error = str(error)
        finally:
            connection.close()
        time.sleep(_HEALTH_POLL_S)
    raise BenchError(f"outpost did not return 200 for GET /healthz on 127.0.0.1:{port} within "
                     f"{_START_TIMEOUT_S:.0f} s ({last_error}); log {process.log_path}:\n"
                     f"{process.log_tail()}")


@contextlib.contextmanager
def _running_outpost(binary, folder, data_dir, upstream_port, cpus):
    """Start Outpost on data_dir and yield (its Target, start-up seconds); stop it on exit."""
    os.makedirs(folder, exist_ok=True)
    group = ProcessGroup()
    try:
        port = free_port()
        config_path = servers.write_outpost_config(folder, port, upstream_port, data_dir,
                                                   scrub_bytes_per_second=0)
        started = time.monotonic()
        process = group.start("outpost", [binary, "serve", "--config", config_path],
                              os.path.join(folder, "outpost.log"), cpus=cpus)
        _wait_until_healthy(port, process)
        startup_s = time.monotonic() - started
        yield servers.outpost_target(port, process), startup_s
    finally:
        group.stop_all()


def _startup_samples(settings, outpost_binary, work_dir, filled_dir, images, server_cpus,
                     upstream_port):
    """Start Outpost on a new data folder, again on that folder, and on the filled one.

    The first start creates an empty index and the second opens it, so that the second one
    differs from the start on the filled folder only in the number of records.
    """
    samples = []
    for repetition in range(settings.repetitions):
        empty_dir = os.path.join(work_dir, f"empty-{repetition}", "data")
        cases = [
            ("start-up, empty data folder", 0, empty_dir, "server-empty"),
            ("start-up, empty index", 0, empty_dir, "server-empty"),
            (f"start-up, {images} images", images, filled_dir, "server-filled"),
        ]
        for case, case_images, data_dir, server_name in cases:
            with _running_outpost(outpost_binary, os.path.join(work_dir, server_name), data_dir,
                                  upstream_port, server_cpus) as (target, startup_s):
                resident_mib = resident_bytes([target.process.pid]) / MIB
            samples.append(Sample(SCENARIO, case, "outpost", {
                "start-up ms": startup_s * 1000,
                "RSS MiB": resident_mib,
            }))
    return samples


def _check_sampled_manifests(target, sample_path):
    """GET the first, middle and last sampled manifests and check their digests.

    The upstream has none of them, so a 200 with the right digest shows that Outpost served
    the manifest from its index and that the link is what the route checks.
    """
    with open(sample_path, encoding="ascii") as sample_file:
        digests = [line.strip() for line in sample_file if line.strip()]
    if not digests:
        raise BenchError(f"{sample_path} lists no digest")
    accept = {"Accept": registry_client.MANIFEST_ACCEPT}
    for digest in (digests[0], digests[len(digests) // 2], digests[-1]):
        registry_client.fetch_and_verify(target.port, target.manifest_path(digest), digest,
                                         headers=accept)


def _lookup_samples(settings, sizes, outpost_binary, work_dir, filled_dir, sample_path,
                    server_cpus, client_cpus, upstream_port):
    """GET manifests by digest over the sampled digests: requests/s and latency percentiles."""
    samples = []
    server_folder = os.path.join(work_dir, "server-filled")
    with _running_outpost(outpost_binary, server_folder, filled_dir, upstream_port,
                          server_cpus) as (target, _):
        _check_sampled_manifests(target, sample_path)
        # The path ends in "manifests/", and sample_paths.lua appends each digest.
        path_prefix = target.manifest_path("")
        for connections in settings.manifest_connections:
            case = f"GET by digest over {sizes.images} images, {connections} conn"
            for _ in range(settings.repetitions):
                report = loadgen.run_wrk(
                    target.port, path_prefix, connections, settings.manifest_duration_s,
                    client_cpus,
                    headers={"Accept": registry_client.MANIFEST_ACCEPT},
                    script=_SAMPLE_PATHS_SCRIPT, script_args=[sample_path])
                samples.append(Sample(SCENARIO, case, "outpost", {
                    "req/s": report["requests"] / (report["duration_us"] / 1e6),
                    "p50 ms": report["p50_us"] / 1000,
                    "p99 ms": report["p99_us"] / 1000,
                    "p99.9 ms": report["p999_us"] / 1000,
                    "RSS MiB": resident_bytes([target.process.pid]) / MIB,
                }))
    return samples


def index_scale(settings, outpost_binary, fill_binary, work_dir, group, server_cpus,
                client_cpus, upstream_port):
    """Fill an index and measure start-up and manifest GET by digest over it.

    Returns Sample rows of the scenario "index scale", all with the target "outpost". work_dir
    gets a new folder "index-scale" with the data, configs and logs. group runs
    outpost_index_fill, and each Outpost runs in a group of its own, stopped before this
    function returns.
    """
    sizes = _Sizes(settings.quick)
    folder = os.path.join(work_dir, "index-scale")
    os.makedirs(folder)

    filled_dir, sample_path, fill_s = _fill(group, fill_binary, folder, sizes)
    samples = [Sample(SCENARIO, f"fill of {sizes.images} images", "outpost", {
        "index MiB": _folder_bytes(os.path.join(filled_dir, "index")) / MIB,
        "fill s": fill_s,
    })]
    samples += _startup_samples(settings, outpost_binary, folder, filled_dir, sizes.images,
                                server_cpus, upstream_port)
    samples += _lookup_samples(settings, sizes, outpost_binary, folder, filled_dir, sample_path,
                               server_cpus, client_cpus, upstream_port)
    return samples
