"""loads-worker speaks the documented ZeroMQ + msgpack protocol (docs/wire-protocol.md).

There is no loads-controller yet: this test plays the controller itself with Python's zmq and
msgpack modules (a ROUTER socket), the way a controller in any language would. It checks
registration, heartbeats, an assignment (the built-in GET test, and a shipped test library), the
start, one snapshot a second with exact counts (compared with nginx's access log), stop, a
library that fails to load, garbage frames, and a controller that goes silent.
"""

import os
import subprocess
import sys
import time
import unittest

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def pack(message):
    return msgpack.packb(dict({"v": 1}, **message), use_bin_type=True)


class FakeController:
    """A ROUTER socket on a free loopback port, with helpers to talk to one worker."""

    def __init__(self, port=None):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.port = port or harness.free_port()
        self.socket.bind(f"tcp://127.0.0.1:{self.port}")
        self.endpoint = f"tcp://127.0.0.1:{self.port}"

    def close(self):
        self.socket.close()
        self.context.term()

    def receive(self, timeout=10.0, types=None):
        """The next message (identity, decoded map) whose type is in `types`; heartbeats and
        other types are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {types} message within {timeout} s")
            if not self.socket.poll(int(left * 1000)):
                continue
            identity, frame = self.socket.recv_multipart()
            message = msgpack.unpackb(frame, raw=False, strict_map_key=False)
            if types is None or message["type"] in types:
                return identity, message

    def send(self, identity, message):
        self.socket.send_multipart([identity, pack(message)])

    def send_raw(self, identity, frame):
        self.socket.send_multipart([identity, frame])

    def register(self):
        identity, hello = self.receive(types={"hello"})
        self.send(identity, {"type": "welcome", "worker": hello["worker"], "heartbeat_ms": 200})
        return identity, hello

    def run(self, identity, run_id, assignment, stop_after=None):
        """Assigns, starts and collects snapshots until "done"; returns (snapshots, done)."""
        self.send(identity, {"type": "assign", "run": run_id, "assignment": assignment})
        _, ready = self.receive(types={"ready", "done"})
        if ready["type"] == "done":
            return [], ready
        self.send(identity, {"type": "start", "run": run_id, "at": time.time_ns() + 100_000_000})
        snapshots, started = [], time.monotonic()
        while True:
            if stop_after is not None and time.monotonic() - started > stop_after:
                self.send(identity, {"type": "stop", "run": run_id})
                stop_after = None
            _, message = self.receive(timeout=15, types={"snapshot", "done"})
            if message["type"] == "done":
                return snapshots, message
            snapshots.append(message)


def url_assignment(url, users, hits=None, duration=None):
    return {"test": url, "url": url, "users": users, "hits": hits or [],
            "duration": duration, "threads": 1, "server_url": "", "connect_timeout_ms": 2000,
            "timeout_ms": 5000, "insecure": False}


class WorkerProtocolTest(unittest.TestCase):
    def setUp(self):
        self.controller = FakeController()
        self.worker = subprocess.Popen(
            [harness.binary("loads-worker"), "--controller", self.controller.endpoint,
             "--id", "w1", "--controller-timeout", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def tearDown(self):
        harness.stop_process(self.worker)
        self.worker.stderr.close()
        self.controller.close()

    def check_snapshots(self, snapshots):
        self.assertGreaterEqual(len(snapshots), 1)
        self.assertEqual([s["seq"] for s in snapshots], list(range(1, len(snapshots) + 1)))
        self.assertTrue(snapshots[-1]["final"])
        self.assertFalse(any(s["final"] for s in snapshots[:-1]))
        for s in snapshots:
            self.assertEqual(s["worker"], "w1")
            self.assertLessEqual(s["t0"], s["t1"])
            self.assertEqual(s["latency"][0], sum(s["status"].values()))

    def test_registers_runs_a_url_test_and_reports_exact_counts(self):
        identity, hello = self.controller.register()
        self.assertEqual(hello["worker"], "w1")
        self.assertGreaterEqual(hello["threads"], 1)
        # Heartbeats follow the period the controller asked for.
        self.controller.receive(types={"heartbeat"}, timeout=2)
        with harness.Nginx() as nginx:
            snapshots, done = self.controller.run(
                identity, "run-1", url_assignment(nginx.url, [3, 2], hits=[4]))
            self.assertTrue(done["ok"], done)
            self.check_snapshots(snapshots)
            hits = sum(s["hits"] for s in snapshots)
            self.assertEqual(hits, 20)  # (3 + 2) users x 4 hits
            self.assertEqual(sum(s["outcomes"][0] for s in snapshots), 20)
            self.assertEqual(nginx.access_log_count(), hits)

    def test_runs_a_shipped_test_library(self):
        identity, _ = self.controller.register()
        with open(os.path.join(harness.examples_dir(), "example.so"), "rb") as f:
            library = f.read()
        with harness.Nginx() as nginx:
            assignment = url_assignment("", [2], hits=[3])
            assignment.update(test="example.TestWebSite.test_redirect", url="", library=library,
                              server_url=nginx.url)
            snapshots, done = self.controller.run(identity, "run-lib", assignment)
            self.assertTrue(done["ok"], done)
            self.check_snapshots(snapshots)
            self.assertEqual(sum(s["hits"] for s in snapshots), 24)  # 6 executions x 4 hops
            self.assertEqual(nginx.access_log_count(), 24)

    def test_a_library_that_fails_to_load_fails_the_run_not_the_worker(self):
        identity, _ = self.controller.register()
        assignment = url_assignment("", [1], hits=[1])
        assignment.update(test="broken.A.b", url="", library=b"not a shared library")
        snapshots, done = self.controller.run(identity, "run-bad", assignment)
        self.assertEqual(snapshots, [])
        self.assertFalse(done["ok"])
        self.assertIn("cannot load test library", done["message"])
        # Still alive and serving.
        with harness.Nginx() as nginx:
            _, done = self.controller.run(identity, "run-after", url_assignment(nginx.url, [1], [2]))
            self.assertTrue(done["ok"], done)

    def test_stop_ends_a_long_run_promptly(self):
        identity, _ = self.controller.register()
        with harness.Nginx() as nginx:
            started = time.monotonic()
            snapshots, done = self.controller.run(
                identity, "run-stop", url_assignment(nginx.url, [2], duration=30.0), stop_after=1.5)
            self.assertLess(time.monotonic() - started, 8)
            self.assertTrue(done["ok"])
            self.assertEqual(done["message"], "stopped")
            self.check_snapshots(snapshots)
            self.assertEqual(sum(s["hits"] for s in snapshots), nginx.access_log_count())

    def test_garbage_is_dropped_and_the_worker_keeps_serving(self):
        identity, _ = self.controller.register()
        for frame in [b"", b"\xc1", b"garbage", pack({"type": "nope"}),
                      msgpack.packb([1, 2, 3]), pack({"type": "assign", "run": "x"}),
                      pack({"type": "start", "run": "never-assigned", "at": 0}),
                      msgpack.packb({"v": 99, "type": "heartbeat"})]:
            self.controller.send_raw(identity, frame)
        self.controller.socket.send_multipart([identity, b"part one", b"part two"])
        with harness.Nginx() as nginx:
            _, done = self.controller.run(identity, "run-ok", url_assignment(nginx.url, [1], [3]))
            self.assertTrue(done["ok"], done)
        self.assertIsNone(self.worker.poll())

    def test_worker_metrics(self):
        harness.stop_process(self.worker)  # this test starts its own, with metrics
        self.worker.stderr.close()
        self.worker = subprocess.Popen(
            [harness.binary("loads-worker"), "--controller", self.controller.endpoint,
             "--id", "w1", "--metrics", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = self.worker.stderr.readline()
        self.assertIn("metrics on http://127.0.0.1:", line)
        url = line.split("metrics on ")[1].strip()
        identity, _ = self.controller.register()
        with harness.Nginx() as nginx:
            snapshots, done = self.controller.run(identity, "run-m", url_assignment(nginx.url, [3], [7]))
            self.assertTrue(done["ok"], done)
        time.sleep(0.3)
        import urllib.request
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                               text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        values = {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1])
                  for l in text.splitlines() if l.startswith("loads_worker_")}
        self.assertEqual(values["loads_worker_hits_total"], sum(s["hits"] for s in snapshots))
        self.assertEqual(values["loads_worker_hits_total"], 21)
        self.assertEqual(values['loads_worker_executions_total{outcome="success"}'], 21)
        self.assertEqual(values["loads_worker_snapshots_sent_total"], len(snapshots))
        self.assertEqual(values['loads_worker_runs_total{result="ok"}'], 1)
        self.assertEqual(values["loads_worker_registered"], 1)
        self.assertEqual(values["loads_worker_active_users"], 0)

    def test_registers_again_when_the_controller_goes_silent(self):
        self.controller.register()
        # Say nothing more: after --controller-timeout (2 s) the worker says hello again.
        identity, hello = self.controller.receive(types={"hello"}, timeout=6)
        self.assertEqual(hello["worker"], "w1")


if __name__ == "__main__":
    unittest.main()
