"""Start, watch and stop the processes of a benchmark run, and read their CPU time.

Every process is started in its own session, so a Ctrl-C in the terminal reaches only the
driver, which then stops each process by pid. A process also gets SIGKILL from the kernel if
the driver dies first (PR_SET_PDEATHSIG), which covers a driver killed with SIGKILL.
"""

import ctypes
import http.client
import os
import signal
import socket
import subprocess
import time

_PR_SET_PDEATHSIG = 1
_CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A step of the benchmark failed: a process, a request or a check."""


def die_with_parent():
    """Have the kernel send this process SIGKILL when its parent exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat_fields(pid):
    """Return the fields of /proc/PID/stat after the command name, or None if pid is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat_file:
            text = stat_file.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    return text[text.rindex(")") + 2:].split()


def _start_time(pid):
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])


def child_pids(pid):
    """Return the pids whose parent is pid."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None and int(fields[1]) == pid:
            children.append(int(entry))
    return children


def cpu_seconds(pids):
    """Return the user plus system CPU seconds used so far by the given processes.

    /proc/PID/stat counts every thread of a process, so one pid covers a multi-threaded
    server. Time of children that already exited is not counted.
    """
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            raise BenchError(f"process {pid} exited while its CPU time was being measured")
        # Fields 14 and 15 of the full line: utime and stime, in clock ticks.
        ticks += int(fields[11]) + int(fields[12])
    return ticks / _CLOCK_TICKS_PER_SECOND


def find_program(outpost_binary, name, environment_variable):
    """Return the path of a suite program: $environment_variable, else name next to outpost.

    The CMake build writes outpost_load and outpost_index_fill into the folder of outpost.
    """
    path = os.environ.get(environment_variable) or os.path.join(
        os.path.dirname(os.path.abspath(outpost_binary)), name)
    if not os.access(path, os.X_OK):
        raise BenchError(f"{path} is missing or not executable; build the {name} target or set "
                         f"{environment_variable}")
    return path


def resident_bytes(pids):
    """Return the summed resident set size (VmRSS) of the given processes, in bytes.

    Pages shared between processes (an nginx master and its worker) count once per process.
    """
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (FileNotFoundError, ProcessLookupError) as error:
            raise BenchError(f"process {pid} exited while its memory was being read") from error
    return total


class ManagedProcess:
    """One process started by the benchmark, with its log file."""

    def __init__(self, name, popen, log_path):
        self.name = name
        self.popen = popen
        self.pid = popen.pid
        self.log_path = log_path
        self.start_time = _start_time(popen.pid)

    def is_running(self):
        return self.popen.poll() is None

    def log_tail(self, max_bytes=2000):
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(0, os.SEEK_END)
                size = log_file.tell()
                log_file.seek(max(0, size - max_bytes))
                return log_file.read().decode("utf-8", errors="replace")
        except OSError as error:
            return f"(log {self.log_path} unreadable: {error})"

    def exit_description(self):
        code = self.popen.poll()
        if code is None:
            return "running"
        if code < 0:
            return f"killed by signal {-code}"
        return f"exited with status {code}"


class ProcessGroup:
    """The processes of one run. stop_all() stops each by pid, the last started first."""

    def __init__(self):
        self._processes = []

    def start(self, name, argv, log_path, env=None, cpus=None):
        """Start argv with stdout and stderr appended to log_path, pinned to cpus if given."""
        if cpus is not None:
            argv = ["taskset", "-c", cpus] + list(argv)
        log_file = open(log_path, "ab")
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError as error:
            raise BenchError(f"failed to start {name} ({argv[0]}): {error}") from error
        finally:
            log_file.close()
        process = ManagedProcess(name, popen, log_path)
        self._processes.append(process)
        return process

    def stop_all(self, timeout_s=10.0):
        """Stop every process: SIGTERM, then SIGKILL after timeout_s, children included."""
        while self._processes:
            process = self._processes.pop()
            self._stop(process, timeout_s)

    @staticmethod
    def _stop(process, timeout_s):
        # Children (nginx workers) are listed before the parent goes, since they are
        # re-parented once it exits and could no longer be found by their parent pid.
        children = [(pid, _start_time(pid)) for pid in child_pids(process.pid)]
        if process.is_running():
            process.popen.send_signal(signal.SIGTERM)
            try:
                process.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        for pid, start_time in children:
            # Compare start times so that a pid reused by an unrelated process is left alone.
            if start_time is not None and _start_time(pid) == start_time:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def wait_for_http(port, path, process, timeout_s=20.0, log_marker=None):
    """Wait until 127.0.0.1:port responds to GET path and log_marker is in the process log.

    Raises BenchError if the process exits or the time runs out.
    """
    deadline = time.monotonic() + timeout_s
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if not process.is_running():
            raise BenchError(
                f"{process.name} {process.exit_description()} during start; "
                f"log {process.log_path}:\n{process.log_tail()}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", path)
            connection.getresponse().read()
            answered = True
        except (http.client.HTTPException, OSError) as error:
            answered = False
            last_error = str(error)
        finally:
            connection.close()
        if answered and (log_marker is None or log_marker in process.log_tail(1 << 20)):
            return
        time.sleep(0.1)
    raise BenchError(
        f"{process.name} did not respond to GET {path} on 127.0.0.1:{port} within "
        f"{timeout_s:.0f} s ({last_error}); log {process.log_path}:\n{process.log_tail()}")
