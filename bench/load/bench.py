"""Side-by-side load benchmark of Outpost against nginx and distribution in proxy mode.

Started by bench/load/run.sh, which locates the outpost binary. Every server listens on
127.0.0.1 and every request goes there. See bench/README.md for the scenarios and method.
"""

import argparse
import datetime
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

import index_scale
import registry_client
import report
import scenarios
import servers
import working_set
from processes import BenchError, ProcessGroup, find_program

REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TAG = "latest"
# The scenarios in the order of the report, by the names that --scenario takes.
SCENARIO_ORDER = [
    "warm blob GET", "manifest requests", "cold fan-out", "image pull", "memory", "index scale",
    "working set"]
# The scenarios that measure Outpost beside nginx, nginx-cache and distribution-proxy.
ANCHOR_SCENARIOS = {"warm blob GET", "manifest requests", "cold fan-out", "image pull", "memory"}
# Report sections of a scenario whose tables are split into several.
SECTIONS_OF_SCENARIO = {"working set": working_set.SECTIONS}


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outpost", required=True, help="path of the outpost binary")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, 1 repetition of 1 s: proves every scenario works")
    parser.add_argument("--out", help="Markdown file for the tables "
                                      "(default: a new file in the temporary folder)")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep the run's folder of configs, logs and data")
    parser.add_argument("--scenario", action="append", choices=SCENARIO_ORDER,
                        help="run only this scenario; may be repeated (default: all)")
    return parser.parse_args(argv)


def _raise_on_signal(signal_number, _frame):
    raise SystemExit(128 + signal_number)


