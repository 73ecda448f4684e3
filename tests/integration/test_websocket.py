"""WebSocket traffic: the runner's counts of sockets, messages and bytes must
match what the server side really sent and received.

Bytes are payload bytes (message data, no frame headers); the servers here
use no compression, so payload and wire data agree.

Run: LOADS_BIN_DIR=build/bin LOADS_EXAMPLES_DIR=build/examples \\
     /usr/bin/python3 -m unittest -v test_websocket      (from tests/integration)
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TEST_CLASS = "websocket_example.TestWebSocket"
# test_echo sends "hello 0" .. "hello 9" and expects each one back.
ECHO_MESSAGES = [f"hello {i}" for i in range(10)]
ECHO_BYTES = sum(len(m.encode()) for m in ECHO_MESSAGES)  # 70


class WebSocketTest(unittest.TestCase):
    def setUp(self):
        self.examples = harness.examples_dir()

    def run_ws_test(self, method, server_url, *args):
        result = harness.run_runner([
            f"{TEST_CLASS}.{method}", "--test-path", self.examples,
            "--server-url", server_url, *args])
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, 0, harness.describe(result))
        # Whether the upgrade request counts as a hit is not specified, so
        # the hits/status-codes sum is not checked here.
        harness.assert_report_consistent(self, result, hits_add_up=False)
        return result

    def check_receive(self, messages, size, binary, users, hits):
        executions = users * hits
        with harness.WsServer(messages=messages, size=size, binary=binary) as server:
            result = self.run_ws_test("test_receive", server.url, "-u", str(users), "--hits", str(hits))
            server.wait_idle()
            sent_bytes, sent_messages = server.bytes_sent, server.messages_sent
            connections, completed = server.connections, server.completed
        ws = result.report["websockets"]
        self.assertEqual(result.report["tests"]["success"], executions, harness.describe(result))
        self.assertEqual(connections, executions)
        self.assertEqual(completed, executions, "some connections did not finish the closing handshake")
        self.assertEqual(sent_bytes, executions * messages * size)
        self.assertEqual(ws["opened"], executions, harness.describe(result))
        self.assertEqual(ws["closed"], executions, "sockets opened but not closed")
        self.assertEqual(ws["messages_received"], sent_messages)
        self.assertEqual(ws["bytes_received"], sent_bytes)
        self.assertEqual(ws["messages_sent"], 0)
        self.assertEqual(ws["bytes_sent"], 0)
        return result

    def test_receive_counts_every_byte(self):
        result = self.check_receive(messages=5, size=1000, binary=False, users=3, hits=2)
        self.assertEqual(result.report["websockets"]["bytes_received"], 30000)
        self.assertEqual(harness.stdout_int(result.stdout, "Opened web sockets"), 6)
        self.assertEqual(harness.stdout_int(result.stdout, "Bytes received via web sockets"), 30000)

    def test_receive_large_binary_messages(self):
        # Messages far bigger than a socket read: the runner must reassemble them.
        self.check_receive(messages=3, size=200_000, binary=True, users=2, hits=1)

    def test_echo_against_demo_target(self):
        users, hits = 2, 3
        executions = users * hits
        with harness.DemoTarget() as demo:
            stats = harness.StatsDelta(demo)
            result = self.run_ws_test("test_echo", demo.ws_url, "-u", str(users), "--hits", str(hits))
            delta = stats.delta()
        ws = result.report["websockets"]
        self.assertEqual(result.report["tests"]["success"], executions, harness.describe(result))
        self.assertEqual(ws["opened"], executions)
        self.assertEqual(ws["closed"], executions)
        self.assertEqual(ws["messages_sent"], executions * len(ECHO_MESSAGES))
        self.assertEqual(ws["messages_received"], executions * len(ECHO_MESSAGES))
        self.assertEqual(ws["bytes_sent"], executions * ECHO_BYTES)
        self.assertEqual(ws["bytes_received"], executions * ECHO_BYTES)
        # The target echoed exactly what the runner says it received.
        self.assertEqual(delta["websocket_messages_sent"], executions * len(ECHO_MESSAGES))
        self.assertEqual(delta["websocket_bytes_sent"], executions * ECHO_BYTES)

    def test_connect_and_round_trip_times(self):
        # A server that holds each handshake 100 ms and answers each message after 50 ms: every
        # time the runner reports is at least that, and not much more on an idle loopback.
        users, hits = 2, 2
        sockets, round_trips = users * hits, users * hits * len(ECHO_MESSAGES)
        with harness.WsServer(echo_delay=0.05, handshake_delay=0.1) as server:
            result = self.run_ws_test("test_echo", server.url, "-u", str(users), "--hits",
                                      str(hits))
            server.wait_idle()
            echoed = server.messages_sent
        ws = result.report["websockets"]
        self.assertEqual(echoed, round_trips)
        connect, trip = ws["connect_seconds"], ws["round_trip_seconds"]
        self.assertEqual(connect["count"], sockets, harness.describe(result))
        self.assertGreaterEqual(connect["min"], 0.1)
        self.assertLess(connect["p50"], 0.1 + 0.5)
        self.assertEqual(trip["count"], round_trips, harness.describe(result))
        self.assertGreaterEqual(trip["min"], 0.05)
        self.assertLess(trip["p50"], 0.05 + 0.5)
        self.assertLessEqual(trip["p50"], trip["p99"])
        self.assertIn("WebSocket round trip: min ", result.stdout)
        self.assertIn(f"({round_trips} answered sends)", result.stdout)
        self.assertIn("WebSocket connect time: min ", result.stdout)
        # No HTTP request: the request time says so instead of 0.
        self.assertEqual(harness.stdout_value(result.stdout, "Average request time"),
                         "n/a (no HTTP response; see the WebSocket times)")

    def test_a_callback_reader_times_its_answers_and_a_push_is_not_timed(self):
        with harness.WsServer(echo_delay=0.02) as server:
            result = self.run_ws_test("test_callback", server.url, "-u", "2", "--hits", "2")
        self.assertEqual(result.report["websockets"]["round_trip_seconds"]["count"], 4)
        # A server that only pushes: messages received, no round trip.
        result = self.check_receive(messages=3, size=10, binary=False, users=1, hits=1)
        self.assertIsNone(result.report["websockets"]["round_trip_seconds"])
        self.assertEqual(result.report["websockets"]["connect_seconds"]["count"], 1)


if __name__ == "__main__":
    unittest.main()
