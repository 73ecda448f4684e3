"""The SDK as a user uses it, out of the source tree: a fresh CMake project in
a temp dir finds the build tree's package with
find_package(loads CONFIG REQUIRED PATHS <build>), builds test libraries with
loads_add_test_library(), and loads-runner runs them. A library compiled
against another test ABI, and one that registers no test, are refused with
exit code 4 and a one-line explanation.

Each library is one small translation unit, built one compiler process at a
time (-j1); expect ~10-20 s per library.

The build folder is $LOADS_BUILD_DIR, or else the parent of LOADS_BIN_DIR.

Run: LOADS_BIN_DIR=build/bin LOADS_EXAMPLES_DIR=build/examples \\
     /usr/bin/python3 -m unittest -v test_sdk      (from tests/integration)
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CONFIGURE_TIMEOUT = 180
BUILD_TIMEOUT = 300

# The seed's example, as a user would write it.
MYTESTS_CC = """\
#include <loads/loads.h>

class TestWebSite : public loads::TestCase {
  void test_es() { session().get(server_url()); }
};

LOADS_TEST(TestWebSite, test_es);
"""

# The same test, compiled against a version.h of another SDK (see OLD_VERSION_H).
OLDABI_CC = """\
#include <loads/loads.h>

static_assert(LOADS_ABI_VERSION == 999, "the old SDK's loads/version.h was not picked up");

class TestOld : public loads::TestCase {
  void test_es() { session().get(server_url()); }
};

LOADS_TEST(TestOld, test_es);
"""

OLD_VERSION_H = """\
#pragma once
// An SDK from another time, with another test-library ABI.
#define LOADS_SDK_VERSION "0.0.1"
#define LOADS_ABI_VERSION 999
"""

# A test case whose author forgot LOADS_TEST.
NOTESTS_CC = """\
#include <loads/loads.h>

class TestForgotten : public loads::TestCase {
 public:
  void test_es() { session().get(server_url()); }
};
"""


def cmake_path(path):
    """A path as a quoted CMake string."""
    return '"' + path.replace("\\", "/").replace('"', '\\"') + '"'


def loads_build_dir():
    value = os.environ.get("LOADS_BUILD_DIR")
    path = os.path.abspath(value) if value else os.path.dirname(harness.bin_dir())
    if not os.path.isfile(os.path.join(path, "loadsConfig.cmake")):
        raise harness.HarnessError(
            f"{path} holds no loadsConfig.cmake: point LOADS_BUILD_DIR (or LOADS_BIN_DIR) at a configured build")
    return path


class SdkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.runner_path()  # fail at once, and clearly, when the build is missing
        cls.sdk = loads_build_dir()
        if shutil.which("cmake") is None:
            raise harness.HarnessError("cmake is not on PATH")
        cls.tmp = tempfile.mkdtemp(prefix="loads-sdk-")
        if not os.environ.get("LOADS_KEEP_TMP"):
            cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        cls.source = os.path.join(cls.tmp, "src")
        cls.build = os.path.join(cls.tmp, "build")
        cls._write_project()
        cls._cmake(["-S", cls.source, "-B", cls.build], CONFIGURE_TIMEOUT, "configure")

    @classmethod
    def _write_project(cls):
        files = {
            "CMakeLists.txt": f"""\
cmake_minimum_required(VERSION 3.25)
project(my_load_tests LANGUAGES CXX)

find_package(loads CONFIG REQUIRED PATHS {cmake_path(cls.sdk)})

loads_add_test_library(mytests mytests.cc)

# Built against the headers of another SDK: its loads/version.h comes first.
loads_add_test_library(oldabi oldabi.cc)
target_include_directories(oldabi BEFORE PRIVATE ${{CMAKE_CURRENT_SOURCE_DIR}}/oldsdk)

loads_add_test_library(notests notests.cc)
""",
            "mytests.cc": MYTESTS_CC,
            "oldabi.cc": OLDABI_CC,
            os.path.join("oldsdk", "loads", "version.h"): OLD_VERSION_H,
            "notests.cc": NOTESTS_CC,
        }
        for name, text in files.items():
            path = os.path.join(cls.source, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)

    @classmethod
    def _cmake(cls, args, timeout, what):
        env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL="1")
        try:
            done = subprocess.run(["cmake", *args], cwd=cls.tmp, env=env, timeout=timeout,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        except subprocess.TimeoutExpired:
            raise harness.HarnessError(f"cmake {what} did not finish within {timeout}s")
        output = done.stdout.decode(errors="replace")
        if done.returncode != 0:
            raise AssertionError(f"cmake {what} failed (exit {done.returncode}):\n{output[-6000:]}")
        return output

    def build_library(self, target):
        """Builds one test library (one compiler process) and returns the folder holding it."""
        self._cmake(["--build", self.build, "--target", target, "-j1"], BUILD_TIMEOUT, f"build of {target}")
        library = os.path.join(self.build, f"{target}.so")
        self.assertTrue(os.path.isfile(library), f"loads_add_test_library({target}) did not make {library}")
        return self.build

    def assert_one_line_error(self, result, *phrases):
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, 4, harness.describe(result))
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, "expected one line on stderr" + harness.describe(result))
        for phrase in phrases:
            self.assertIn(phrase, lines[0], harness.describe(result))

    # ------------------------------------------------------------------------

    def test_package_found_in_the_build_tree(self):
        with open(os.path.join(self.build, "CMakeCache.txt"), errors="replace") as f:
            cache = f.read()
        line = next((l for l in cache.splitlines() if l.startswith("loads_DIR:")), "")
        found = line.partition("=")[2]
        self.assertEqual(os.path.realpath(found), os.path.realpath(self.sdk),
                         f"find_package(loads) used another SDK: {line!r}")

    def test_user_library_runs(self):
        test_path = self.build_library("mytests")
        with harness.Nginx() as nginx:
            result = harness.run_runner([
                "mytests.TestWebSite.test_es", "--test-path", test_path,
                "--server-url", nginx.url, "-u", "3", "--hits", "4"])
            logged = nginx.access_log_entries()
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, 0, harness.describe(result))
        harness.assert_report_consistent(self, result)
        self.assertEqual(harness.stdout_int(result.stdout, "Hits"), 12, harness.describe(result))
        self.assertEqual(result.report["hits"], 12)
        self.assertEqual(result.report["tests"], {"total": 12, "success": 12, "failures": 0, "errors": 0})
        self.assertEqual(result.report["status_codes"], {"200": 12})
        self.assertEqual(logged, [("GET", "/", 200)] * 12)

    def test_library_built_for_another_abi_is_refused(self):
        test_path = self.build_library("oldabi")
        with harness.Nginx() as nginx:
            result = harness.run_runner([
                "oldabi.TestOld.test_es", "--test-path", test_path,
                "--server-url", nginx.url, "-u", "1", "--hits", "1"])
            logged = nginx.access_log_count()
        self.assert_one_line_error(result, "ABI", "999", "rebuild")
        self.assertEqual(logged, 0, "a refused library still ran")

    def test_library_without_tests_is_refused(self):
        test_path = self.build_library("notests")
        result = harness.run_runner(["notests.TestForgotten.test_es", "--test-path", test_path])
        self.assert_one_line_error(result, "registers no test")


if __name__ == "__main__":
    unittest.main()
