"""Unit tests of trace_client against a small HTTP server on 127.0.0.1.

Run with: /usr/bin/python3 -B -m unittest discover -s bench/load -p '*_test.py'
"""

import hashlib
import http.client
import http.server
import os
import threading
import unittest

import trace_client
from processes import BenchError


def _digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _BlobHandler(http.server.BaseHTTPRequestHandler):
    """Serves the server's `responses`: path -> (status, body, Content-Length, bytes sent)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802, the name http.server calls
        status, body, content_length, sent = self.server.responses[self.path]
        self.server.request_ids.append(self.headers.get("X-Request-Id"))
        self.send_response(status)
        self.send_header("Content-Length", str(content_length))
        self.end_headers()
        self.wfile.write(body[:sent])
        if sent < content_length:
            self.close_connection = True

    def log_message(self, format, *args):  # noqa: A002, the signature of http.server
        pass


class TraceClientTest(unittest.TestCase):
    def setUp(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BlobHandler)
        self.server.daemon_threads = True
        self.server.responses = {}
        self.server.request_ids = []
        self.port = self.server.server_address[1]
        thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        self.addCleanup(thread.join)
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)

    def add_blob(self, path, body, status=200, content_length=None, sent=None):
        content_length = len(body) if content_length is None else content_length
        sent = len(body) if sent is None else sent
        self.server.responses[path] = (status, body, content_length, sent)

    def fetch(self, path, digest, size):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.addCleanup(connection.close)
        request = trace_client.Request(3, path, digest, size, "ws-test-3")
        return trace_client.fetch_and_check(connection, request, bytearray(size + 16))

    def test_verified_body(self):
        body = os.urandom(5000)
        self.add_blob("/good", body)
        record = self.fetch("/good", _digest(body), len(body))
        self.assertIsNone(record.error)
        self.assertEqual(record.status, 200)
        self.assertEqual(record.body_bytes, 5000)
        self.assertEqual(record.position, 3)
        self.assertGreater(record.head_ns, 0)
        self.assertGreaterEqual(record.latency_ns, record.head_ns)
        self.assertEqual(self.server.request_ids, ["ws-test-3"])

    def test_wrong_bytes(self):
        body = os.urandom(5000)
        self.add_blob("/corrupt", body)
        record = self.fetch("/corrupt", _digest(b"other bytes"), len(body))
        self.assertIn("body has digest " + _digest(body), record.error)

    def test_short_body(self):
        body = os.urandom(5000)
        self.add_blob("/short", body, sent=1000)
        record = self.fetch("/short", _digest(body), len(body))
        self.assertEqual(record.error, "short body: 1000 of 5000 bytes")
        self.assertEqual(record.body_bytes, 1000)

    def test_content_length_other_than_blob_size(self):
        body = os.urandom(100)
        self.add_blob("/small", body)
        record = self.fetch("/small", _digest(body), 200)
        self.assertEqual(record.error, "Content-Length is 100, expected the blob's 200")

    def test_error_status(self):
        self.add_blob("/missing", b'{"errors":[]}', status=404)
        record = self.fetch("/missing", _digest(b""), 0)
        self.assertEqual(record.status, 404)
        self.assertIn("status 404", record.error)

    def test_refused_connection(self):
        self.server.shutdown()
        self.server.server_close()
        record = self.fetch("/any", _digest(b""), 0)
        self.assertIn("ConnectionRefusedError", record.error)

    def test_replay_verifies_every_request(self):
        requests = []
        for position in range(30):
            body = os.urandom(1000 + position * 100)
            path = f"/blob/{position}"
            self.add_blob(path, body)
            requests.append(trace_client.Request(position, path, _digest(body), len(body),
                                                 f"ws-test-{position}"))
        records, start_ns = trace_client.replay(self.port, requests, clients=3, timeout_s=60)
        self.assertEqual([record.position for record in records], list(range(30)))
        self.assertEqual([record.error for record in records], [None] * 30)
        self.assertTrue(all(record.end_ns > start_ns for record in records))
        self.assertEqual(sorted(self.server.request_ids),
                         sorted(request.request_id for request in requests))
        trace_client.check_records(records, len(requests), "replay")

    def test_replay_reports_corrupt_body(self):
        good = os.urandom(2000)
        self.add_blob("/good", good)
        bad = os.urandom(2000)
        self.add_blob("/bad", bad, sent=1500)
        requests = [trace_client.Request(0, "/good", _digest(good), 2000, "ws-test-0"),
                    trace_client.Request(1, "/bad", _digest(bad), 2000, "ws-test-1"),
                    trace_client.Request(2, "/good", _digest(good), 2000, "ws-test-2")]
        records, _ = trace_client.replay(self.port, requests, clients=2, timeout_s=60)
        self.assertEqual([record.error is None for record in records], [True, False, True])
        with self.assertRaisesRegex(BenchError, "1 of 3 blob GETs failed.*short body: 1500 "
                                                "of 2000 bytes"):
            trace_client.check_records(records, len(requests), "replay")


class CheckRecordsTest(unittest.TestCase):
    def test_missing_records(self):
        record = trace_client.Record(0, "ws-0", "sha256:ab", 200, 10, 4, 5, 5, None)
        with self.assertRaisesRegex(BenchError, "0 of 2 blob GETs failed, 1 completed"):
            trace_client.check_records([record], 2, "replay")

    def test_all_verified(self):
        record = trace_client.Record(0, "ws-0", "sha256:ab", 200, 10, 4, 5, 5, None)
        trace_client.check_records([record], 1, "replay")


if __name__ == "__main__":
    unittest.main()
