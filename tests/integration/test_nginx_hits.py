"""loads-runner against a real nginx: what the runner reports must match
what nginx logged, request for request.

Run: LOADS_BIN_DIR=build/bin LOADS_EXAMPLES_DIR=build/examples \\
     /usr/bin/python3 -m unittest -v test_nginx_hits      (from tests/integration)
"""

import collections
import os
import sys
import time
import unittest

# Importable both from this folder and as tests/integration/test_x.py from elsewhere.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class NginxHitsTest(unittest.TestCase):
    def setUp(self):
        harness.runner_path()  # fail at once, and clearly, when the build is missing
        # A fresh nginx per test, so its access log holds only this test's requests.
        self.nginx = self.enterContext(harness.Nginx())

    def run_ok(self, args, timeout=60):
        result = harness.run_runner(args, timeout=timeout)
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, 0, harness.describe(result))
        harness.assert_report_consistent(self, result)
        return result

    def test_url_hits_match_access_log(self):
        result = self.run_ok(["--url", self.nginx.url, "-u", "10", "--hits", "20"])
        report = result.report
        self.assertEqual(report["hits"], 200, harness.describe(result))
        self.assertEqual(report["tests"], {"total": 200, "success": 200, "failures": 0, "errors": 0})
        self.assertEqual(report["status_codes"], {"200": 200})
        self.assertEqual(harness.nonzero(report.get("hit_errors")), {})
        self.assertEqual(report["plan"]["users"], [10])
        self.assertEqual(report["plan"]["hits"], [20])
        self.assertGreater(report["rps"], 0)
        self.assertEqual(self.nginx.access_log_count(), 200)

        urls = {entry["name"]: entry for entry in report["urls"]}
        name = "GET " + self.nginx.url
        self.assertIn(name, urls, harness.describe(result))
        self.assertEqual(urls[name]["hits"], 200)
        self.assertEqual(urls[name]["errors"], 0)

        self.assertEqual(harness.stdout_int(result.stdout, "Hits"), 200)
        self.assertEqual(harness.stdout_int(result.stdout, "Success"), 200)
        self.assertEqual(harness.stdout_int(result.stdout, "Errors"), 0)
        self.assertEqual(harness.stdout_int(result.stdout, "Failures"), 0)

    def test_redirects_are_followed_and_counted_per_hop(self):
        # /redirect/3 -> /redirect/2 -> /redirect/1 -> /: 4 hits per execution.
        result = self.run_ok([
            "example.TestWebSite.test_redirect", "--test-path", harness.examples_dir(),
            "--server-url", self.nginx.url, "-u", "3", "--hits", "4"])
        report = result.report
        self.assertEqual(report["tests"]["success"], 12, harness.describe(result))
        self.assertEqual(report["hits"], 48)
        self.assertEqual(report["status_codes"], {"302": 36, "200": 12})
        self.assertEqual(self.nginx.access_log_count(), 48)
        self.assertEqual(self.nginx.status_counts(), {302: 36, 200: 12})
        # Every hop went where the Location header pointed.
        paths = collections.Counter(uri for _, uri, _ in self.nginx.access_log_entries())
        self.assertEqual(paths, {"/redirect/3": 12, "/redirect/2": 12, "/redirect/1": 12, "/": 12})

    def test_server_error_status_is_not_a_test_error(self):
        # The built-in --url test asserts nothing: a 500 is reported as a
        # status code, and the executions still succeed.
        result = self.run_ok(["--url", self.nginx.url + "fail", "-u", "2", "--hits", "5"])
        report = result.report
        self.assertEqual(report["status_codes"], {"500": 10}, harness.describe(result))
        self.assertEqual(report["tests"], {"total": 10, "success": 10, "failures": 0, "errors": 0})
        self.assertEqual(self.nginx.status_counts(), {500: 10})

    def test_duration_run(self):
        started = time.monotonic()
        result = self.run_ok(["--url", self.nginx.url, "-u", "5", "-d", "2"], timeout=30)
        wall = time.monotonic() - started
        report = result.report
        self.assertGreater(report["hits"], 0, harness.describe(result))
        self.assertEqual(report["tests"]["total"], report["hits"])  # one GET per execution
        self.assertEqual(report["plan"]["duration_seconds"], 2)
        self.assertGreaterEqual(report["duration_seconds"], 2.0)
        self.assertLessEqual(report["duration_seconds"], 4.0)
        self.assertLess(wall, 10, "the runner took far longer than its 2 s duration")
        # Assumes the runner lets running executions finish at the deadline
        # (it starts no new ones) rather than abandoning requests in flight,
        # so nothing reaches nginx that is not counted.
        self.assertEqual(self.nginx.access_log_count(), report["hits"])

    def test_user_and_hit_cycles(self):
        # Executions = (2 + 3 users) x (2 + 1 hits) = 15.
        result = self.run_ok(["--url", self.nginx.url, "-u", "2:3", "--hits", "2:1"])
        report = result.report
        self.assertEqual(report["tests"]["total"], 15, harness.describe(result))
        self.assertEqual(report["hits"], 15)
        self.assertEqual(report["plan"]["users"], [2, 3])
        self.assertEqual(report["plan"]["hits"], [2, 1])
        self.assertEqual(self.nginx.access_log_count(), 15)

    def test_single_engine_thread(self):
        result = self.run_ok(["--url", self.nginx.url, "-u", "4", "--hits", "5", "--threads", "1"])
        self.assertEqual(result.report["plan"]["threads"], 1, harness.describe(result))
        self.assertEqual(result.report["hits"], 20)
        self.assertEqual(self.nginx.access_log_count(), 20)


if __name__ == "__main__":
    unittest.main()
