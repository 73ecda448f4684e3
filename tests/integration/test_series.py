"""The run second by second: the JSON report's `series` and `--output csv:FILE` hold the same
points, whose hits and executions add up to the report's totals and to nginx's own count, with
the open model's rate visible per second.

Run: LOADS_BIN_DIR=build/bin /usr/bin/python3 -m unittest -v test_series   (from tests/integration)
"""

import csv
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class SeriesTest(unittest.TestCase):
    def run_with_csv(self, args):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "series.csv")
            result = harness.run_runner([*args, "--output", f"csv:{path}"], timeout=60)
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, 0, harness.describe(result))
        harness.assert_report_consistent(self, result)
        return result, rows

    def test_series_adds_up_to_the_report_and_to_nginx(self):
        with harness.Nginx() as nginx:
            result, rows = self.run_with_csv(["--url", nginx.url, "-u", "2", "-d", "3"])
            logged = nginx.access_log_count()
        series = result.report["series"]
        self.assertEqual(series["step_seconds"], 1)
        # An interval counts in the second that holds its middle; the final one may be later.
        self.assertIn(len(series["seconds"]), (3, 4))
        self.assertEqual(series["seconds"], list(range(len(series["seconds"]))))
        self.assertEqual(sum(series["hits"]), result.report["hits"])
        self.assertEqual(sum(series["hits"]), logged)
        self.assertEqual(sum(series["executions"]), result.report["tests"]["total"])
        self.assertEqual(series["errors"], [0] * len(series["seconds"]))
        self.assertEqual(series["active_users"][0], 2)
        latency = result.report["latency_seconds"]
        for p99 in series["p99_seconds"]:
            if p99 is not None:
                self.assertLessEqual(p99, latency["max"])
                self.assertGreaterEqual(p99, latency["min"])
        # The CSV file holds the same points.
        self.assertEqual([int(r["hits"]) for r in rows], series["hits"])
        self.assertEqual([float(r["second"]) for r in rows], series["seconds"])
        self.assertEqual([int(r["active_users"]) for r in rows], series["active_users"])
        for row, p99 in zip(rows, series["p99_seconds"]):
            self.assertAlmostEqual(float(row["p99_ms"]), p99 * 1000, places=3)

    def test_the_open_model_rate_per_second(self):
        with harness.Nginx() as nginx:
            result, _ = self.run_with_csv(["--url", nginx.url, "--rate", "200", "-d", "3"])
            logged = nginx.access_log_count()
        series = result.report["series"]
        self.assertEqual(sum(series["hits"]), logged)
        self.assertEqual(sum(series["hits"]), 600)
        # The whole seconds of the run each started about 200 executions.
        for hits in series["hits"][:3]:
            self.assertGreater(hits, 150, series)
            self.assertLess(hits, 250, series)

    def test_errors_per_second(self):
        with harness.ClosedPort() as closed:
            result = harness.run_runner(["--url", closed.url, "--hits", "5"])
        series = result.report["series"]
        self.assertEqual(sum(series["errors"]), 5)
        self.assertEqual(sum(series["hit_errors"]), 5)
        self.assertEqual(series["p50_seconds"], [None] * len(series["seconds"]))

    def test_a_distributed_run_has_its_series(self):
        # The controller builds the series from its workers' snapshots, each in the second of
        # its middle, counted from the common start it gave them.
        controller = harness.Controller(extra=("--max-local-workers", "0"))
        try:
            controller.start_workers(2)
            with harness.Nginx() as nginx:
                result, rows = self.run_with_csv(["--controller", controller.grpc, "--url",
                                                  nginx.url, "--workers", "2", "-u", "4",
                                                  "-d", "4"])
                logged = nginx.access_log_count()
        finally:
            controller.close()
        series = result.report["series"]
        self.assertEqual(series["step_seconds"], 1)
        self.assertIn(len(series["seconds"]), (4, 5))
        self.assertEqual(series["seconds"], list(range(len(series["seconds"]))))
        self.assertEqual(sum(series["hits"]), logged)
        self.assertEqual(sum(series["hits"]), result.report["hits"])
        self.assertEqual(sum(series["executions"]), result.report["tests"]["total"])
        # Every second of the load has hits from both workers' users.
        self.assertEqual(series["active_users"][0], 4)
        for hits in series["hits"][:4]:
            self.assertGreater(hits, 0, series)
        self.assertEqual([int(r["hits"]) for r in rows], series["hits"])
        self.assertEqual([int(r["active_users"]) for r in rows], series["active_users"])


if __name__ == "__main__":
    unittest.main()