def pick_cpus():
    """Return (server CPU, client CPU) as taskset lists, or (None, None) on one core."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return str(cores[1]), str(cores[0])


def _command_output(argv):
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return "unknown"
    return (completed.stdout + completed.stderr).strip().splitlines()[0]


def describe_machine():
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    return (f"{os.cpu_count()} cores ({model}), {memory_kib / (1 << 20):.1f} GiB memory, "
            f"Linux {platform.release()}")


def describe_commit():
    commit = _command_output(["git", "-C", REPOSITORY_ROOT, "rev-parse", "HEAD"])
    status = subprocess.run(["git", "-C", REPOSITORY_ROOT, "status", "--porcelain"],
                            capture_output=True, text=True, check=False).stdout
    return commit + (" (with uncommitted changes)" if status.strip() else "")


def seed_upstream(upstream_port, storage_root, settings, files_dir, cold_blob_count):
    """Push the warm blobs, an image over them and the cold blobs; write nginx's files.

    Returns (warm digests by size, manifest digest, ColdBlobs).
    """
    warm = {}
    for size in settings.warm_blob_sizes:
        data = os.urandom(size)
        digest = registry_client.store_blob(storage_root, servers.REPOSITORY, data)
        warm[size] = digest
        with open(os.path.join(files_dir, digest.split(":")[1]), "wb") as blob_file:
            blob_file.write(data)

    layers = [(warm[size], size) for size in settings.warm_blob_sizes]
    manifest_digest, manifest = registry_client.push_image(upstream_port, servers.REPOSITORY,
                                                           TAG, layers)
    with open(os.path.join(files_dir, manifest_digest.split(":")[1]), "wb") as manifest_file:
        manifest_file.write(manifest)

    body = os.urandom(settings.cold_blob_size)
    cold = {}
    for _ in range(cold_blob_count):
        prefix = os.urandom(16)
        digest = registry_client.store_blob(storage_root, servers.REPOSITORY,
                                            prefix + body[len(prefix):])
        cold[digest] = prefix
    return warm, manifest_digest, scenarios.ColdBlobs(body, cold)


def warm_targets(targets, blob_digests, manifest_digest):
    """GET the blobs twice and the manifest through each target, checking the bodies.

    The first GET fills a proxy's cache and the second proves the cached copy is served.
    """
    accept = {"Accept": registry_client.MANIFEST_ACCEPT}
    for target in targets:
        for digest in blob_digests:
            for _ in range(2):
                registry_client.fetch_and_verify(target.port, target.blob_path(digest), digest)
        for _ in range(2):
            registry_client.fetch_and_verify(target.port, target.manifest_path(manifest_digest),
                                             manifest_digest, headers=accept)
            if target.serves_tags:
                registry_client.fetch_and_verify(target.port, target.manifest_path(TAG),
                                                 manifest_digest, headers=accept)
        status, _, _ = registry_client.request(target.port, "HEAD",
                                               target.manifest_path(manifest_digest),
                                               headers=accept)
        if status != 200:
            raise BenchError(f"HEAD of the manifest through {target.name} returned {status}")


def run_anchor_scenarios(options, selected, work_dir, group, upstream, wan, cpus, load_binary):
    """Start Outpost and the anchors, seed and warm them, and run the selected scenarios.

    upstream is (port, storage root) and cpus is (server CPUs, client CPUs). Returns the
    Samples.
    """
    settings = scenarios.RunSettings(options.quick)
    server_cpus, client_cpus = cpus
    upstream_port, upstream_storage = upstream
    files_dir = os.path.join(work_dir, "files")
    os.makedirs(files_dir)

    print("starting outpost, nginx, nginx-cache and distribution-proxy", file=sys.stderr)
    outpost = servers.start_outpost(group, work_dir, options.outpost, wan.port, server_cpus)
    nginx = servers.start_nginx(group, work_dir, files_dir, server_cpus)
    nginx_cache = servers.start_nginx_cache(group, work_dir, wan.port, server_cpus,
                                            servers.OUTPOST_TAG_TTL)
    distribution = servers.start_distribution_proxy(group, work_dir, wan.port, server_cpus)
    blob_targets = [outpost, nginx, distribution]
    manifest_targets = [outpost, nginx, nginx_cache, distribution]
    cold_targets = [outpost, nginx_cache, distribution]

    print("seeding the upstream", file=sys.stderr)
    warm, manifest_digest, cold = seed_upstream(
        upstream_port, upstream_storage, settings, files_dir,
        settings.cold_blob_count(len(cold_targets)))
    pull_images = scenarios.seed_pull_images(settings, upstream_port, upstream_storage,
                                             settings.repetitions * len(cold_targets))
    print("warming the caches through the WAN hop", file=sys.stderr)
    warm_targets(blob_targets, warm.values(), manifest_digest)
    warm_targets([nginx_cache], [], manifest_digest)

    samples = []
    if "memory" in selected:
        print("scenario: memory", file=sys.stderr)
        samples += scenarios.memory(settings, blob_targets, warm[settings.streaming_blob_size],
                                    load_binary, client_cpus)
    if "warm blob GET" in selected:
        print("scenario: warm blob GET", file=sys.stderr)
        samples += scenarios.warm_blob_get(settings, blob_targets, warm, client_cpus)
    if "manifest requests" in selected:
        print("scenario: manifest requests", file=sys.stderr)
        samples += scenarios.manifest_requests(settings, manifest_targets, manifest_digest, TAG,
                                               client_cpus)
    if "cold fan-out" in selected:
        print("scenario: cold fan-out", file=sys.stderr)
        samples += scenarios.cold_fan_out(settings, cold_targets, cold, wan, load_binary,
                                          work_dir, client_cpus)
    if "image pull" in selected:
        print("scenario: image pull", file=sys.stderr)
        samples += scenarios.image_pull(settings, cold_targets, pull_images, wan, load_binary,
                                        client_cpus)
    return samples


def describe_run(options, settings, selected, started, cpus):
    """Return the lines that open the report: commit, machine, command, settings and tools.

    cpus is (server CPUs, client CPUs) as pick_cpus() returns them.
    """
    server_cpus, client_cpus = cpus
    pinning = (f"servers on CPU {server_cpus}; load generators, clients and the upstream on CPU "
               f"{client_cpus}" if server_cpus is not None else "no pinning (one core)")
    repetitions = f"- repetitions: {settings.repetitions}"
    if selected & ANCHOR_SCENARIOS:
        repetitions += (
            f" (distribution-proxy's 100-client cold fan-out: "
            f"{settings.cold_repetitions('distribution-proxy', 100)}), load duration: "
            f"{settings.duration_s} s each for blobs, {settings.manifest_duration_s} s for "
            "manifests")
    lines = [
        f"## Outpost load benchmark ({'quick' if options.quick else 'full'} run)",
        "",
        f"- commit: {describe_commit()}",
        f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {describe_machine()}",
        f"- command: `{shlex.join(['bench/load/run.sh'] + options.forwarded)}`",
        f"{repetitions}; {pinning}",
    ]
    if options.scenario:
        lines.append("- scenarios: " + ", ".join(
            scenario for scenario in SCENARIO_ORDER if scenario in selected))
    if selected & ANCHOR_SCENARIOS:
        lines.append(
            f"- anchors: {_command_output(['nginx', '-v'])} serving files (nginx) and as a "
            f"caching proxy (nginx-cache); {_command_output(['docker-registry', '--version'])} "
            "in proxy mode (distribution-proxy)")
    lines.append(f"- upstream: {_command_output(['docker-registry', '--version'])} behind an "
                 f"nginx hop that caps each connection at "
                 f"{settings.wan_rate_bytes_per_s / 1e6:.0f} MB/s (the WAN link)")
    if selected & ANCHOR_SCENARIOS:
        lines.append(f"- load generators: {_command_output(['wrk', '-v']).split(' Copyright')[0]}; "
                     f"{_command_output(['ab', '-V']).removeprefix('This is ')} for HEAD")
    if "working set" in selected:
        lines.append(f"- working set clients: Python {platform.python_version()} processes")
    return lines


def run(options, work_dir, group):
    settings = scenarios.RunSettings(options.quick)
    selected = set(options.scenario or SCENARIO_ORDER)
    load_binary = fill_binary = None
    if selected & ANCHOR_SCENARIOS:
        load_binary = find_program(options.outpost, "outpost_load", "OUTPOST_LOAD_BINARY")
    if "index scale" in selected:
        fill_binary = find_program(options.outpost, "outpost_index_fill",
                                   "OUTPOST_INDEX_FILL_BINARY")
    server_cpus, client_cpus = pick_cpus()
    started = datetime.datetime.now(datetime.timezone.utc)

    print("starting the upstream registry and the WAN hop", file=sys.stderr)
    upstream_port, _, upstream_storage = servers.start_upstream(group, work_dir, client_cpus)
    wan = servers.start_wan_hop(group, work_dir, upstream_port, client_cpus,
                                settings.wan_rate_bytes_per_s)

    samples = []
    if selected & ANCHOR_SCENARIOS:
        samples += run_anchor_scenarios(options, selected, work_dir, group,
                                        (upstream_port, upstream_storage), wan,
                                        (server_cpus, client_cpus), load_binary)
    if "index scale" in selected:
        print("scenario: index scale", file=sys.stderr)
        samples += index_scale.index_scale(settings, options.outpost, fill_binary, work_dir,
                                           group, server_cpus, client_cpus, wan.port)
    if "working set" in selected:
        print("scenario: working set", file=sys.stderr)
        samples += working_set.working_set(settings, options.outpost, work_dir, upstream_storage,
                                           wan, server_cpus, client_cpus)

    header = describe_run(options, settings, selected, started, (server_cpus, client_cpus))
    sections = []
    for scenario in SCENARIO_ORDER:
        if scenario in selected:
            sections += SECTIONS_OF_SCENARIO.get(scenario, [scenario])
    return report.full_report(header, sections, samples)


def main(argv):
    options = parse_arguments(argv)
    options.forwarded = [arg for arg in argv if arg not in ("--outpost", options.outpost)]
    # SIGINT too, because a shell without job control starts background jobs with it ignored.
    for signal_number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signal_number, _raise_on_signal)

    out_path = options.out
    if out_path is None:
        descriptor, out_path = tempfile.mkstemp(prefix="outpost-bench-", suffix=".md")
        os.close(descriptor)
    work_dir = tempfile.mkdtemp(prefix="outpost-bench-work-")
    group = ProcessGroup()
    try:
        text = run(options, work_dir, group)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        if not options.keep_work:
            print("bench: rerun with --keep-work to keep the logs", file=sys.stderr)
        return 1
    finally:
        group.stop_all()
        if options.keep_work:
            print(f"bench: configs, logs and data kept in {work_dir}", file=sys.stderr)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)

    print(text)
    with open(out_path, "w", encoding="utf-8") as out_file:
        out_file.write(text)
    print(f"bench: tables written to {out_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
