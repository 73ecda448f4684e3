"""Command line of loads-runner: bad input gives the documented exit code and
exactly one `loads-runner: ...` line on stderr, never a crash; the test path
is searched in the documented places.

Exit codes: 2 usage error, 3 test library not found, 4 library failed to
load, 5 test not found in the library.

Run: LOADS_BIN_DIR=build/bin LOADS_EXAMPLES_DIR=build/examples \\
     /usr/bin/python3 -m unittest -v test_cli      (from tests/integration)
"""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.runner_path()  # fail at once, and clearly, when the build is missing
        cls.examples = harness.examples_dir()
        # A valid target that refuses connections: if the runner wrongly
        # accepts a bad command line, its load ends at once and harms nobody.
        cls.closed = harness.ClosedPort().__enter__()
        cls.url = cls.closed.url

    @classmethod
    def tearDownClass(cls):
        cls.closed.__exit__(None, None, None)

    def assert_rejected(self, args, code):
        result = harness.run_runner(args, timeout=20)
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, code, harness.describe(result))
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, "expected exactly one error line on stderr" + harness.describe(result))
        self.assertTrue(lines[0].startswith("loads-runner: "), harness.describe(result))
        return result

    def test_usage_errors(self):
        url = self.url
        cases = [
            ["--no-such-option", "--url", url],
            [],                                      # no test and no --url
            ["--url"],                               # option without its value
            ["--url", "notaurl"],
            ["--url", "http://"],                    # no host
            ["--url", url, "-u", "abc"],
            ["--url", url, "-u", "-3"],
            ["--url", url, "-u", "0"],
            ["--url", url, "-u", "1.5"],
            ["--url", url, "-u", "2:abc"],
            ["--url", url, "--hits", "0"],           # an execution count of 0 is a mistake, not a no-op
            ["--url", url, "--hits", "-1"],
            ["--url", url, "--hits", "5", "-d", "5"],  # mutually exclusive
            ["--url", url, "-d", "abc"],
            ["--url", url, "-d", "-1"],
            ["--url", url, "--threads", "abc"],
            ["--url", url, "--timeout", "abc"],
        ]
        for args in cases:
            with self.subTest(args=args):
                self.assert_rejected(args, 2)

    def test_unknown_module(self):
        with tempfile.TemporaryDirectory() as empty:
            result = self.assert_rejected(
                ["nosuchmodule.A.b", "--test-path", empty, "--server-url", self.url], 3)
        self.assertIn("nosuchmodule", result.stderr)

    def test_library_that_does_not_load(self):
        with tempfile.TemporaryDirectory() as folder:
            # Not an ELF file. Both usual names are written so the test does
            # not depend on whether the runner looks for broken.so or libbroken.so.
            for name in ("broken.so", "libbroken.so"):
                with open(os.path.join(folder, name), "w") as f:
                    f.write("this is not a shared library\n")
            self.assert_rejected(["broken.A.b", "--test-path", folder, "--server-url", self.url], 4)

    def test_unknown_class_or_method(self):
        for test in ("example.NoSuchClass.test_es", "example.TestWebSite.nope"):
            with self.subTest(test=test):
                self.assert_rejected([test, "--test-path", self.examples, "--server-url", self.url], 5)

    def test_version(self):
        result = harness.run_runner(["--version"], timeout=20)
        self.assertEqual(result.code, 0, harness.describe(result))
        self.assertRegex(result.stdout, r"\d+\.\d+\.\d+")
        self.assertEqual(result.stderr.strip(), "")

    def test_help(self):
        result = harness.run_runner(["--help"], timeout=20)
        self.assertEqual(result.code, 0, harness.describe(result))
        for option in ("--users", "--hits", "--duration", "--url", "--test-path", "--output"):
            self.assertIn(option, result.stdout)


class TestPathTest(unittest.TestCase):
    """The test library is found through --test-path, LOADS_TEST_PATH or the
    current folder. Success here means the test ran: against a refused port,
    test_es ends with exit 1 and one connection_refused hit error (a lookup
    failure would be exit 3)."""

    @classmethod
    def setUpClass(cls):
        harness.runner_path()
        cls.examples = harness.examples_dir()
        cls.closed = harness.ClosedPort().__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.closed.__exit__(None, None, None)

    def assert_test_ran(self, args, **kwargs):
        result = harness.run_runner(
            ["example.TestWebSite.test_es", "--server-url", self.closed.url, "--hits", "1", *args],
            timeout=30, **kwargs)
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, 1, harness.describe(result))
        self.assertEqual(harness.nonzero(result.report["hit_errors"]), {"connection_refused": 1},
                         harness.describe(result))

    def test_repeated_test_path(self):
        with tempfile.TemporaryDirectory() as empty:
            self.assert_test_ran(["--test-path", empty, "--test-path", self.examples])

    def test_environment_variable(self):
        self.assert_test_ran([], env={"LOADS_TEST_PATH": f"/nonexistent:{self.examples}"})

    def test_current_folder(self):
        self.assert_test_ran([], cwd=self.examples)


if __name__ == "__main__":
    unittest.main()
