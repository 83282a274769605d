"""The "working set" scenario: Outpost with a disk budget of half the bytes its clients pull.

The upstream contains a few hundred blobs of a few sizes in a repository of their own. A trace
of blob GETs, drawn with a fixed seed from a Zipf distribution (exponent ZIPF_EXPONENT) over
the blobs, goes through a new Outpost in three configurations, one after the other in each
repetition:

- "outpost": storage.disk_budget_bytes is half the bytes of all blobs, so the background
  eviction runs throughout, between the watermarks of WATERMARK_PERCENTS;
- "outpost, same misses, no eviction": the same trace, except that every request that
  missed in the first run asks for a new blob of the same size, which the upstream gets just
  before. The budget holds every blob, so this run has the first run's misses and downloads
  without its evictions;
- "outpost, budget holds all": the same trace with a budget of twice the bytes of all blobs.
  The budget's bookkeeping runs as in the first run, but nothing is evicted.

Each run replays a warm-up prefix of the trace, then the measured rest, with several client
processes (trace_client.py) that verify the digest and length of every body. Outpost runs
with the scrub off, and each run's data folder is deleted after it.

Hit ratio, of the first configuration. A request is a hit when it caused no download from
the upstream. The misses are the blob GETs that the WAN hop's access log counts under the
scenario's repository during the measured part. The WAN hop sits between Outpost and the
upstream, so this count does not depend on Outpost's own bookkeeping.
Outpost's outpost_downloads_started_total and its access log should agree with it, and the
driver prints a warning when they do not (a retried upstream request counts twice at the
hop). The same trace goes through a least-recently-used cache simulated in Python,
byte-budgeted, sequential in the order of the trace, at three capacities: the budget, and
the high and low watermarks. Outpost evicts down to the low watermark once its blobs exceed
the high one, so its usage stays between the two, apart from overshoots while downloads run.

Eviction cost. Latency percentiles and the transfer rate of hits in each configuration,
over the requests that were hits in all three runs of a repetition. The first against the
second is the cost of eviction alone. The first against the third also includes the misses'
downloads, which load both cores. The access log tells hits apart: each request carries an
X-Request-Id, and Outpost logs it with the cache outcome. Only "hit" counts, not a request
that joined a running download.

NOTE: Outpost names none of its threads and has no metric of the time spent evicting, so the
CPU seconds per GB include the eviction thread's work without telling it apart.
"""

import collections
import itertools
import math
import os
import random
import re
import shutil
import sys

import registry_client
import servers
import trace_client
from processes import BenchError, ProcessGroup, cpu_seconds, free_port, wait_for_http
from scenarios import Sample, settled

HIT_RATIO_SCENARIO = "working set: hit ratio"
EVICTION_COST_SCENARIO = "working set: eviction cost"
# Report sections of this scenario, in order.
SECTIONS = [HIT_RATIO_SCENARIO, EVICTION_COST_SCENARIO]

REPOSITORY = "bench/working-set"
ZIPF_EXPONENT = 1.0
TRACE_SEED = 1
# Outpost's default watermarks, written into its configuration so that the simulation uses the
# same ones.
WATERMARK_PERCENTS = (90, 80)
EVICTING_TARGET = "outpost"
SAME_MISSES_TARGET = "outpost, same misses, no eviction"
KEEPING_TARGET = "outpost, budget holds all"

KIB = 1 << 10
MIB = 1 << 20

# Outpost logs this line once its disk budget has read the index. Each run waits for it, so
# that the budget is in force from the first request.
_BUDGET_READY_LOG = "blob access order restored"
# The cache outcome and request id at the end of an access log line of Outpost.
_ACCESS_OUTCOME = re.compile(r" cache=(\S+) req=(\S+)")

Blob = collections.namedtuple("Blob", "digest size")
# Counts of the requests of a trace: all of them, the hits, and the bytes of each.
CacheCounts = collections.namedtuple("CacheCounts", "requests hits bytes hit_bytes")


class WorkingSetSettings:
    """Blob sizes and counts, trace length and clients of a full or a quick run."""

    def __init__(self, quick):
        # Blob number i has size blob_sizes[i % len(blob_sizes)], so each size has the same
        # number of blobs.
        self.blob_sizes = ([4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB] if quick
                           else [16 * KIB, 128 * KIB, 512 * KIB, 2 * MIB])
        self.blob_count = 40 if quick else 200
        self.warmup_requests = 60 if quick else 800
        self.measured_requests = 240 if quick else 4000
        self.clients = 4


