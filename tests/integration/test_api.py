"""The public test API (loads/loads.h), exercised by the test library
tests/sdk/api_tests.cc (built as <build>/tests/sdk/api_tests.so): every
TestApi method is run by loads-runner against loads-demo-target, must succeed
in every execution, and leaves the traces the report should show (hits per
request name, status codes, hit errors, WebSocket counters, custom counters).

The library's folder is $LOADS_SDK_TESTS_DIR, or else <LOADS_BIN_DIR>/../tests/sdk.

Run: LOADS_BIN_DIR=build/bin LOADS_EXAMPLES_DIR=build/examples \\
     /usr/bin/python3 -m unittest -v test_api      (from tests/integration)
"""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MODULE = "api_tests"
TEST_CLASS = f"{MODULE}.TestApi"
# Every LOADS_TEST(TestApi, ...) of tests/sdk/api_tests.cc; test_every_method_is_covered
# checks this list against what the library registers.
API_METHODS = [
    "test_params",
    "test_post_text",
    "test_json",
    "test_json_literal",
    "test_methods",
    "test_head",
    "test_default_headers",
    "test_request_headers",
    "test_cookies",
    "test_clear_cookies",
    "test_redirects",
    "test_no_redirects",
    "test_too_many_redirects",
    "test_status_codes",
    "test_timeout",
    "test_named_request",
    "test_sleep",
    "test_indexes",
    "test_websocket",
    "test_websocket_callback",
]

USERS, HITS = 2, 2
EXECUTIONS = USERS * HITS


def sdk_tests_dir():
    """Folder holding api_tests.so (pass it as --test-path)."""
    value = os.environ.get("LOADS_SDK_TESTS_DIR")
    path = os.path.abspath(value) if value else os.path.join(
        os.path.dirname(harness.bin_dir()), "tests", "sdk")
    library = os.path.join(path, f"{MODULE}.so")
    if not os.path.isfile(library):
        raise harness.HarnessError(
            f"{library} does not exist: build the target {MODULE} "
            "(tests/sdk, `cmake --build build --target api_tests`) or set LOADS_SDK_TESTS_DIR")
    return path


class ApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.test_path = sdk_tests_dir()
        # One target for the whole class: each test only reads its own run's report.
        cls.demo = cls.enterClassContext(harness.DemoTarget())

    def run_api(self, method, *args, users=USERS, hits=HITS, hits_add_up=True):
        """Runs TestApi.<method>; every execution must succeed."""
        executions = users * hits
        result = harness.run_runner([
            f"{TEST_CLASS}.{method}", "--test-path", self.test_path,
            "--server-url", self.demo.url, "-u", str(users), "--hits", str(hits), *args])
        harness.assert_no_crash(self, result)
        harness.assert_report_consistent(self, result, hits_add_up=hits_add_up)
        self.assertEqual(result.report["tests"],
                         {"total": executions, "success": executions, "failures": 0, "errors": 0},
                         harness.describe(result))
        self.assertEqual(result.code, 0, harness.describe(result))
        self.assertEqual(result.report["errors"], [], harness.describe(result))
        return result

    def assert_report(self, result, key, expected):
        actual = result.report.get(key)
        if isinstance(expected, dict) and isinstance(actual, dict):
            actual = harness.nonzero(actual)
        self.assertEqual(actual, expected, f"report[{key!r}]" + harness.describe(result))

    # The library ------------------------------------------------------------

    def test_every_method_is_covered(self):
        """The runner lists the library's tests when asked for one it lacks."""
        result = harness.run_runner([f"{TEST_CLASS}.no_such_method", "--test-path", self.test_path])
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, 5, harness.describe(result))
        match = re.search(r"\(it has: ([^)]*)\)", result.stderr)
        self.assertIsNotNone(match, "no list of the library's tests on stderr" + harness.describe(result))
        registered = sorted(name.strip() for name in match.group(1).split(","))
        self.assertEqual(registered, sorted(f"{TEST_CLASS}.{m}" for m in API_METHODS))

    # HTTP -------------------------------------------------------------------

    def test_params(self):
        result = self.run_api("test_params")
        self.assert_report(result, "status_codes", {"200": 3 * EXECUTIONS})

    def test_post_text(self):
        result = self.run_api("test_post_text")
        self.assert_report(result, "status_codes", {"200": 2 * EXECUTIONS})

    def test_json(self):
        self.run_api("test_json")

    def test_json_literal(self):
        result = self.run_api("test_json_literal")
        # The request's name replaces the default "POST http://.../echo".
        names = {url["name"]: url["hits"] for url in result.report["urls"]}
        self.assertEqual(names, {"create item": EXECUTIONS}, harness.describe(result))

    def test_methods(self):
        result = self.run_api("test_methods")
        # PUT, PATCH, DELETE, OPTIONS, request("POST") on /echo; POST /headers is a 405.
        self.assert_report(result, "status_codes", {"200": 5 * EXECUTIONS, "405": EXECUTIONS})
        names = {url["name"] for url in result.report["urls"]}
        base = self.demo.url
        self.assertEqual(names, {f"PUT {base}echo", f"PATCH {base}echo", f"DELETE {base}echo",
                                 f"OPTIONS {base}echo", f"POST {base}echo", f"POST {base}headers"},
                         harness.describe(result))

    def test_head(self):
        result = self.run_api("test_head")
        self.assert_report(result, "status_codes", {"200": 3 * EXECUTIONS})
        self.assert_report(result, "hit_errors", {})

    def test_default_headers(self):
        self.run_api("test_default_headers")

    def test_request_headers(self):
        self.run_api("test_request_headers")

    def test_cookies(self):
        self.run_api("test_cookies")

    def test_clear_cookies(self):
        self.run_api("test_clear_cookies")

    def test_redirects(self):
        result = self.run_api("test_redirects")
        # /redirect/3 -> /redirect/2 -> /redirect/1 -> /: every hop is a hit.
        self.assertEqual(result.report["hits"], 4 * EXECUTIONS, harness.describe(result))
        self.assert_report(result, "status_codes", {"302": 3 * EXECUTIONS, "200": EXECUTIONS})

    def test_no_redirects(self):
        result = self.run_api("test_no_redirects")
        self.assertEqual(result.report["hits"], EXECUTIONS, harness.describe(result))
        self.assert_report(result, "status_codes", {"302": EXECUTIONS})

    def test_too_many_redirects(self):
        result = self.run_api("test_too_many_redirects")
        # With set_max_redirects(1): /redirect/3 and /redirect/2 answer 302, then the
        # session gives up; then /redirect/1 -> / is within the limit.
        self.assert_report(result, "status_codes", {"302": 3 * EXECUTIONS, "200": EXECUTIONS})
        self.assert_report(result, "hit_errors", {})

    def test_status_codes(self):
        result = self.run_api("test_status_codes")
        self.assert_report(result, "status_codes", {"503": EXECUTIONS, "404": EXECUTIONS, "201": EXECUTIONS})
        self.assert_report(result, "hit_errors", {})

    def test_timeout(self):
        result = self.run_api("test_timeout")
        self.assert_report(result, "hit_errors", {"timeout": EXECUTIONS})
        self.assert_report(result, "status_codes", {"200": EXECUTIONS})
        # Two executions per user of (200 ms timeout + 300 ms delay), not 2 s waits.
        self.assertLess(result.report["duration_seconds"], 3.0, harness.describe(result))

    def test_named_request(self):
        result = self.run_api("test_named_request")
        urls = {url["name"]: url for url in result.report["urls"]}
        self.assertEqual(set(urls), {"api grouped", f"GET {self.demo.url}"}, harness.describe(result))
        self.assertEqual(urls["api grouped"]["hits"], 2 * EXECUTIONS)
        self.assertEqual(urls["api grouped"]["errors"], 0)
        self.assertEqual(urls[f"GET {self.demo.url}"]["hits"], EXECUTIONS)
        self.assert_report(result, "status_codes", {"200": 2 * EXECUTIONS, "201": EXECUTIONS})

    def test_sleep(self):
        # 4 users on one engine thread, 2 executions each sleeping 0.25 s: about 0.5 s if
        # sleep() suspends only its user, 2 s if it blocked the thread.
        result = self.run_api("test_sleep", "--threads", "1", users=4, hits=2)
        duration = result.report["duration_seconds"]
        self.assertGreaterEqual(duration, 0.45, harness.describe(result))
        self.assertLess(duration, 1.8, "sleep() blocked the engine thread" + harness.describe(result))
        self.assertEqual(result.report["hits"], 0)

    def test_indexes(self):
        users, hits = 3, 3
        result = self.run_api("test_indexes", users=users, hits=hits)
        expected = {f"user_{i}": hits for i in range(users)}
        expected["executions"] = users * hits
        self.assertEqual(result.report["counters"], expected, harness.describe(result))

    # WebSockets -------------------------------------------------------------

    def test_websocket(self):
        result = self.run_api("test_websocket", hits_add_up=False)
        ws = result.report["websockets"]
        # Every socket's connect time, and both sends answered: two round trips per execution.
        self.assertEqual(ws.pop("connect_seconds")["count"], EXECUTIONS)
        self.assertEqual(ws.pop("round_trip_seconds")["count"], 2 * EXECUTIONS)
        # "hello" (5 bytes) and a 6-byte binary message, each sent and echoed.
        self.assertEqual(ws, {"opened": EXECUTIONS, "closed": EXECUTIONS,
                              "messages_sent": 2 * EXECUTIONS, "bytes_sent": 11 * EXECUTIONS,
                              "messages_received": 2 * EXECUTIONS, "bytes_received": 11 * EXECUTIONS},
                         harness.describe(result))

    def test_websocket_callback(self):
        stats = harness.StatsDelta(self.demo)
        result = self.run_api("test_websocket_callback", hits_add_up=False)
        delta = stats.delta()
        ws = result.report["websockets"]
        # Pushed messages, no send: nothing to time as a round trip.
        self.assertEqual(ws.pop("connect_seconds")["count"], EXECUTIONS)
        self.assertIsNone(ws.pop("round_trip_seconds"))
        self.assertEqual(ws, {"opened": EXECUTIONS, "closed": EXECUTIONS,
                              "messages_sent": 0, "bytes_sent": 0,
                              "messages_received": 3 * EXECUTIONS, "bytes_received": 30 * EXECUTIONS},
                         harness.describe(result))
        self.assertEqual(delta["websocket_messages_sent"], 3 * EXECUTIONS)
        self.assertEqual(delta["websocket_bytes_sent"], 30 * EXECUTIONS)


if __name__ == "__main__":
    unittest.main()
