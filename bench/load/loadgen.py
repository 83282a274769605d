"""Load generators: wrk for keep-alive GETs, ab for HEAD (driver.py runs the C++ driver).

wrk 4.1.0 (Debian 12) waits for a body after a HEAD response that carries Content-Length,
so every HEAD request ends in its timeout. ab 2.3 handles HEAD, so HEAD runs use ab.
"""

import json
import os
import re
import subprocess
import tempfile

from processes import BenchError

_WRK_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrk_report.lua")
# wrk's default of 2 s would count a slow 64 MiB response under 16 connections as a timeout.
_WRK_TIMEOUT = "30s"


def run_wrk(port, path, connections, duration_s, cpus, headers=None, allow_incomplete=False,
            script=None, script_args=()):
    """Run wrk GETs against 127.0.0.1:port/path and return the parsed BENCH_JSON line.

    script replaces wrk_report.lua and must print the same BENCH_JSON line, as
    sample_paths.lua does. script_args are passed to the script after "--".
    Raises BenchError if wrk fails, if any request fails, or if no request completes, unless
    allow_incomplete is set: then a run that only received bytes is accepted.
    """
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", f"--timeout={_WRK_TIMEOUT}",
            "--latency", "-s", script or _WRK_SCRIPT]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(f"http://127.0.0.1:{port}{path}")
    if script_args:
        argv += ["--"] + list(script_args)
    if cpus is not None:
        argv = ["taskset", "-c", cpus] + argv

    output = _run_tool(argv, "wrk", path, duration_s)

    report = None
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            report = json.loads(line[len("BENCH_JSON "):])
    if report is None:
        raise BenchError(f"wrk {path} printed no BENCH_JSON line:\n{output}")

    failures = {key: report[key] for key in ("connect_errors", "read_errors", "write_errors",
                                             "status_errors", "timeouts") if report[key] > 0}
    if report["requests"] == 0 and not (allow_incomplete and report["bytes"] > 0):
        raise BenchError(f"wrk 127.0.0.1:{port}{path} completed no request")
    if failures:
        raise BenchError(f"wrk 127.0.0.1:{port}{path}: {report['requests']:.0f} "
                         f"requests with failures {failures}")
    return report


def _run_tool(argv, name, path, duration_s):
    try:
        completed = subprocess.run(argv, capture_output=True, text=True,
                                   timeout=duration_s + 60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BenchError(f"{name} {path} failed: {error}") from error
    if completed.returncode != 0:
        raise BenchError(f"{name} {path} exited with status {completed.returncode}: "
                         f"{completed.stderr.strip()} {completed.stdout.strip()[-500:]}")
    return completed.stdout


def _ab_number(output, label):
    match = re.search(rf"^{re.escape(label)}:\s+([0-9.]+)", output, re.MULTILINE)
    return None if match is None else float(match.group(1))


def run_ab_head(port, path, connections, duration_s, cpus, headers=None):
    """Run ab with HEAD over keep-alive connections against 127.0.0.1:port/path.

    Returns the keys of run_wrk's report; p999_us is None because ab reports whole
    percentiles only. Raises BenchError if any request fails or none completes.
    """
    with tempfile.NamedTemporaryFile(mode="r", suffix=".csv") as percentiles_file:
        # -t sets a limit of 50000 requests unless -n follows it. ab allocates 32 bytes per
        # request up front. 400000 requests per second is an estimate above what one core
        # serves, and ab stops early with correct figures if a server reaches it.
        max_requests = 400_000 * duration_s
        # ab speaks HTTP/1.0; -k asks for keep-alive, which every target confirms.
        argv = ["ab", "-k", "-i", "-q", "-c", str(connections), "-t", str(duration_s),
                "-n", str(max_requests), "-e", percentiles_file.name]
        for name, value in (headers or {}).items():
            argv += ["-H", f"{name}: {value}"]
        argv.append(f"http://127.0.0.1:{port}{path}")
        if cpus is not None:
            argv = ["taskset", "-c", cpus] + argv
        output = _run_tool(argv, "ab HEAD", path, duration_s)

        # Lines "P,MILLISECONDS": the time within which P percent of requests completed.
        percentiles_ms = {}
        for line in percentiles_file.read().splitlines()[1:]:
            percent, milliseconds = line.split(",")
            percentiles_ms[int(percent)] = float(milliseconds)

    requests = _ab_number(output, "Complete requests")
    seconds = _ab_number(output, "Time taken for tests")
    failed = _ab_number(output, "Failed requests")
    non_2xx = _ab_number(output, "Non-2xx responses") or 0
    if not requests or seconds is None:
        raise BenchError(f"ab HEAD 127.0.0.1:{port}{path} completed no request:\n{output}")
    if failed or non_2xx:
        raise BenchError(f"ab HEAD 127.0.0.1:{port}{path}: {requests:.0f} requests, "
                         f"{failed:.0f} failed, {non_2xx:.0f} not 2xx")
    if 50 not in percentiles_ms or 99 not in percentiles_ms:
        raise BenchError(f"ab HEAD {path} wrote no percentiles")
    return {
        "duration_us": seconds * 1e6,
        "requests": requests,
        "bytes": _ab_number(output, "Total transferred") or 0,
        "p50_us": percentiles_ms[50] * 1000,
        "p99_us": percentiles_ms[99] * 1000,
        "p999_us": None,
    }