def zipf_trace(blob_count, length, exponent, seed):
    """Return `length` blob numbers where the blob of rank k has weight 1 / k**exponent.

    A shuffle from the same seed deals the ranks to the blobs, so popularity does not follow
    the blob number, nor the size that comes with it. The same arguments give the same trace
    on the same Python version.
    """
    if blob_count < 1 or length < 0:
        raise ValueError(f"a trace needs at least one blob and a length of at least 0, got "
                         f"{blob_count} blobs and length {length}")
    generator = random.Random(seed)
    blob_of_rank = list(range(blob_count))
    generator.shuffle(blob_of_rank)
    cumulative = list(itertools.accumulate(1 / rank**exponent
                                           for rank in range(1, blob_count + 1)))
    ranks = generator.choices(range(blob_count), cum_weights=cumulative, k=length)
    return [blob_of_rank[rank] for rank in ranks]


def simulate_lru(trace, sizes, capacity_bytes, counted_from=0):
    """Replay trace through a least-recently-used cache of capacity_bytes and count the hits.

    A miss stores the blob, then removes the least recently used others until the stored
    bytes fit. A blob larger than the capacity is never stored. Only the requests from
    position counted_from on are counted, so that a warm-up fills the cache first.
    """
    stored = collections.OrderedDict()
    stored_bytes = 0
    requests = hits = total_bytes = hit_bytes = 0
    for position, blob in enumerate(trace):
        size = sizes[blob]
        is_hit = blob in stored
        if is_hit:
            stored.move_to_end(blob)
        elif size <= capacity_bytes:
            stored[blob] = size
            stored_bytes += size
            while stored_bytes > capacity_bytes:
                _, removed_size = stored.popitem(last=False)
                stored_bytes -= removed_size
        if position >= counted_from:
            requests += 1
            total_bytes += size
            if is_hit:
                hits += 1
                hit_bytes += size
    return CacheCounts(requests, hits, total_bytes, hit_bytes)


def parse_metrics(text):
    """Return the samples of a Prometheus text page by metric name, summed over labels."""
    values = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name = series.split("{", 1)[0]
        try:
            values[name] = values.get(name, 0.0) + float(value)
        except ValueError as error:
            raise BenchError(f"/metrics has a line without a numeric value: {line!r}") from error
    return values


def read_metrics(port):
    status, _, body = registry_client.request(port, "GET", "/metrics")
    if status != 200:
        raise BenchError(f"GET /metrics on 127.0.0.1:{port} returned {status}")
    return parse_metrics(body.decode("utf-8", errors="replace"))


def access_outcomes(log_path, request_id_prefix):
    """Return the cache outcome ("hit", "miss", "fill-joined", ...) by request id.

    Reads Outpost's access log lines whose request id starts with request_id_prefix.
    """
    outcomes = {}
    with open(log_path, encoding="utf-8", errors="replace") as log_file:
        for line in log_file:
            match = _ACCESS_OUTCOME.search(line)
            if match is not None and match.group(2).startswith(request_id_prefix):
                outcomes[match.group(2)] = match.group(1)
    return outcomes


def nearest_rank(values, fraction):
    """Return the nearest-rank percentile of values (fraction in (0, 1]), or None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


class _Counters:
    """Counters of one Outpost run read at one moment: the WAN hop's, /metrics and CPU time."""

    def __init__(self, port, pid, wan):
        self.upstream_gets, self.upstream_bytes = settled(
            lambda: wan.gets_under(f"/v2/{REPOSITORY}/blobs/"))
        metrics = read_metrics(port)
        self.downloads = metrics.get("outpost_downloads_started_total", 0)
        self.evictions = metrics.get("outpost_cache_evictions_total", 0)
        self.evicted_bytes = metrics.get("outpost_cache_evicted_bytes_total", 0)
        self.cpu_s = cpu_seconds([pid])


