"""Unit tests of the driver's command line.

Run with: /usr/bin/python3 -B -m unittest discover -s bench/load -p '*_test.py'
"""

import contextlib
import datetime
import io
import unittest

import bench
import scenarios


class ScenarioOptionTest(unittest.TestCase):
    def test_repeated_scenarios(self):
        options = bench.parse_arguments(["--outpost", "outpost", "--scenario", "working set",
                                         "--scenario", "memory"])
        self.assertEqual(options.scenario, ["working set", "memory"])

    def test_default_runs_every_scenario(self):
        options = bench.parse_arguments(["--outpost", "outpost"])
        self.assertIsNone(options.scenario)

    def test_rejects_unknown_scenario(self):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit):
            bench.parse_arguments(["--outpost", "outpost", "--scenario", "working-set"])
        self.assertIn("invalid choice: 'working-set'", stderr.getvalue())


class DescribeRunTest(unittest.TestCase):
    def describe(self, argv):
        options = bench.parse_arguments(["--outpost", "outpost"] + argv)
        options.forwarded = argv
        selected = set(options.scenario or bench.SCENARIO_ORDER)
        started = datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.timezone.utc)
        return bench.describe_run(options, scenarios.RunSettings(quick=True), selected, started,
                                  ("1", "0"))

    def test_working_set_alone(self):
        lines = self.describe(["--scenario", "working set"])
        self.assertIn("- command: `bench/load/run.sh --scenario 'working set'`", lines)
        self.assertIn("- scenarios: working set", lines)
        self.assertIn("- repetitions: 1; servers on CPU 1; load generators, clients and the "
                      "upstream on CPU 0", lines)
        self.assertFalse([line for line in lines if line.startswith("- anchors:")], lines)
        self.assertTrue([line for line in lines if line.startswith("- working set clients:")],
                        lines)

    def test_every_scenario(self):
        lines = self.describe([])
        self.assertFalse([line for line in lines if line.startswith("- scenarios:")], lines)
        self.assertTrue([line for line in lines if line.startswith("- anchors:")], lines)
        self.assertTrue([line for line in lines if line.startswith("- load generators:")], lines)


if __name__ == "__main__":
    unittest.main()
