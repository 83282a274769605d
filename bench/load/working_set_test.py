"""Unit tests of the working set scenario's trace, LRU model and log and metrics parsers.

Run with: /usr/bin/python3 -B -m unittest discover -s bench/load -p '*_test.py'
"""

import collections
import hashlib
import os
import shutil
import tempfile
import unittest

import registry_client
import servers
import working_set
from processes import BenchError


class ZipfTraceTest(unittest.TestCase):
    def test_same_seed_gives_same_trace(self):
        first = working_set.zipf_trace(50, 1000, 1.0, seed=7)
        second = working_set.zipf_trace(50, 1000, 1.0, seed=7)
        self.assertEqual(first, second)

    def test_other_seed_gives_other_trace(self):
        first = working_set.zipf_trace(50, 1000, 1.0, seed=7)
        second = working_set.zipf_trace(50, 1000, 1.0, seed=8)
        self.assertNotEqual(first, second)

    def test_blob_numbers_in_range(self):
        trace = working_set.zipf_trace(10, 500, 1.0, seed=1)
        self.assertEqual(len(trace), 500)
        self.assertTrue(all(0 <= blob < 10 for blob in trace), trace)

    def test_most_popular_blob_has_zipf_share(self):
        blob_count = 200
        length = 50_000
        trace = working_set.zipf_trace(blob_count, length, 1.0, seed=3)
        counts = collections.Counter(trace).most_common()
        harmonic = sum(1 / rank for rank in range(1, blob_count + 1))
        expected_share = 1 / harmonic
        top_share = counts[0][1] / length
        self.assertAlmostEqual(top_share, expected_share, delta=0.01,
                               msg=f"top blob share {top_share}, Zipf gives {expected_share}")
        second_share = counts[1][1] / length
        self.assertAlmostEqual(second_share, expected_share / 2, delta=0.01,
                               msg=f"second blob share {second_share}")

    def test_popularity_does_not_follow_blob_number(self):
        trace = working_set.zipf_trace(200, 20_000, 1.0, seed=3)
        top_blobs = [blob for blob, _ in collections.Counter(trace).most_common(5)]
        self.assertNotEqual(top_blobs, [0, 1, 2, 3, 4])

    def test_rejects_no_blobs(self):
        with self.assertRaisesRegex(ValueError, "at least one blob"):
            working_set.zipf_trace(0, 10, 1.0, seed=1)


class SimulateLruTest(unittest.TestCase):
    def test_cases(self):
        # (name, trace, sizes, capacity, counted_from, expected CacheCounts)
        cases = [
            ("capacity holds all", [0, 1, 0, 1], [1, 1], 2, 0,
             working_set.CacheCounts(4, 2, 4, 2)),
            # FIFO would remove blob 0 at the request of blob 2 and miss it at the end.
            ("removes least recently used", [0, 1, 0, 2, 0], [1, 1, 1], 2, 0,
             working_set.CacheCounts(5, 2, 5, 2)),
            ("a large blob removes several", [1, 2, 0, 1, 2], [3, 1, 1], 3, 0,
             working_set.CacheCounts(5, 0, 7, 0)),
            ("hit bytes are the blob sizes", [0, 1, 1, 0], [3, 1], 4, 0,
             working_set.CacheCounts(4, 2, 8, 4)),
            ("a blob over the capacity is not stored", [0, 1, 0, 1], [1, 5], 4, 0,
             working_set.CacheCounts(4, 1, 12, 1)),
            ("counts from counted_from", [0, 0, 0], [2], 2, 1,
             working_set.CacheCounts(2, 2, 4, 4)),
            ("zero capacity stores nothing", [0, 0], [1], 0, 0,
             working_set.CacheCounts(2, 0, 2, 0)),
        ]
        for name, trace, sizes, capacity, counted_from, expected in cases:
            with self.subTest(name):
                actual = working_set.simulate_lru(trace, sizes, capacity, counted_from)
                self.assertEqual(actual, expected)

    def test_larger_capacity_never_hits_less_with_equal_sizes(self):
        # With equal sizes LRU is a stack algorithm: a larger cache contains what a smaller one
        # contains.
        trace = working_set.zipf_trace(100, 5000, 1.0, seed=5)
        sizes = [1] * 100
        hits = [working_set.simulate_lru(trace, sizes, capacity).hits
                for capacity in (5, 10, 20, 40, 80)]
        self.assertEqual(hits, sorted(hits), hits)

    def test_capacity_of_everything_misses_each_blob_once(self):
        trace = working_set.zipf_trace(100, 5000, 1.0, seed=5)
        sizes = [1 + blob % 7 for blob in range(100)]
        everything = working_set.simulate_lru(trace, sizes, sum(sizes))
        self.assertEqual(everything.requests - everything.hits, len(set(trace)))


class SameMissesTraceTest(unittest.TestCase):
    def test_misses_get_new_blobs_and_later_hits_follow(self):
        trace = [0, 1, 0, 2, 0, 1, 0]
        # Positions 0 and 1 are the warm-up, which has no outcomes.
        outcomes = {2: "miss", 3: "hit", 4: "fill-joined", 5: "miss", 6: "miss"}
        new_trace, originals = working_set.same_misses_trace(trace, outcomes, first_new_blob=3)
        self.assertEqual(new_trace, [0, 1, 3, 2, 3, 4, 5])
        self.assertEqual(originals, [0, 1, 0])

    def test_no_misses_keeps_trace(self):
        trace = [0, 1, 0]
        new_trace, originals = working_set.same_misses_trace(trace, {1: "hit", 2: "hit"}, 2)
        self.assertEqual(new_trace, trace)
        self.assertEqual(originals, [])