class _ArmRun:
    """The results of one Outpost run for the measured part of the trace."""

    def __init__(self, records, outcomes_by_position, before, after, wall_s):
        self.records = records
        self.outcomes_by_position = outcomes_by_position
        self.upstream_gets = after.upstream_gets - before.upstream_gets
        self.upstream_bytes = after.upstream_bytes - before.upstream_bytes
        self.downloads = after.downloads - before.downloads
        self.evictions = after.evictions - before.evictions
        self.evicted_bytes = after.evicted_bytes - before.evicted_bytes
        self.cpu_s = after.cpu_s - before.cpu_s
        self.wall_s = wall_s

    def hit_positions(self):
        return {position for position, outcome in self.outcomes_by_position.items()
                if outcome == "hit"}


class _Run:
    """The inputs that every Outpost run of the scenario shares."""

    def __init__(self, settings, outpost_binary, work_dir, wan, server_cpus, client_cpus):
        self.settings = settings
        self.outpost_binary = outpost_binary
        self.folder = os.path.join(work_dir, "working-set")
        self.wan = wan
        self.server_cpus = server_cpus
        self.client_cpus = (None if client_cpus is None
                            else {int(cpu) for cpu in client_cpus.split(",")})


class _Arm:
    """One Outpost configuration: its target name, its budget and the trace it replays.

    label names the run's folder and starts its request ids, so it differs between arms.
    trace is a list of indexes into blobs.
    """

    def __init__(self, target_name, label, budget_bytes, blobs, trace):
        self.target_name = target_name
        self.label = label
        self.budget_bytes = budget_bytes
        self.blobs = blobs
        self.trace = trace

    def requests(self, first, end, request_id_prefix):
        """Return the trace_client.Requests for trace positions first to end - 1."""
        requests = []
        for position in range(first, end):
            blob = self.blobs[self.trace[position]]
            path = f"/v2/{servers.OUTPOST_REMOTE}/{REPOSITORY}/blobs/{blob.digest}"
            requests.append(trace_client.Request(position, path, blob.digest, blob.size,
                                                 f"{request_id_prefix}{position}"))
        return requests


def same_misses_trace(trace, outcomes_by_position, first_new_blob):
    """Return a trace that misses where an evicting run missed, with no eviction needed.

    Each measured miss of outcomes_by_position gets a blob never requested before, numbered
    from first_new_blob up, and later requests of the original blob go to that new blob, so
    that they hit as they did in the evicting run. Returns (the new trace, the original blob
    number of each new blob), so that each new blob can be given its original's size.
    """
    new_trace = list(trace)
    replaced_by = {}
    originals = []
    for position in sorted(outcomes_by_position):
        blob = trace[position]
        if outcomes_by_position[position] == "miss":
            replaced_by[blob] = first_new_blob + len(originals)
            originals.append(blob)
        new_trace[position] = replaced_by.get(blob, blob)
    return new_trace, originals


def seed_blobs(storage_root, sizes):
    """Write one new blob per size into the upstream's storage and return their Blobs.

    The blobs share random bytes after a distinct random prefix of 16 bytes, which is faster
    than drawing every byte and still gives every blob its own digest.
    """
    body = os.urandom(max(sizes, default=0))
    blobs = []
    for size in sizes:
        prefix = os.urandom(min(16, size))
        data = prefix + body[len(prefix):size]
        blobs.append(Blob(registry_client.store_blob(storage_root, REPOSITORY, data), size))
    return blobs


def _replay_checked(run, port, requests, label):
    records, start_ns = trace_client.replay(port, requests, run.settings.clients,
                                            run.client_cpus)
    trace_client.check_records(records, len(requests), label)
    wall_s = (max(record.end_ns for record in records) - start_ns) / 1e9
    return records, wall_s


def _outcomes_by_position(log_path, request_id_prefix, requests, label):
    """Read the cache outcome of every request from the access log, by trace position.

    Raises BenchError when a request has no access log line.
    """
    outcomes = access_outcomes(log_path, request_id_prefix)
    missing = [request.request_id for request in requests if request.request_id not in outcomes]
    if missing:
        raise BenchError(f"{label}: the access log {log_path} has no line for {len(missing)} of "
                         f"{len(requests)} requests, such as {missing[0]}")
    return {request.position: outcomes[request.request_id] for request in requests}


