"""Replay a list of blob GETs from several client processes and verify every body.

The clients share one queue of requests, so the server receives them in the list's order,
give or take the requests in flight. Each client is a process of its own with one keep-alive
connection, so that no client waits for the interpreter lock of another while it reads a
response. Every response must have status 200, a Content-Length equal to the blob's size,
that many body bytes and their SHA-256 equal to the requested digest. A request that fails
any of these becomes a record with an error, which check_records() turns into a BenchError.
"""

import collections
import hashlib
import http.client
import multiprocessing
import os
import threading
import time

from processes import BenchError, die_with_parent

# Time allowed for one socket operation (connect, send, one read) before the request fails.
_SOCKET_TIMEOUT_S = 60
# Time a client process gets to exit after sending its results, before it gets SIGKILL.
_EXIT_WAIT_S = 5
# Failures quoted in a BenchError message; the count covers them all.
_QUOTED_FAILURES = 5

# One blob GET to send: its place in the trace, path, expected digest and size, and the
# X-Request-Id that ties it to the server's access log line.
Request = collections.namedtuple("Request", "position path digest size request_id")

# The outcome of one GET. head_ns runs from sending the request to the end of the response
# head (0 if none arrived), and latency_ns to the last body byte. end_ns is
# time.monotonic_ns() at that byte. error is None for a verified body.
Record = collections.namedtuple(
    "Record", "position request_id digest status body_bytes head_ns latency_ns end_ns error")


def fetch_and_check(connection, request, buffer):
    """GET request.path on connection, read the body into buffer, check it and return a Record.

    The digest is computed after the last byte arrived, so it is not part of latency_ns.
    buffer must have room for request.size bytes.
    """
    started_ns = time.monotonic_ns()
    try:
        connection.request("GET", request.path, headers={"X-Request-Id": request.request_id})
        response = connection.getresponse()
        head_ns = time.monotonic_ns() - started_ns
        if response.status != 200:
            body = response.read()
            return _failed(request, started_ns, response.status, len(body),
                           f"status {response.status}: {body[:200]!r}")

        length_text = response.getheader("Content-Length")
        if length_text is None or not length_text.isdigit():
            response.close()
            return _failed(request, started_ns, 200, 0,
                           f"Content-Length is {length_text!r}, expected {request.size}")
        length = int(length_text)
        if length != request.size:
            response.close()
            return _failed(request, started_ns, 200, 0,
                           f"Content-Length is {length}, expected the blob's {request.size}")

        received = _read_body(response, memoryview(buffer)[:length])
        ended_ns = time.monotonic_ns()
    except (http.client.HTTPException, OSError) as error:
        return _failed(request, started_ns, 0, 0, f"{type(error).__name__}: {error}")

    if received != length:
        return _failed(request, started_ns, 200, received,
                       f"short body: {received} of {length} bytes")
    actual = "sha256:" + hashlib.sha256(memoryview(buffer)[:length]).hexdigest()
    if actual != request.digest:
        return _failed(request, started_ns, 200, received, f"body has digest {actual}")
    return Record(request.position, request.request_id, request.digest, 200, received, head_ns,
                  ended_ns - started_ns, ended_ns, None)


def _read_body(response, view):
    """Read into view until it is full or the body ends early, and return the bytes read."""
    received = 0
    while received < len(view):
        count = response.readinto(view[received:])
        if not count:
            break
        received += count
    return received


def _failed(request, started_ns, status, body_bytes, error):
    ended_ns = time.monotonic_ns()
    return Record(request.position, request.request_id, request.digest, status, body_bytes, 0,
                  ended_ns - started_ns, ended_ns, error)


def _client_main(port, requests, next_request, start_barrier, sender, cpus):
    """Send requests from the shared queue until it is empty, then send the Records to sender."""
    die_with_parent()
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=_SOCKET_TIMEOUT_S)
    buffer = bytearray(max(request.size for request in requests))
    records = []
    try:
        start_barrier.wait(_SOCKET_TIMEOUT_S)
        while True:
            with next_request.get_lock():
                index = next_request.value
                next_request.value += 1
            if index >= len(requests):
                break
            record = fetch_and_check(connection, requests[index], buffer)
            if record.error is not None:
                # The connection may still contain the rest of a bad response, so the next
                # request opens a new one.
                connection.close()
            records.append(record)
    except threading.BrokenBarrierError:
        records.append(Record(-1, "-", "-", 0, 0, 0, 0, 0, "the clients did not all start"))
    finally:
        connection.close()
        sender.send(records)
        sender.close()


def replay(port, requests, clients, cpus=None, timeout_s=600):
    """GET every request from `clients` processes at once and return (Records, start_ns).

    start_ns is time.monotonic_ns() when the clients were released, after every process had
    started. cpus is a set of CPU numbers for the client processes, or None. Raises
    BenchError when a client process fails or the replay takes more than timeout_s; failed
    requests come back as Records with an error, for check_records().
    """
    if not requests:
        return [], time.monotonic_ns()
    context = multiprocessing.get_context("fork")
    next_request = context.Value("q", 0)
    start_barrier = context.Barrier(clients + 1)
    processes = []
    receivers = []
    try:
        for _ in range(clients):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_client_main, daemon=True,
                                      args=(port, requests, next_request, start_barrier, sender,
                                            cpus))
            process.start()
            sender.close()
            processes.append(process)
            receivers.append(receiver)
        try:
            start_barrier.wait(_SOCKET_TIMEOUT_S)
        except threading.BrokenBarrierError as error:
            raise BenchError(f"the {clients} replay clients did not all start within "
                             f"{_SOCKET_TIMEOUT_S} s") from error
        start_ns = time.monotonic_ns()
        records = _collect(receivers, clients, timeout_s)
        # A client exits once its results are sent.
        for process in processes:
            process.join(_EXIT_WAIT_S)
        return records, start_ns
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()


def _collect(receivers, clients, timeout_s):
    deadline = time.monotonic() + timeout_s
    records = []
    for receiver in receivers:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not receiver.poll(remaining):
            raise BenchError(f"the replay with {clients} clients did not end within {timeout_s} s")
        try:
            records += receiver.recv()
        except EOFError as error:
            raise BenchError("a replay client process exited without sending its results") \
                from error
    records.sort(key=lambda record: record.position)
    return records


def check_records(records, expected_count, label):
    """Raise BenchError unless there are expected_count Records and none has an error."""
    failures = [record for record in records if record.error is not None]
    if not failures and len(records) == expected_count:
        return
    quoted = "; ".join(f"{record.digest} (request {record.request_id}, status {record.status}): "
                       f"{record.error}" for record in failures[:_QUOTED_FAILURES])
    raise BenchError(f"{label}: {len(failures)} of {expected_count} blob GETs failed, "
                     f"{len(records)} completed. {quoted}")
