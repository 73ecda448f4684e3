"""Declarative scenarios (docs/scenarios.md): a JSON file of steps run by loads-runner locally
and, shipped as the same spec, on a controller's workers; bad files are refused with the line or
field at fault.
"""

import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_distributed import Controller  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                       "scenario.json")


class ScenarioTest(unittest.TestCase):
    def check_example_report(self, result, executions):
        self.assertEqual(result.code, 0, harness.describe(result))
        report = result.report
        self.assertEqual(report["tests"]["success"], executions)
        # home, add item, 3 hops of follow: 5 hits per execution; the WebSocket is no hit.
        self.assertEqual(report["hits"], 5 * executions)
        names = {u["name"]: u["hits"] for u in report["urls"]}
        self.assertEqual(names, {"home": executions, "add item": executions,
                                 "follow": 3 * executions})
        self.assertEqual(report["websockets"]["opened"], executions)
        self.assertEqual(report["websockets"]["bytes_received"], 5 * executions)

    def test_runs_locally(self):
        with harness.DemoTarget() as demo:
            result = harness.run_runner([EXAMPLE, "--server-url", demo.url, "-u", "3",
                                         "--hits", "2"])
            self.check_example_report(result, 6)
            self.assertIn("executions of scenario:browse-and-chat", result.stdout)

    def test_runs_on_workers(self):
        controller = Controller()
        try:
            controller.start_workers(2)
            with harness.DemoTarget() as demo:
                result = harness.run_runner(["--controller", controller.grpc, EXAMPLE,
                                             "--server-url", demo.url, "-u", "4", "--hits", "2",
                                             "--workers", "2"])
                self.check_example_report(result, 8)
        finally:
            controller.close()

    def test_a_failed_expectation_is_a_failure(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write('{"steps": [{"request": {"url": "/status/503", "expect_status": 200,'
                    ' "name": "down"}}]}')
        try:
            with harness.DemoTarget() as demo:
                result = harness.run_runner([f.name, "--server-url", demo.url, "-u", "1",
                                             "--hits", "2"])
            self.assertEqual(result.code, 1)
            self.assertEqual(result.report["tests"]["failures"], 2)
            self.assertIn("steps[0] (down): 503 != 200", result.report["errors"][0]["message"])
        finally:
            os.unlink(f.name)

    def test_bad_files_name_the_line_or_field(self):
        cases = [
            ('{"steps": [\n  {"request": {"url": "/"}},\n  oops\n]}', "line 3"),
            ('{"steps": []}', "steps: expected a non-empty array"),
            ('{"steps": [{"request": {}}]}', "steps[0].request.url: required"),
            ('{"steps": [{"request": {"url": "nope"}}]}', "steps[0].request.url"),
            ('{"steps": [{"think": -1}]}', "steps[0].think"),
            ('{"steps": [{"fly": {}}]}', "steps[0]: unknown step 'fly'"),
            ('{"steps": [{"request": {"url": "/", "expect_status": "ok"}}]}',
             "steps[0].request.expect_status"),
            ('{"steps": [{"request": {"url": "/", "colour": 1}}]}',
             "steps[0].request.colour: unknown field"),
            # A number beyond a double (found by fuzz/fuzz_scenario: it used to exit 70).
            ('{"steps": [{"think": 1e999}]}', "number overflow parsing '1e999'"),
        ]
        for text, expected in cases:
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                f.write(text)
            try:
                result = subprocess.run([harness.runner_path(), f.name], capture_output=True,
                                        text=True, timeout=30)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn(expected, result.stderr)
                self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
            finally:
                os.unlink(f.name)
        missing = subprocess.run([harness.runner_path(), "/nonexistent/s.json"],
                                 capture_output=True, text=True, timeout=30)
        self.assertEqual(missing.returncode, 3)


if __name__ == "__main__":
    unittest.main()
