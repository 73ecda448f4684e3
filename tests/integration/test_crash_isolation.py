"""Test code that crashes, overflows its stack, never yields, swallows its cancellation or
calls exit() cannot take a local run down: loads-runner's engine runs in a child process, and
the runner still ends in bounded time, says what happened (exit 9) and prints and writes the
report with the other users' results, checked against nginx's own log. A library whose global
initializer throws is a load failure (exit 4) that names the exception.

The bad tests are in tests/sdk/bad_tests.cc: user 0 misbehaves after 1.5 s while three other
users (two engine threads) keep loading nginx.

Run: LOADS_BIN_DIR=build/bin LOADS_EXAMPLES_DIR=build/examples \\
     /usr/bin/python3 -m unittest -v test_crash_isolation      (from tests/integration)
"""

import os
import sys
import tempfile
import time
import unittest
from xml.etree import ElementTree

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

EXIT_ENGINE_FAULT = 9
EXIT_LOAD_FAILED = 4
MODULE = "bad_tests.Bad"


def sdk_dir():
    return os.path.join(os.path.dirname(harness.bin_dir()), "tests", "sdk")


def bad_run(method, nginx, *extra):
    return [f"{MODULE}.{method}", "--test-path", sdk_dir(), "--server-url", nginx.url,
            "-u", "4", "--threads", "2", *extra]


def read_stderr(process):
    with open(os.path.join(process.tmp, "stderr"), errors="replace") as f:
        return f.read()


def wait_for_stderr(process, text, timeout=15.0):
    deadline = time.monotonic() + timeout
    while text not in read_stderr(process):
        if process.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"loads-runner never said {text!r}:\n{read_stderr(process)}")
        time.sleep(0.05)


