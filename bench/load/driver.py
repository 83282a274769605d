"""Run outpost_load, the C++ load driver of bench/load/driver/, and return its JSON reports.

One libuv loop in outpost_load drives every connection, so 100 fan-out clients cost a few
CPU seconds instead of 100 Python threads. Each function runs one mode against
127.0.0.1:port and returns the parsed report. It raises BenchError when the driver cannot
start, fails, times out or prints no report, with the driver's own error lines in the message.
"""

import json
import os
import select
import subprocess
import time

from processes import BenchError

# Extra seconds granted beyond the driver's own --timeout-s before the wrapper kills it.
_KILL_GRACE_S = 30
# The end of stderr kept in a BenchError message, in characters.
_STDERR_TAIL_CHARS = 3000


def _command(binary, mode, port, timeout_s, arguments, cpus):
    argv = [binary, mode, "--port", str(port), "--timeout-s", str(timeout_s)] + arguments
    if cpus is not None:
        argv = ["taskset", "-c", cpus] + argv
    return argv


def _stderr_tail(text):
    text = text.strip()
    return text if len(text) <= _STDERR_TAIL_CHARS else "..." + text[-_STDERR_TAIL_CHARS:]


def _parse_report(mode, stdout_text):
    """Return the JSON document on the last non-empty line of stdout, or None."""
    lines = [line for line in stdout_text.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        report = json.loads(lines[-1])
    except json.JSONDecodeError as error:
        raise BenchError(f"outpost_load {mode} printed a line that is not JSON ({error}): "
                         f"{lines[-1][:500]}") from error
    return report if isinstance(report, dict) else None


def _check_result(mode, returncode, stdout_text, stderr_text):
    report = _parse_report(mode, stdout_text)
    if returncode != 0:
        raise BenchError(f"outpost_load {mode} exited with status {returncode}: "
                         f"{_stderr_tail(stderr_text)}")
    if report is None:
        raise BenchError(f"outpost_load {mode} printed no JSON report; stderr: "
                         f"{_stderr_tail(stderr_text)}")
    if not report.get("ok"):
        raise BenchError(f"outpost_load {mode} reported errors: {report.get('errors')}")
    return report


def _run(mode, argv, timeout_s):
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, check=False,
                                   timeout=timeout_s + _KILL_GRACE_S, start_new_session=True)
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"outpost_load {mode} did not exit within {timeout_s + _KILL_GRACE_S} s "
                         "and was killed") from error
    except OSError as error:
        raise BenchError(f"starting outpost_load {mode} ({argv[0]}) failed: {error}") from error
    return _check_result(mode, completed.returncode, completed.stdout, completed.stderr)


def fan_out(binary, port, path, clients, expect_file=None, headers=None, timeout_s=120,
            cpus=None):
    """GET path from `clients` connections opened first and released at one instant.

    With expect_file, every body must equal that file's bytes. Returns the report: per client
    "status", "body_bytes", "first_byte_us" and "last_byte_us" (microseconds since the
    release) under "results", and their "p50" and "max" under "first_byte_us" and
    "last_byte_us". cpus pins the driver with taskset when given.
    """
    arguments = ["--path", path, "--clients", str(clients)]
    if expect_file is not None:
        arguments += ["--expect-file", expect_file]
    for name, value in (headers or {}).items():
        arguments += ["--header", f"{name}: {value}"]
    return _run("fan-out", _command(binary, "fan-out", port, timeout_s, arguments, cpus),
                timeout_s)


def pull(binary, port, repository, reference, clients=1, parallel=3, timeout_s=120, cpus=None):
    """Pull repository:reference with `clients` clients at once, as a container runtime does.

    Each client sends HEAD for the reference, GETs the manifest (and the linux/amd64 image of
    an index), then the config and layers with at most `parallel` blob requests in flight, and
    checks every digest and size. Returns the report: "wall_us" of the last client,
    "total_bytes", "requests" by kind and per client "wall_us" and "bytes" under "results".
    """
    arguments = ["--repository", repository, "--reference", reference,
                 "--clients", str(clients), "--parallel", str(parallel)]
    return _run("pull", _command(binary, "pull", port, timeout_s, arguments, cpus), timeout_s)


class IdleConnections:
    """A running outpost_load idle that holds its connections open until release().

    Use it as a context manager, or call release() in a finally block: leaving the block
    without release() kills the driver.
    """

    def __init__(self, popen, connections):
        self._popen = popen
        self.connections = connections
        self.pid = popen.pid
        # Bytes of stdout read after the "ready" line, which belong to the report.
        self.stdout_rest = b""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if self._popen.poll() is None:
            self._popen.kill()
            self._popen.communicate()

    def release(self, timeout_s=30):
        """Close the driver's stdin, which releases the connections, and return its report.

        Raises BenchError when a connection was dropped while held or the driver fails.
        """
        try:
            stdout_bytes, stderr_bytes = self._popen.communicate(input=b"", timeout=timeout_s)
        except subprocess.TimeoutExpired as error:
            self._popen.kill()
            self._popen.communicate()
            raise BenchError(f"outpost_load idle did not exit within {timeout_s} s after its "
                             "stdin was closed, and was killed") from error
        stdout_bytes = self.stdout_rest + stdout_bytes
        return _check_result("idle", self._popen.returncode,
                             stdout_bytes.decode("utf-8", errors="replace"),
                             stderr_bytes.decode("utf-8", errors="replace"))


def _read_ready_line(popen, timeout_s):
    """Read popen's stdout until its first line is complete or timeout_s has passed.

    Returns (the first line without its newline, or None when none arrived, the bytes read
    after it).
    """
    deadline = time.monotonic() + timeout_s
    received = b""
    descriptor = popen.stdout.fileno()
    while b"\n" not in received:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, received
        readable, _, _ = select.select([descriptor], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(descriptor, 4096)
        if not chunk:
            return None, received
        received += chunk
    line, rest = received.split(b"\n", 1)
    return line.decode("utf-8", errors="replace"), rest


def idle(binary, port, connections, path="/v2/", timeout_s=120, cpus=None):
    """Open `connections` keep-alive connections, GET path once on each, and hold them.

    Returns an IdleConnections once the driver has printed "ready N", that is once every
    connection has had a 2xx response. timeout_s bounds the time until then.
    """
    argv = _command(binary, "idle", port, timeout_s,
                    ["--connections", str(connections), "--path", path], cpus)
    try:
        popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True)
    except OSError as error:
        raise BenchError(f"starting outpost_load idle ({argv[0]}) failed: {error}") from error

    holder = IdleConnections(popen, connections)
    line, holder.stdout_rest = _read_ready_line(popen, timeout_s + _KILL_GRACE_S)
    if line == f"ready {connections}":
        return holder

    # The driver failed or timed out before it was ready: stop it and collect what it printed.
    if popen.poll() is None:
        popen.kill()
    _, stderr_bytes = popen.communicate()
    stderr_text = _stderr_tail(stderr_bytes.decode("utf-8", errors="replace"))
    raise BenchError(f"outpost_load idle with {connections} connections was not ready "
                     f"(first line {line!r}, exit status {popen.returncode}): {stderr_text}")
