"""External runners (the original's --test-runner): a command in any language runs once per
virtual user and reports JSON events on stdout; its hits and executions are counted like the
engine's own, locally and on a controller's workers. Hits are compared with nginx's log.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_distributed import Controller  # noqa: E402

RUNNER = "/usr/bin/python3 " + os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            "external_runner.py")


class ExternalRunnerTest(unittest.TestCase):
    def test_runs_locally_with_exact_counts(self):
        with harness.Nginx() as nginx:
            result = harness.run_runner(["--test-runner", RUNNER + " --fail-every {test}", "3",
                                         "--server-url", nginx.url, "-u", "4", "--hits", "6"])
            self.assertEqual(result.code, 1, harness.describe(result))  # failures were reported
            report = result.report
            self.assertEqual(report["hits"], 24)
            self.assertEqual(nginx.access_log_count(), 24)
            self.assertEqual(report["tests"], {"total": 24, "success": 16, "failures": 8,
                                               "errors": 0})
            self.assertEqual(report["counters"]["users started"], 4)
            self.assertEqual(report["counters"]["loads.external_unreadable_lines"], 4)

    def test_runs_on_workers(self):
        controller = Controller()
        try:
            controller.start_workers(2)
            with harness.Nginx() as nginx:
                result = harness.run_runner(["--controller", controller.grpc, "--test-runner",
                                             RUNNER, "--server-url", nginx.url, "-u", "4",
                                             "--hits", "5", "--workers", "2"])
                self.assertEqual(result.code, 0, harness.describe(result))
                self.assertEqual(result.report["hits"], 20)
                self.assertEqual(nginx.access_log_count(), 20)
                self.assertEqual(result.report["tests"]["success"], 20)
        finally:
            controller.close()

    def test_a_failing_command_is_an_error_not_a_crash(self):
        with harness.Nginx() as nginx:
            result = harness.run_runner(["--test-runner", "exit 3", "--server-url", nginx.url,
                                         "-u", "2", "--hits", "1"])
            self.assertEqual(result.code, 1, harness.describe(result))
            self.assertEqual(result.report["tests"]["errors"], 2)
            self.assertIn("external runner exited with status 3",
                          result.report["errors"][0]["message"])

    def test_ctrl_c_stops_the_processes(self):
        with harness.Nginx() as nginx:
            process = harness.RunnerProcess(["--test-runner", RUNNER, "--server-url", nginx.url,
                                             "-u", "2", "-d", "30"])
            time.sleep(1.5)
            result, stop_time = process.interrupt_and_wait(timeout=15)
            self.assertLess(stop_time, 5)
            self.assertEqual(result.code, 130, harness.describe(result))
            self.assertGreater(result.report["hits"], 0)


if __name__ == "__main__":
    unittest.main()