def _run_outpost(run, arm, repetition):
    """Replay the warm-up and the measured trace through a new Outpost and return an _ArmRun."""
    label = f"working set through {arm.target_name}, repetition {repetition + 1}"
    folder = os.path.join(run.folder, f"{arm.label}-{repetition}")
    data_dir = os.path.join(folder, "data")
    os.makedirs(folder)
    log_path = os.path.join(folder, "outpost.log")
    request_id_prefix = f"ws-{arm.label}-{repetition}-"
    warmup = arm.requests(0, run.settings.warmup_requests, request_id_prefix)
    measured = arm.requests(run.settings.warmup_requests, len(arm.trace), request_id_prefix)

    group = ProcessGroup()
    try:
        port = free_port()
        config_path = servers.write_outpost_config(
            folder, port, run.wan.port, data_dir, scrub_bytes_per_second=0,
            disk_budget=(arm.budget_bytes,) + WATERMARK_PERCENTS)
        process = group.start("outpost", [run.outpost_binary, "serve", "--config", config_path],
                              log_path, cpus=run.server_cpus)
        wait_for_http(port, "/healthz", process, log_marker=_BUDGET_READY_LOG)

        _replay_checked(run, port, warmup, label + ", warm-up")
        before = _Counters(port, process.pid, run.wan)
        records, wall_s = _replay_checked(run, port, measured, label)
        after = _Counters(port, process.pid, run.wan)
    finally:
        # Stopping Outpost also writes out its last access log lines.
        group.stop_all()
    shutil.rmtree(data_dir, ignore_errors=True)

    outcomes = _outcomes_by_position(log_path, request_id_prefix, measured, label)
    arm_run = _ArmRun(records, outcomes, before, after, wall_s)
    logged_misses = sum(1 for outcome in outcomes.values() if outcome == "miss")
    if not arm_run.upstream_gets == arm_run.downloads == logged_misses:
        print(f"bench: warning: {label}: {arm_run.upstream_gets} blob GETs crossed the WAN hop, "
              f"outpost_downloads_started_total grew by {arm_run.downloads:.0f} and the "
              f"access log has {logged_misses} misses", file=sys.stderr)
    return arm_run


def _ratio_figures(counts):
    return {
        "hit ratio": counts.hits / counts.requests,
        "byte hit ratio": counts.hit_bytes / counts.bytes,
        "misses": counts.requests - counts.hits,
    }


