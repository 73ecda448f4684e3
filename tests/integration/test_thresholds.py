"""Thresholds against real servers: a passing and a failing threshold of each kind, their observed
values equal to the report's own numbers (and to nginx's count), the exit statuses (0 when all
pass, 10 when one fails, 2 for an expression that does not parse), scenario files, and a run on
a controller whose report carries the verdicts.

Run: LOADS_BIN_DIR=build/bin LOADS_EXAMPLES_DIR=build/examples \\
     /usr/bin/python3 -m unittest -v test_thresholds      (from tests/integration)
"""

import json
import os
import sys
import tempfile
import time
import unittest

import junitparser

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_distributed import Controller  # noqa: E402

EXIT_THRESHOLDS = 10


def thresholds(*expressions):
    args = []
    for expression in expressions:
        args += ["--threshold", expression]
    return args


class ThresholdsTest(unittest.TestCase):
    def run_checked(self, args, expected_code):
        result = harness.run_runner(args, timeout=60)
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, expected_code, harness.describe(result))
        harness.assert_report_consistent(self, result)
        return result, {t["threshold"]: t for t in result.report["thresholds"]}

    def test_latency_against_a_slow_endpoint(self):
        with harness.DemoTarget() as demo:
            url = demo.url + "delay/50"
            result, verdicts = self.run_checked(
                ["--url", url, "-u", "2", "--hits", "5",
                 *thresholds("p50>=50ms", "p99<40ms", "mean<2s", "max<=10ms",
                             f"GET {url} p90>=50ms", "GET http://nowhere/ p90<1s")],
                EXIT_THRESHOLDS)
        latency = result.report["latency_seconds"]
        # The observed values are the report's own numbers.
        self.assertEqual(verdicts["p50>=50ms"]["observed"], latency["p50"])
        self.assertEqual(verdicts["p99<40ms"]["observed"], latency["p99"])
        self.assertEqual(verdicts["max<=10ms"]["observed"], latency["max"])
        self.assertEqual(verdicts["mean<2s"]["observed"], latency["mean"])
        passed = {text: v["passed"] for text, v in verdicts.items()}
        self.assertEqual(passed, {"p50>=50ms": True, "p99<40ms": False, "mean<2s": True,
                                  "max<=10ms": False, f"GET {url} p90>=50ms": True,
                                  "GET http://nowhere/ p90<1s": False})
        self.assertEqual(verdicts["GET http://nowhere/ p90<1s"]["observed_text"],
                         "no hit named 'GET http://nowhere/'")
        self.assertIn("Thresholds: 3 passed, 3 failed", result.stdout)
        self.assertIn("  FAIL  p99<40ms: ", result.stdout)
        self.assertIn("loads-runner: 3 of 6 thresholds failed: p99<40ms (", result.stderr)

    def test_counts_and_rates_against_nginx(self):
        with harness.Nginx() as nginx:
            result, verdicts = self.run_checked(
                ["--url", nginx.url, "-u", "4", "--hits", "50",
                 *thresholds("errors==0", "hit_errors<1%", "rps>1", "rps>100000000",
                             "failures<=0%")],
                EXIT_THRESHOLDS)
            logged = nginx.access_log_count()
        self.assertEqual(logged, 200)
        self.assertEqual(verdicts["hit_errors<1%"]["observed_text"], "0.00% (0 of 200)")
        self.assertTrue(verdicts["errors==0"]["passed"])
        self.assertTrue(verdicts["rps>1"]["passed"])
        self.assertFalse(verdicts["rps>100000000"]["passed"])
        self.assertAlmostEqual(verdicts["rps>1"]["observed"], result.report["rps"], places=6)
        self.assertTrue(verdicts["failures<=0%"]["passed"])

        # All passing: exit 0, even though nothing else changed.
        with harness.Nginx() as nginx:
            self.run_checked(["--url", nginx.url, "-u", "2", "--hits", "5",
                              *thresholds("errors==0", "p99<5s")], 0)

    def test_errors_decide_against_a_closed_port(self):
        with harness.ClosedPort() as closed:
            # Every execution errs: without thresholds exit 1; with a lenient one, exit 0.
            _, verdicts = self.run_checked(
                ["--url", closed.url, "-u", "1", "--hits", "4",
                 *thresholds("errors<=100%", "hit_errors<=4")], 0)
            self.assertEqual(verdicts["errors<=100%"]["observed_text"], "100.00% (4 of 4)")
            _, verdicts = self.run_checked(
                ["--url", closed.url, "-u", "1", "--hits", "4",
                 *thresholds("errors<1%", "hit_errors<1%", "p99<1s")], EXIT_THRESHOLDS)
        self.assertEqual(verdicts["hit_errors<1%"]["observed_text"], "100.00% (4 of 4)")
        self.assertEqual(verdicts["p99<1s"]["observed_text"], "no response")
        self.assertFalse(any(v["passed"] for v in verdicts.values()))

    def test_dropped_arrivals(self):
        with harness.DemoTarget() as demo:
            result, verdicts = self.run_checked(
                ["--url", demo.url + "delay/100", "--rate", "50", "-d", "1", "--max-users", "1",
                 *thresholds("dropped<1%", "dropped>=1")], EXIT_THRESHOLDS)
        executions = result.report["executions"]
        self.assertGreater(executions["dropped"], 0)
        self.assertEqual(verdicts["dropped>=1"]["observed"], executions["dropped"])
        self.assertAlmostEqual(
            verdicts["dropped<1%"]["observed"],
            executions["dropped"] / (executions["started"] + executions["dropped"]))
        self.assertFalse(verdicts["dropped<1%"]["passed"])
        self.assertTrue(verdicts["dropped>=1"]["passed"])

    def test_bad_expressions_are_usage_errors(self):
        cases = {
            "p99<250": "a latency needs its unit: us, ms or s",
            "latency<1s": "unknown measure 'latency'",
            "errors<150%": "a share is 0% to 100%",
            "GET /x rps>5": "only latencies and errors are measured per hit name",
        }
        for expression, why in cases.items():
            with self.subTest(expression=expression):
                result = harness.run_runner(["--url", "http://127.0.0.1:9/", "--threshold",
                                             expression])
                self.assertEqual(result.code, 2, harness.describe(result))
                self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
                self.assertIn(f"invalid value for --threshold: '{expression}' ({why}",
                              result.stderr)
                self.assertIsNone(result.report)

    def test_abort_stops_a_local_run(self):
        # A count can only grow: the first error fails errors==0 for good, and the run stops.
        with harness.ClosedPort() as closed:
            started = time.monotonic()
            result, verdicts = self.run_checked(
                ["--url", closed.url, "-u", "1", "-d", "60",
                 *thresholds("errors==0 abort", "p99<1s")], EXIT_THRESHOLDS)
            elapsed = time.monotonic() - started
        self.assertLess(elapsed, 5, harness.describe(result))
        stopped = verdicts["errors==0 abort"]
        self.assertFalse(stopped["passed"])
        self.assertLess(stopped["aborted_at_seconds"], 2)
        self.assertIsNone(verdicts["p99<1s"]["aborted_at_seconds"])
        self.assertIn("loads-runner: threshold errors==0 abort failed at", result.stderr)
        self.assertIn("(stopped the run at", result.stdout)
        self.assertTrue(result.report["interrupted"])

        # With a delay, not before it.
        with harness.DemoTarget() as demo:
            result, verdicts = self.run_checked(
                ["--url", demo.url + "delay/20", "-u", "2", "-d", "60",
                 *thresholds("p99<1ms abort:1.5s")], EXIT_THRESHOLDS)
        at = verdicts["p99<1ms abort:1.5s"]["aborted_at_seconds"]
        self.assertGreaterEqual(at, 1.5)
        self.assertLess(at, 3)
        self.assertLess(result.report["duration_seconds"], 4)

    def test_abort_stops_a_distributed_run(self):
        # The controller judges the merged results as they arrive: the first error of either
        # worker fails errors==0 for good, and both workers are stopped.
        controller = Controller()
        try:
            controller.start_workers(2)
            with harness.ClosedPort() as closed:
                started = time.monotonic()
                result = harness.run_runner(
                    ["--controller", controller.grpc, "--url", closed.url, "--workers", "2",
                     "-u", "2", "-d", "60", *thresholds("errors==0 abort", "p99<1s")],
                    timeout=60)
                elapsed = time.monotonic() - started
        finally:
            log = controller.stderr
            controller.close()
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, EXIT_THRESHOLDS, harness.describe(result) + log)
        verdicts = {t["threshold"]: t for t in result.report["thresholds"]}
        stopped = verdicts["errors==0 abort"]
        self.assertFalse(stopped["passed"])
        # Certain at the first merged snapshot (the workers send one a second) ...
        self.assertLess(stopped["aborted_at_seconds"], 2)
        self.assertIsNone(verdicts["p99<1s"]["aborted_at_seconds"])
        # ... and over within 2 s of it: the run's duration counts from its assignment, 0.2 s
        # before its workers start.
        self.assertLess(result.report["duration_seconds"] - 0.2 - stopped["aborted_at_seconds"], 2,
                        result.report)
        self.assertLess(elapsed, 10)
        self.assertEqual(result.report["run"]["state"], "done")
        self.assertTrue(result.report["interrupted"])
        self.assertIn("threshold errors==0 abort failed at", log)
        self.assertIn("(stopped the run at", result.stdout)

    def test_junit_report(self):
        # Read back by junitparser, as a CI system's test view would.
        with harness.Nginx() as nginx, tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "verdicts.xml")
            result, _ = self.run_checked(
                ["--url", nginx.url, "-u", "2", "--hits", "10", "--output", f"junit:{path}",
                 *thresholds("p99<10s", "rps>100000000", "errors==0")], EXIT_THRESHOLDS)
            xml = junitparser.JUnitXml.fromfile(path)
            with harness.ClosedPort() as closed:
                failing = os.path.join(tmp, "failing.xml")
                self.run_checked(["--url", closed.url, "--hits", "3", "--output",
                                  f"junit:{failing}"], 1)
                failing_xml = junitparser.JUnitXml.fromfile(failing)
        suites = list(xml)
        self.assertEqual(len(suites), 1)
        suite = suites[0]
        self.assertEqual(suite.name, f"GET {nginx.url}")
        self.assertEqual((suite.tests, suite.failures, suite.errors), (4, 1, 0))
        properties = {p.name: p.value for p in suite.properties()}
        self.assertEqual(int(properties["hits"]), result.report["hits"])
        cases = {(case.classname, case.name): case for case in suite}
        self.assertEqual(sorted(cases), [("loads.run", "executions"),
                                         ("loads.thresholds", "errors==0"),
                                         ("loads.thresholds", "p99<10s"),
                                         ("loads.thresholds", "rps>100000000")])
        self.assertTrue(cases[("loads.thresholds", "p99<10s")].is_passed)
        self.assertTrue(cases[("loads.run", "executions")].is_passed)
        failed = cases[("loads.thresholds", "rps>100000000")].result
        self.assertEqual(len(failed), 1)
        self.assertIsInstance(failed[0], junitparser.Failure)
        self.assertEqual(failed[0].type, "threshold")
        verdict = {t["threshold"]: t for t in result.report["thresholds"]}["rps>100000000"]
        self.assertEqual(failed[0].message, "observed " + verdict["observed_text"])

        # Errored executions fail the executions case, with their message.
        suite = list(failing_xml)[0]
        (case,) = [c for c in suite if c.name == "executions"]
        self.assertIsInstance(case.result[0], junitparser.Failure)
        self.assertEqual(case.result[0].message, "0 failed and 3 errored of 3 executions")
        self.assertIn("Connection refused", case.result[0].text)

    def test_a_scenario_carries_thresholds(self):
        with harness.Nginx() as nginx, tempfile.TemporaryDirectory() as tmp:
            scenario = os.path.join(tmp, "s.json")
            with open(scenario, "w") as f:
                json.dump({"name": "gate", "steps": [{"request": {"url": nginx.url}}],
                           "load": {"users": 2, "hits": 3,
                                    "thresholds": ["errors==0", "rps>100000000"]}}, f)
            result, verdicts = self.run_checked([scenario], EXIT_THRESHOLDS)
            self.assertEqual(sorted(verdicts), ["errors==0", "rps>100000000"])
            with open(scenario, "w") as f:
                json.dump({"steps": [{"request": {"url": nginx.url}}],
                           "load": {"thresholds": ["p99<1"]}}, f)
            bad = harness.run_runner([scenario])
        self.assertEqual(bad.code, 2, harness.describe(bad))
        self.assertIn("load.thresholds: 'p99<1' (a latency needs its unit", bad.stderr)

    def test_a_controller_run_reports_the_verdicts(self):
        controller = Controller()
        try:
            controller.start_workers(2)
            with harness.Nginx() as nginx:
                result = harness.run_runner(
                    ["--controller", controller.grpc, "--url", nginx.url, "--workers", "2",
                     "-u", "4", "--hits", "25",
                     *thresholds("errors==0", "p99<10s", "rps>100000000")], timeout=60)
                logged = nginx.access_log_count()
        finally:
            controller.close()
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, EXIT_THRESHOLDS, harness.describe(result))
        self.assertEqual(logged, 100)
        # The JSON report is the controller's, with its run section and the verdicts.
        self.assertIn("run", result.report)
        verdicts = {t["threshold"]: t["passed"] for t in result.report["thresholds"]}
        self.assertEqual(verdicts, {"errors==0": True, "p99<10s": True, "rps>100000000": False})
        self.assertIn("Thresholds: 2 passed, 1 failed", result.stdout)


if __name__ == "__main__":
    unittest.main()
