"""Success, failure and error of test executions, and custom counters, as
reported by loads-runner running the bundled `example` test library against
loads-demo-target.

Run: LOADS_BIN_DIR=build/bin LOADS_EXAMPLES_DIR=build/examples \\
     /usr/bin/python3 -m unittest -v test_outcomes      (from tests/integration)
"""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class OutcomesTest(unittest.TestCase):
    def setUp(self):
        self.examples = harness.examples_dir()
        self.demo = self.enterContext(harness.DemoTarget())

    def run_example(self, method, *args):
        result = harness.run_runner([
            f"example.TestWebSite.{method}", "--test-path", self.examples,
            "--server-url", self.demo.url, *args])
        harness.assert_no_crash(self, result)
        harness.assert_report_consistent(self, result)
        return result

    def test_plain_get_counts_match_the_target(self):
        stats = harness.StatsDelta(self.demo)
        result = self.run_example("test_es", "-u", "2", "--hits", "3")
        self.assertEqual(result.code, 0, harness.describe(result))
        self.assertEqual(result.report["tests"], {"total": 6, "success": 6, "failures": 0, "errors": 0})
        self.assertEqual(result.report["hits"], 6)
        self.assertEqual(stats.delta()["requests"], 6)

    def test_mixed_outcomes(self):
        # Per user, execution k succeeds when k%3==0, fails (assertion) when
        # k%3==1, throws std::runtime_error("deliberate error") when k%3==2:
        # 2 users x 6 executions = 4 of each.
        stats = harness.StatsDelta(self.demo)
        result = self.run_example("test_mixed", "-u", "2", "--hits", "6")
        report = result.report
        self.assertEqual(result.code, 1, harness.describe(result))
        self.assertEqual(report["tests"], {"total": 12, "success": 4, "failures": 4, "errors": 4},
                         harness.describe(result))
        self.assertEqual(report["hits"], 12)  # every execution made its GET first
        self.assertEqual(report["status_codes"], {"200": 12})
        self.assertEqual(stats.delta()["requests"], 12)

        # Two distinct messages, 4 times each: the failed assertion and the exception.
        errors = report["errors"]
        self.assertEqual(sorted(entry["count"] for entry in errors), [4, 4], harness.describe(result))
        thrown = [entry for entry in errors if "deliberate error" in entry["message"]]
        self.assertEqual(len(thrown), 1, harness.describe(result))
        self.assertEqual(thrown[0]["count"], 4)
        failure = [entry for entry in errors if entry is not thrown[0]][0]
        self.assertTrue(failure["message"].strip(), "the assertion failure has an empty message")
        counts = [entry["count"] for entry in errors]
        self.assertEqual(counts, sorted(counts, reverse=True), "errors are not most common first")

        self.assertEqual(harness.stdout_int(result.stdout, "Hits"), 12)
        self.assertEqual(harness.stdout_int(result.stdout, "Success"), 4)
        self.assertEqual(harness.stdout_int(result.stdout, "Errors"), 4)
        self.assertEqual(harness.stdout_int(result.stdout, "Failures"), 4)
        self.assertIn("deliberate error", result.stdout)  # "most common errors" section

    def test_custom_counter(self):
        stats = harness.StatsDelta(self.demo)
        result = self.run_example("test_counter", "-u", "3", "--hits", "2")
        report = result.report
        self.assertEqual(result.code, 0, harness.describe(result))
        self.assertEqual(report["counters"], {"visits": 6}, harness.describe(result))
        self.assertEqual(report["hits"], 6)
        self.assertEqual(stats.delta()["requests"], 6)
        # The stdout report shows the counter with its value on one line.
        self.assertRegex(result.stdout, re.compile(r"^.*\bvisits\b.*\b6\b.*$", re.MULTILINE))


if __name__ == "__main__":
    unittest.main()