def _lru_samples(case, trace, sizes, budget_bytes, warmup_requests):
    """Return the simulated LRU's Samples at the budget and at both watermarks."""
    high_percent, low_percent = WATERMARK_PERCENTS
    capacities = [
        ("budget", budget_bytes),
        (f"high watermark {high_percent}%", budget_bytes * high_percent // 100),
        (f"low watermark {low_percent}%", budget_bytes * low_percent // 100),
    ]
    samples = []
    for name, capacity_bytes in capacities:
        counts = simulate_lru(trace, sizes, capacity_bytes, counted_from=warmup_requests)
        samples.append(Sample(HIT_RATIO_SCENARIO, case,
                              f"ideal LRU, {name} ({capacity_bytes / MIB:.1f} MiB)",
                              _ratio_figures(counts)))
    return samples


def _outpost_ratio_sample(case, arm_run):
    requested_bytes = sum(record.body_bytes for record in arm_run.records)
    counts = CacheCounts(len(arm_run.records), len(arm_run.records) - arm_run.upstream_gets,
                         requested_bytes, requested_bytes - arm_run.upstream_bytes)
    figures = _ratio_figures(counts)
    figures["downloads"] = arm_run.downloads
    figures["evictions"] = arm_run.evictions
    figures["evicted MiB"] = arm_run.evicted_bytes / MIB
    return Sample(HIT_RATIO_SCENARIO, case, EVICTING_TARGET, figures)


def _eviction_cost_samples(case, arm_runs):
    """Compare the hits of the runs over the requests that were hits in all of them.

    arm_runs is a list of (target name, _ArmRun).
    """
    compared = set.intersection(*(arm_run.hit_positions() for _, arm_run in arm_runs))
    samples = []
    for target_name, arm_run in arm_runs:
        hits = [record for record in arm_run.records if record.position in compared]
        heads_ms = [record.head_ns / 1e6 for record in hits]
        latencies_ms = [record.latency_ns / 1e6 for record in hits]
        hit_bytes = sum(record.body_bytes for record in hits)
        sent_bytes = sum(record.body_bytes for record in arm_run.records)
        figures = {"hits compared": len(hits), "misses": arm_run.upstream_gets}
        if hits:
            figures["hit TTFB p50 ms"] = nearest_rank(heads_ms, 0.50)
            figures["hit TTFB p99 ms"] = nearest_rank(heads_ms, 0.99)
            figures["hit p50 ms"] = nearest_rank(latencies_ms, 0.50)
            figures["hit p99 ms"] = nearest_rank(latencies_ms, 0.99)
            figures["hit MB/s"] = hit_bytes / (sum(latencies_ms) / 1000) / 1e6
        figures["req/s"] = len(arm_run.records) / arm_run.wall_s
        figures["CPU s/GB"] = arm_run.cpu_s / (sent_bytes / 1e9)
        samples.append(Sample(EVICTION_COST_SCENARIO, case, target_name, figures))
    return samples


def _check_no_evictions(target_name, arm_run):
    if arm_run.evictions:
        raise BenchError(f"{target_name} evicted {arm_run.evictions:.0f} blobs with a budget "
                         "meant to hold every blob")


def _run_repetition(run, upstream_storage, blobs, trace, repetition):
    """Run the three configurations once and return their _ArmRuns by target name."""
    working_set_bytes = sum(blob.size for blob in blobs)
    evicting = _run_outpost(run, _Arm(EVICTING_TARGET, "evicting", working_set_bytes // 2,
                                      blobs, trace), repetition)

    measured_outcomes = evicting.outcomes_by_position
    new_trace, originals = same_misses_trace(trace, measured_outcomes, len(blobs))
    new_blobs = seed_blobs(upstream_storage, [blobs[blob].size for blob in originals])
    try:
        all_bytes = working_set_bytes + sum(blob.size for blob in new_blobs)
        same_misses = _run_outpost(run, _Arm(SAME_MISSES_TARGET, "same-misses", 2 * all_bytes,
                                             blobs + new_blobs, new_trace), repetition)
    finally:
        for blob in new_blobs:
            registry_client.remove_stored_blob(upstream_storage, REPOSITORY, blob.digest)
    _check_no_evictions(SAME_MISSES_TARGET, same_misses)

    keeping = _run_outpost(run, _Arm(KEEPING_TARGET, "keeping", 2 * working_set_bytes, blobs,
                                     trace), repetition)
    _check_no_evictions(KEEPING_TARGET, keeping)
    return {EVICTING_TARGET: evicting, SAME_MISSES_TARGET: same_misses, KEEPING_TARGET: keeping}


def working_set(run_settings, outpost_binary, work_dir, upstream_storage, wan, server_cpus,
                client_cpus):
    """Seed the blobs, replay the trace through each configuration, return the Samples.

    Every Outpost runs in a process group of its own, stopped before its results are read.
    work_dir gets a folder "working-set" with each run's configuration and log.
    """
    settings = WorkingSetSettings(run_settings.quick)
    sizes = [settings.blob_sizes[number % len(settings.blob_sizes)]
             for number in range(settings.blob_count)]
    blobs = seed_blobs(upstream_storage, sizes)
    trace = zipf_trace(len(blobs), settings.warmup_requests + settings.measured_requests,
                       ZIPF_EXPONENT, TRACE_SEED)
    working_set_bytes = sum(sizes)
    budget_bytes = working_set_bytes // 2
    run = _Run(settings, outpost_binary, work_dir, wan, server_cpus, client_cpus)
    os.makedirs(run.folder)

    ratio_case = (f"{len(blobs)} blobs, {working_set_bytes / MIB:.1f} MiB; budget "
                  f"{budget_bytes / MIB:.1f} MiB; {settings.measured_requests} requests after "
                  f"{settings.warmup_requests}")
    cost_case = f"hits in every run, {settings.clients} clients"
    samples = _lru_samples(ratio_case, trace, sizes, budget_bytes, settings.warmup_requests)
    for repetition in range(run_settings.repetitions):
        arm_runs = _run_repetition(run, upstream_storage, blobs, trace, repetition)
        samples.append(_outpost_ratio_sample(ratio_case, arm_runs[EVICTING_TARGET]))
        samples += _eviction_cost_samples(cost_case, list(arm_runs.items()))
    return samples
