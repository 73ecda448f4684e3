"""The target allow-list (--allow-target), tried as an attacker would: a run aimed at a host
outside the list, directly and through a redirect of an allowed server. The controller refuses
what the request names (PERMISSION_DENIED); the workers, and a local run's engine, refuse every
request and redirect hop to another host, counted as forbidden_target errors, and the forbidden
server's own log proves that nothing reached it.

Run: LOADS_BIN_DIR=build/bin /usr/bin/python3 -m unittest -v test_allow_target   (from tests/integration)
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class AllowTargetTest(unittest.TestCase):
    def setUp(self):
        # Two servers on loopback: only the first is allowed; it redirects /away to the second.
        self.forbidden = harness.Nginx()
        self.forbidden.start()
        self.addCleanup(self.forbidden.stop)
        self.allowed = harness.Nginx(redirect_to=self.forbidden.url + "stolen")
        self.allowed.start()
        self.addCleanup(self.allowed.stop)
        self.pattern = f"127.0.0.1:{self.allowed.port}"

    def assert_nothing_reached_the_forbidden_server(self):
        self.assertEqual(self.forbidden.access_log_count(), 0)

    def test_a_local_run_refuses_other_hosts(self):
        direct = harness.run_runner(["--url", self.forbidden.url, "--hits", "3",
                                     "--allow-target", self.pattern])
        harness.assert_no_crash(self, direct)
        self.assertEqual(direct.code, 1, harness.describe(direct))
        self.assertEqual(direct.report["hit_errors"], {"forbidden_target": 3})
        self.assertIn("is not an allowed target (--allow-target)", json.dumps(direct.report))

        redirected = harness.run_runner(["--url", self.allowed.url + "away", "--hits", "4",
                                         "--allow-target", self.pattern])
        self.assertEqual(redirected.code, 1, harness.describe(redirected))
        # Each execution: the allowed hop (302), then the refused one.
        self.assertEqual(redirected.report["hits"], 8)
        self.assertEqual(redirected.report["hit_errors"], {"forbidden_target": 4})
        self.assertEqual(redirected.report["status_codes"], {"302": 4})
        self.assertEqual(self.allowed.access_log_count(), 4)

        fine = harness.run_runner(["--url", self.allowed.url, "--hits", "2", "--allow-target",
                                   "127.0.0.0/8", "--allow-target", "*.example.com"])
        self.assertEqual(fine.code, 0, harness.describe(fine))
        self.assertEqual(self.allowed.access_log_count(), 6)
        self.assert_nothing_reached_the_forbidden_server()

        for bad in ("*.", "10.0.0.0/33", "host:0", "a b", "[::1"):
            with self.subTest(pattern=bad):
                refused = harness.run_runner(["--url", self.allowed.url, "--allow-target", bad])
                self.assertEqual(refused.code, 2, harness.describe(refused))
                self.assertIn("invalid value for --allow-target", refused.stderr)

    def test_a_controller_and_its_workers_refuse_other_hosts(self):
        controller = harness.Controller(extra=("--max-local-workers", "0", "--allow-target",
                                               self.pattern))
        self.addCleanup(controller.close)
        controller.start_workers(2)
        run = ["--controller", controller.grpc, "--workers", "2", "-u", "2", "--hits", "5"]
        # What StartRun names is refused before anything runs.
        named = harness.run_runner([*run, "--url", self.forbidden.url])
        self.assertEqual(named.code, 7, harness.describe(named))
        self.assertIn(f"spec.url: {self.forbidden.url} is not an allowed target of this "
                      "controller (--allow-target)", named.stderr)
        # A redirect and a scenario's own URL are refused by the workers themselves.
        redirected = harness.run_runner([*run, "--url", self.allowed.url + "away"], timeout=60)
        self.assertEqual(redirected.code, 1, harness.describe(redirected))
        self.assertEqual(redirected.report["hit_errors"], {"forbidden_target": 10})
        self.assertEqual(self.allowed.access_log_count(), 10)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"name": "sneaky", "steps": [{"request": {"url": self.forbidden.url}}]}, f)
        self.addCleanup(os.unlink, f.name)
        scenario = harness.run_runner([*run, f.name], timeout=60)
        self.assertEqual(scenario.code, 1, harness.describe(scenario))
        self.assertEqual(scenario.report["hit_errors"], {"forbidden_target": 10})
        self.assert_nothing_reached_the_forbidden_server()
        # The allowed host still works, exactly.
        fine = harness.run_runner([*run, "--url", self.allowed.url], timeout=60)
        self.assertEqual(fine.code, 0, harness.describe(fine))
        self.assertEqual(self.allowed.access_log_count(), 20)
        metrics = urllib.request.urlopen(controller.metrics, timeout=5).read().decode()
        self.assertRegex(metrics, r'loads_hit_errors_total\{[^}]*kind="forbidden_target"[^}]*\} 10')

        # A bad pattern stops the controller before it serves.
        bad = subprocess.run([harness.binary("loads-controller"), "--no-state",
                                      "--allow-target", "*.*.x"], capture_output=True,
                                     text=True, timeout=10)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--allow-target", bad.stderr)


if __name__ == "__main__":
    unittest.main()
