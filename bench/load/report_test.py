"""Unit tests of the report tables.

Run with: /usr/bin/python3 -B -m unittest discover -s bench/load -p '*_test.py'
"""

import unittest

import report
from scenarios import Sample


class ScenarioTablesTest(unittest.TestCase):
    def test_unrated_counts_stay_out_of_ratios(self):
        samples = [
            Sample("hits", "case", "outpost", {"hit ratio": 0.6, "evictions": 40}),
            Sample("hits", "case", "ideal LRU", {"hit ratio": 0.8}),
        ]
        text = report.scenario_tables("hits", samples)
        self.assertIn("| case | target | hit ratio | evictions |", text)
        self.assertIn("| case | anchor | hit ratio ratio |\n", text)
        self.assertIn("| case | ideal LRU | 0.75 |", text)
        self.assertIn("Better is: hit ratio higher.", text)

    def test_latency_is_lower_better(self):
        samples = [
            Sample("cost", "case", "outpost", {"hit p50 ms": 2.0, "hit MB/s": 50}),
            Sample("cost", "case", "outpost, budget holds all", {"hit p50 ms": 1.0,
                                                                 "hit MB/s": 100}),
        ]
        text = report.scenario_tables("cost", samples)
        self.assertIn("Better is: hit p50 ms lower, hit MB/s higher.", text)
        self.assertIn("| case | outpost, budget holds all | 2.00 | 0.50 |", text)


if __name__ == "__main__":
    unittest.main()