class SeedBlobsTest(unittest.TestCase):
    def test_store_and_remove(self):
        storage_root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, storage_root)
        blobs = working_set.seed_blobs(storage_root, [4096, 4096, 10])
        self.assertEqual([blob.size for blob in blobs], [4096, 4096, 10])
        self.assertEqual(len({blob.digest for blob in blobs}), 3)
        base = os.path.join(storage_root, "docker", "registry", "v2")
        for blob in blobs:
            hex_digest = blob.digest.split(":")[1]
            data_path = os.path.join(base, "blobs", "sha256", hex_digest[:2], hex_digest, "data")
            with open(data_path, "rb") as data_file:
                data = data_file.read()
            self.assertEqual(len(data), blob.size)
            self.assertEqual("sha256:" + hashlib.sha256(data).hexdigest(), blob.digest)

        registry_client.remove_stored_blob(storage_root, working_set.REPOSITORY, blobs[0].digest)
        hex_digest = blobs[0].digest.split(":")[1]
        self.assertFalse(os.path.exists(os.path.join(base, "blobs", "sha256", hex_digest[:2],
                                                     hex_digest)))
        self.assertFalse(os.path.exists(os.path.join(base, "repositories",
                                                     working_set.REPOSITORY, "_layers",
                                                     "sha256", hex_digest)))


class ParseMetricsTest(unittest.TestCase):
    def test_sums_labels_and_skips_comments(self):
        text = ("# HELP outpost_upstream_requests_total Requests.\n"
                "# TYPE outpost_upstream_requests_total counter\n"
                'outpost_upstream_requests_total{remote="a"} 3\n'
                'outpost_upstream_requests_total{remote="b"} 4\n'
                "outpost_downloads_started_total 12\n"
                "\n")
        metrics = working_set.parse_metrics(text)
        self.assertEqual(metrics["outpost_upstream_requests_total"], 7)
        self.assertEqual(metrics["outpost_downloads_started_total"], 12)
        self.assertEqual(len(metrics), 2)

    def test_rejects_value_that_is_not_a_number(self):
        with self.assertRaisesRegex(BenchError, "without a numeric value"):
            working_set.parse_metrics("outpost_cache_hits_total many\n")


class AccessOutcomesTest(unittest.TestCase):
    def test_reads_outcomes_of_prefix(self):
        lines = [
            "[2026-01-01 00:00:00.000] [access] [info] GET /v2/upstream/bench/working-set/blobs/"
            "sha256:ab status=200 bytes_sent=10 duration_ms=0 repo=upstream cache=hit "
            "req=ws-evicting-0-5",
            "[2026-01-01 00:00:00.001] [access] [info] GET /v2/upstream/bench/working-set/blobs/"
            "sha256:cd status=200 bytes_sent=10 duration_ms=3 repo=upstream cache=fill-joined "
            "req=ws-evicting-0-6 aborted=true",
            "[2026-01-01 00:00:00.002] [access] [info] GET /v2/upstream/bench/working-set/blobs/"
            "sha256:cd status=200 bytes_sent=10 duration_ms=3 repo=upstream cache=miss "
            "req=ws-keeping-0-6",
            "[2026-01-01 00:00:00.003] [cache] [info] blobs evicted freed_bytes=10 bytes=5",
        ]
        with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as log_file:
            log_file.write("\n".join(lines) + "\n")
        self.addCleanup(os.unlink, log_file.name)
        outcomes = working_set.access_outcomes(log_file.name, "ws-evicting-0-")
        self.assertEqual(outcomes, {"ws-evicting-0-5": "hit", "ws-evicting-0-6": "fill-joined"})


class NearestRankTest(unittest.TestCase):
    def test_percentiles(self):
        values = list(range(100, 0, -1))
        self.assertEqual(working_set.nearest_rank(values, 0.50), 50)
        self.assertEqual(working_set.nearest_rank(values, 0.99), 99)
        self.assertEqual(working_set.nearest_rank(values, 1.0), 100)
        self.assertEqual(working_set.nearest_rank([7], 0.99), 7)

    def test_no_values(self):
        self.assertIsNone(working_set.nearest_rank([], 0.5))


class WanHopGetsUnderTest(unittest.TestCase):
    def test_counts_gets_under_prefix(self):
        lines = [
            "GET /v2/bench/working-set/blobs/sha256:ab 200 100",
            "HEAD /v2/bench/working-set/blobs/sha256:ab 200 0",
            "GET /v2/bench/app/blobs/sha256:cd 200 50",
            "GET /v2/bench/working-set/blobs/sha256:ef 200 30",
            "a line of another format",
        ]
        with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as log_file:
            log_file.write("\n".join(lines) + "\n")
        self.addCleanup(os.unlink, log_file.name)
        wan = servers.WanHop(port=0, process=None, log_path=log_file.name, rate_bytes_per_s=1)
        self.assertEqual(wan.gets_under("/v2/bench/working-set/blobs/"), (2, 130))


if __name__ == "__main__":
    unittest.main()
