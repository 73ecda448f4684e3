"""Faults of the target (refused connections, resets, garbage, slowness, bad
TLS) must be counted in the report, by kind, never crash the runner; and
Ctrl-C must stop a run quickly with the report still printed.

Run: LOADS_BIN_DIR=build/bin LOADS_EXAMPLES_DIR=build/examples \\
     /usr/bin/python3 -m unittest -v test_faults      (from tests/integration)
"""

import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class FaultsTest(unittest.TestCase):
    def setUp(self):
        harness.runner_path()  # fail at once, and clearly, when the build is missing

    def run_checked(self, args, expected_code, timeout=60):
        result = harness.run_runner(args, timeout=timeout)
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, expected_code, harness.describe(result))
        harness.assert_report_consistent(self, result)
        return result

    def assert_all_failed_with(self, result, kinds, executions):
        """Every execution made one request, and each ended with a network
        error of one of `kinds` (more than one kind where the spec allows
        either name)."""
        report = result.report
        errors = harness.nonzero(report.get("hit_errors"))
        self.assertEqual(report["hits"], executions, harness.describe(result))
        self.assertEqual(sum(errors.get(kind, 0) for kind in kinds), executions,
                         f"expected {executions} hit errors of kind {' or '.join(kinds)}" + harness.describe(result))
        self.assertEqual(set(errors) - set(kinds), set(), harness.describe(result))
        self.assertEqual(harness.nonzero(report.get("status_codes")), {})
        self.assertEqual(report["tests"]["success"], 0)
        self.assertEqual(report["tests"]["total"], executions)

    def test_connection_refused(self):
        with harness.ClosedPort() as closed:
            result = self.run_checked(["--url", closed.url, "-u", "2", "--hits", "3"], expected_code=1)
        self.assert_all_failed_with(result, ["connection_refused"], executions=6)

    def test_dns_failure(self):
        # RFC 6761: names under .invalid never resolve, with or without a network.
        result = self.run_checked(["--url", "http://nonexistent.invalid/", "-u", "2", "--hits", "3"],
                                  expected_code=1, timeout=120)
        self.assert_all_failed_with(result, ["dns"], executions=6)
        self.assertEqual(harness.nonzero(result.report["hit_errors"]), {"dns": 6}, harness.describe(result))

    def test_connection_closed_without_response(self):
        with harness.DemoTarget() as demo:
            result = self.run_checked(["--url", demo.url + "close", "-u", "1", "--hits", "3"], expected_code=1)
        self.assert_all_failed_with(result, ["connection_reset", "closed"], executions=3)

    def test_malformed_response(self):
        with harness.DemoTarget() as demo:
            result = self.run_checked(["--url", demo.url + "garbage", "-u", "1", "--hits", "3"], expected_code=1)
        self.assert_all_failed_with(result, ["malformed_response"], executions=3)

    def test_read_timeout(self):
        with harness.DemoTarget() as demo:
            started = time.monotonic()
            result = self.run_checked(
                ["--url", demo.url + "delay/3000", "--timeout", "0.5", "-u", "1", "--hits", "1"], expected_code=1)
            wall = time.monotonic() - started
        self.assert_all_failed_with(result, ["timeout"], executions=1)
        # The runner gave up after ~0.5 s instead of waiting for the 3 s answer.
        self.assertLess(wall, 2.5, "--timeout 0.5 did not cut a 3 s wait short")

    def test_self_signed_certificate(self):
        with harness.Nginx(https=True) as nginx:
            # Verification is on by default: the handshake fails, no request reaches nginx.
            result = self.run_checked(["--url", nginx.https_url, "-u", "1", "--hits", "2"], expected_code=1)
            self.assert_all_failed_with(result, ["tls"], executions=2)
            self.assertEqual(nginx.access_log_count(), 0)

            result = self.run_checked(
                ["--url", nginx.https_url, "-u", "1", "--hits", "2", "--insecure"], expected_code=0)
            self.assertEqual(result.report["status_codes"], {"200": 2}, harness.describe(result))
            self.assertEqual(harness.nonzero(result.report.get("hit_errors")), {})
            self.assertEqual(nginx.access_log_count(), 2)

    def test_sigint_stops_the_run_and_prints_the_report(self):
        with harness.Nginx() as nginx:
            run = harness.RunnerProcess(["--url", nginx.url, "-u", "2", "-d", "30"])
            self.addCleanup(run.close)  # never leave a 30 s load behind if an assertion fails
            # Interrupt only once the load really runs (the signal handler is installed by then).
            nginx.wait_for_requests(minimum=1, timeout=10)
            time.sleep(0.5)
            result, stop_time = run.interrupt_and_wait(timeout=15)
            logged = nginx.access_log_count()
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, 130, harness.describe(result))
        self.assertLess(stop_time, 5, "the runner took too long to stop after SIGINT")
        self.assertIn("Hits:", result.stdout, "no report on stdout after SIGINT" + harness.describe(result))
        report = result.report
        self.assertIsNotNone(report, "no JSON report after SIGINT" + harness.describe(result))
        self.assertTrue(report["interrupted"])
        self.assertGreater(report["hits"], 0)
        self.assertLess(report["duration_seconds"], 20)
        # Requests in flight at the interruption may be abandoned: at most
        # one per user can differ between the runner's count and nginx's.
        self.assertLessEqual(abs(logged - report["hits"]), 2, f"nginx logged {logged}" + harness.describe(result))

    def test_sigterm_is_an_interrupt_with_the_report(self):
        # What a CI job's timeout or `kill` sends: the same as Ctrl-C, report included.
        with harness.Nginx() as nginx:
            run = harness.RunnerProcess(["--url", nginx.url, "-u", "2", "-d", "30"])
            self.addCleanup(run.close)
            nginx.wait_for_requests(minimum=1, timeout=10)
            time.sleep(0.5)
            run.process.send_signal(signal.SIGTERM)
            result = run.wait(timeout=15)
            logged = nginx.access_log_count()
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, 130, harness.describe(result))
        self.assertTrue(result.report["interrupted"], harness.describe(result))
        self.assertGreater(result.report["hits"], 0)
        self.assertLessEqual(abs(logged - result.report["hits"]), 2, f"nginx logged {logged}")

    def test_a_killed_runner_leaves_no_load_behind(self):
        # kill -9 cannot be caught: the engine process (a child) must not go on loading the
        # target on its own. nginx's log stops growing once the runner is gone.
        with harness.Nginx() as nginx:
            run = harness.RunnerProcess(["--url", nginx.url, "-u", "4", "-d", "30"])
            self.addCleanup(run.close)
            nginx.wait_for_requests(minimum=100, timeout=10)
            run.process.kill()
            run.process.wait(timeout=10)
            time.sleep(0.5)  # requests in flight land
            after_kill = nginx.access_log_count()
            time.sleep(1.5)
            self.assertEqual(nginx.access_log_count(), after_kill,
                             "requests went on after loads-runner was killed")
            engines = subprocess.run(["pgrep", "-f", run.report_path], capture_output=True,
                                     text=True).stdout.split()
            self.assertEqual(engines, [], "a process of the killed run is still alive")


if __name__ == "__main__":
    unittest.main()