class CrashIsolationTest(unittest.TestCase):
    def check_report(self, result, nginx, incident, lost_at_most=0.5):
        """A report on stdout and in the JSON file, whose hits nginx logged (up to `lost_at_most`
        of nginx's count may be missing: the engine's last interval and requests in flight)."""
        harness.assert_report_consistent(self, result)
        self.assertIn("Hits:", result.stdout, harness.describe(result))
        self.assertIn("Engine: ", result.stdout, harness.describe(result))
        self.assertTrue(any(incident in line for line in result.report["incidents"]),
                        harness.describe(result))
        logged = nginx.access_log_count()
        hits = result.report["hits"]
        self.assertGreater(hits, 0, harness.describe(result))
        self.assertLessEqual(hits, logged, harness.describe(result))
        self.assertGreaterEqual(hits, (1 - lost_at_most) * logged,
                                f"nginx logged {logged}" + harness.describe(result))
        self.assertEqual(result.report["tests"]["errors"], 0, harness.describe(result))

    def run_bad(self, method, nginx, *extra, timeout=30):
        started = time.monotonic()
        result = harness.run_runner(bad_run(method, nginx, *extra), timeout=timeout)
        elapsed = time.monotonic() - started
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, EXIT_ENGINE_FAULT, harness.describe(result))
        return result, elapsed

    def test_a_crashing_user_ends_the_run_with_the_others_results(self):
        cases = {
            "segfault": "SIGSEGV (invalid memory access) in user 0 of bad_tests.Bad.segfault",
            "abort": "SIGABRT (abort: a failed assert, std::terminate, or heap corruption) in "
                     "user 0 of bad_tests.Bad.abort",
            "stack_overflow": "stack overflow (SIGSEGV in the guard page below a stack) in user 0 "
                              "of bad_tests.Bad.stack_overflow",
        }
        for method, message in cases.items():
            with self.subTest(method=method), harness.Nginx() as nginx:
                result, elapsed = self.run_bad(method, nginx, "-d", "10")
                self.assertIn(f"loads-runner: the engine process crashed: {message}; the report "
                              "has the results it sent up to then", result.stderr,
                              harness.describe(result))
                self.check_report(result, nginx, message)
                self.assertLess(elapsed, 8, "the crash at 1.5 s did not end the run at once")
                self.assertTrue(result.report["interrupted"])

    def test_a_test_that_calls_exit_is_told_apart(self):
        with harness.Nginx() as nginx, tempfile.TemporaryDirectory() as tmp:
            junit = os.path.join(tmp, "verdicts.xml")
            result, _ = self.run_bad("exit", nginx, "-d", "10", "--output", f"junit:{junit}")
            self.check_report(result, nginx, "exited with status 3 before the run ended")
            # The JUnit file says it too, as an error.
            cases = ElementTree.parse(junit).getroot().findall("./testsuite/testcase")
        errors = [c.find("error") for c in cases if c.get("name") == "engine"]
        self.assertEqual(len(errors), 1)
        self.assertIn("exited with status 3 before the run ended", errors[0].get("message"))

    def test_a_process_forked_by_test_code_does_not_hold_the_run(self):
        # The forked process sleeps 8 s with the engine's pipes open; the run ends with its
        # engine after 2 s all the same.
        with harness.Nginx() as nginx:
            started = time.monotonic()
            result = harness.run_runner(bad_run("fork_and_leave", nginx, "-d", "2"), timeout=30)
            elapsed = time.monotonic() - started
            logged = nginx.access_log_count()
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, 0, harness.describe(result))
        self.assertLess(elapsed, 6)
        self.assertEqual(result.report["hits"], logged)

    def test_a_busy_user_is_reported_and_the_run_ends_after_its_planned_end(self):
        with harness.Nginx() as nginx:
            result, elapsed = self.run_bad("busy_loop", nginx, "-d", "3", "--stuck-limit", "0.5",
                                           "--stop-timeout", "1")
            self.assertIn("loads-runner: user 0 of bad_tests.Bad.busy_loop has held engine thread "
                          "0 for", result.stderr, harness.describe(result))
            self.assertIn("the run was still going 1.0 s after its planned end (user 0 held "
                          "engine thread 0 without yielding), and the engine process was killed",
                          result.stderr)
            # The stuck thread's last interval is lost, the other thread's results are all in.
            self.check_report(result, nginx, "user 0 of bad_tests.Bad.busy_loop held engine "
                              "thread 0 without yielding")
            self.assertLess(elapsed, 3 + 1 + 3)

    def interrupt_stuck_run(self, nginx, stop_timeout, while_stuck):
        """Runs busy_loop until user 0 is reported stuck, calls while_stuck(process), then sends
        Ctrl-C. Checks the exit (9, no crash) and returns (result, seconds from that Ctrl-C to
        the exit)."""
        process = harness.RunnerProcess(bad_run("busy_loop", nginx, "-d", "60", "--stuck-limit",
                                                "0.5", "--stop-timeout", str(stop_timeout)))
        try:
            wait_for_stderr(process, "has held engine thread 0")
            while_stuck(process)
            result, seconds = process.interrupt_and_wait(timeout=15)
        finally:
            process.close()
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, EXIT_ENGINE_FAULT, harness.describe(result))
        return result, seconds

    def test_ctrl_c_works_while_a_user_is_stuck(self):
        def other_thread_goes_on(process):
            # Thread 1's users go on loading nginx meanwhile.
            before = nginx._read(nginx.access_log_path).count("\n")
            time.sleep(1)
            self.assertGreater(nginx._read(nginx.access_log_path).count("\n"), before + 100)

        with harness.Nginx() as nginx:
            result, seconds = self.interrupt_stuck_run(nginx, 1, other_thread_goes_on)
            self.assertIn("did not stop within 1.0 s of the interrupt (user 0 held engine thread "
                          "0 without yielding), and was killed", result.stderr)
            self.assertLess(seconds, 1 + 2)
            self.check_report(result, nginx, "did not stop within 1.0 s of the interrupt")

    def test_a_second_ctrl_c_ends_a_stuck_run_at_once(self):
        def first_ctrl_c(process):
            process.interrupt()
            time.sleep(0.3)

        with harness.Nginx() as nginx:
            result, seconds = self.interrupt_stuck_run(nginx, 60, first_ctrl_c)
            self.assertLess(seconds, 2)
            self.check_report(result, nginx, "a second interrupt ended the engine process")

    def test_a_loop_that_catches_its_cancellation_cannot_keep_the_run_going(self):
        with harness.Nginx() as nginx:
            # Past the planned end, the request timeout and the stop timeout, the users are
            # cancelled; the loop swallows that too, so the engine is killed a grace later.
            result, elapsed = self.run_bad("catch_all_loop", nginx, "-d", "2", "--timeout", "1",
                                           "--stop-timeout", "1")
            self.assertIn("after its planned end (an execution that does not end), and its users "
                          "were cancelled", result.stdout, harness.describe(result))
            self.check_report(result, nginx, "did not stop within 1.0 s of being stopped")
            self.assertLess(elapsed, 2 + 1 + 1 + 1 + 3)

            # After Ctrl-C the same loop gets `cancelled` from every call, which waits a little
            # before saying so: the thread keeps yielding, so no user is reported stuck.
            process = harness.RunnerProcess(bad_run("catch_all_loop", nginx, "-d", "60",
                                                    "--stuck-limit", "0.5",
                                                    "--stop-timeout", "1.5"))
            try:
                time.sleep(2.5)
                result, seconds = process.interrupt_and_wait(timeout=15)
            finally:
                process.close()
            harness.assert_no_crash(self, result)
            self.assertEqual(result.code, EXIT_ENGINE_FAULT, harness.describe(result))
            self.assertNotIn("without yielding", result.stderr, harness.describe(result))
            self.assertIn("did not stop within 1.5 s of the interrupt, and was killed",
                          result.stderr)
            self.assertLess(seconds, 1.5 + 2)

    def test_a_throwing_initializer_is_a_load_failure(self):
        result = harness.run_runner(["throwing_library.Bad.segfault", "--test-path", sdk_dir()],
                                    timeout=30)
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, EXIT_LOAD_FAILED, harness.describe(result))
        self.assertEqual(result.stderr.strip(),
                         "loads-runner: cannot load the test library of "
                         "throwing_library.Bad.segfault: a global initializer threw (uncaught "
                         "exception: the configuration file /nonexistent/loads.cfg is missing)")
        self.assertIsNone(result.report)


if __name__ == "__main__":
    unittest.main()
