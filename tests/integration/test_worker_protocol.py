"""loads-worker speaks the documented ZeroMQ + msgpack protocol (docs/wire-protocol.md).

This test plays the controller itself with Python's zmq and msgpack modules (a ROUTER socket),
the way a controller in any language would. It checks registration, heartbeats, an assignment
(the built-in GET test, and a shipped test library), the start, one snapshot a second with exact
counts (compared with nginx's access log), acknowledgements and resends, stop, SIGTERM, a
library that fails to load or takes long to load, garbage frames, a refusal, and a controller
that goes silent and comes back.
"""

import os
import signal
import subprocess
import sys
import time
import unittest

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def pack(message):
    return msgpack.packb(dict({"v": 2}, **message), use_bin_type=True)


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

    def receive(self, timeout=10.0, types=None, run=None):
        """The next message (identity, decoded map) whose type is in `types` (and of `run`, if
        given); heartbeats and other messages are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {types} message within {timeout} s")
            if not self.socket.poll(int(left * 1000)):
                continue
            identity, frame = self.socket.recv_multipart()
            message = msgpack.unpackb(frame, raw=False, strict_map_key=False)
            if (types is None or message["type"] in types) and \
                    (run is None or message.get("run") == run):
                return identity, message

    def send(self, identity, message):
        self.socket.send_multipart([identity, pack(message)])

    def send_raw(self, identity, frame):
        self.socket.send_multipart([identity, frame])

    def register(self, run=""):
        identity, hello = self.receive(types={"hello"})
        self.send(identity, {"type": "welcome", "worker": hello["worker"], "heartbeat_ms": 200,
                             "run": run})
        return identity, hello

    def ack(self, identity, run_id, seq, closed=False):
        self.send(identity, {"type": "ack", "run": run_id, "seq": seq, "closed": closed})

    def collect(self, identity, run_id, stop_after=None, ack=True, timeout=15):
        """Snapshots until "done", each acknowledged (unless ack=False), and "done" closed;
        returns (snapshots in sequence order without repeats, done)."""
        snapshots, started = {}, time.monotonic()
        while True:
            if stop_after is not None and time.monotonic() - started > stop_after:
                self.send(identity, {"type": "stop", "run": run_id})
                stop_after = None
            _, message = self.receive(timeout=timeout, types={"snapshot", "done"}, run=run_id)
            if message["type"] == "done":
                if ack:
                    self.ack(identity, run_id, message["seq"], closed=True)
                return [snapshots[k] for k in sorted(snapshots)], message
            snapshots[message["seq"]] = message
            if ack:
                self.ack(identity, run_id, message["seq"])

    def run(self, identity, run_id, assignment, stop_after=None):
        """Assigns, starts and collects snapshots until "done"; returns (snapshots, done)."""
        self.send(identity, {"type": "assign", "run": run_id, "assignment": assignment})
        _, ready = self.receive(types={"ready", "done"}, run=run_id)
        if ready["type"] == "done":
            return [], ready
        self.send(identity, {"type": "start", "run": run_id, "at": time.time_ns() + 100_000_000})
        return self.collect(identity, run_id, stop_after=stop_after)


def url_assignment(url, users, hits=None, duration=None):
    return {"test": url, "url": url, "users": users, "hits": hits or [],
            "duration": duration, "threads": 1, "server_url": "", "connect_timeout_ms": 2000,
            "timeout_ms": 5000, "insecure": False}


class WorkerProtocolTest(unittest.TestCase):
    def setUp(self):
        self.controller = FakeController()
        self.start_worker()

    def start_worker(self, *args):
        self.worker = subprocess.Popen(
            [harness.binary("loads-worker"), "--controller", self.controller.endpoint,
             "--id", "w1", "--controller-timeout", "2", *args],
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
            self.assertEqual(s["v"], 6)
            self.assertLessEqual(s["t0"], s["t1"])
            self.assertEqual(s["latency"][0], sum(s["status"].values()))

    def test_registers_runs_a_url_test_and_reports_exact_counts(self):
        identity, hello = self.controller.register()
        self.assertEqual(hello["worker"], "w1")
        self.assertEqual(hello["run"], "")
        self.assertGreaterEqual(hello["threads"], 1)
        # The routing id is the worker's name and a per-process nonce nobody else can guess.
        self.assertTrue(identity.startswith(b"w1/"), identity)
        self.assertEqual(len(identity), len("w1/") + 16)
        # Heartbeats follow the period the controller asked for.
        self.controller.receive(types={"heartbeat"}, timeout=2)
        with harness.Nginx() as nginx:
            snapshots, done = self.controller.run(
                identity, "run-1", url_assignment(nginx.url, [3, 2], hits=[4]))
            self.assertTrue(done["ok"], done)
            self.check_snapshots(snapshots)
            self.assertEqual(done["seq"], snapshots[-1]["seq"])  # the final snapshot's
            self.assertFalse(done["left"])
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
            self.assertFalse(done["left"])
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
        # The assignment it could not read is answered at once, with why: its run need not wait.
        _, refused = self.controller.receive(types={"done"}, run="x")
        self.assertFalse(refused["ok"])
        self.assertIn("cannot read its assignment: field 'assignment': missing", refused["message"])
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

    def test_unacknowledged_snapshots_are_sent_again_in_order(self):
        identity, _ = self.controller.register()
        with harness.Nginx() as nginx:
            self.controller.send(identity, {"type": "assign", "run": "r-ack",
                                            "assignment": url_assignment(nginx.url, [2], duration=3.0)})
            self.controller.receive(types={"ready"})
            self.controller.send(identity, {"type": "start", "run": "r-ack", "at": time.time_ns()})
            # Acknowledge nothing for a while (but keep the worker company with heartbeats): it
            # sends the same numbers again.
            seen, merged = [], {}
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                self.controller.send(identity, {"type": "heartbeat", "worker": ""})
                try:
                    _, m = self.controller.receive(types={"snapshot"}, timeout=0.3)
                    seen.append(m["seq"])
                    merged[m["seq"]] = m
                except AssertionError:
                    pass
            self.assertGreater(len(seen), len(set(seen)), seen)  # repeats: resent
            self.assertEqual(sorted(set(seen)), list(range(1, max(seen) + 1)))
            # Acknowledged from now on, every result arrives once in the merge, exactly.
            snapshots, done = self.controller.collect(identity, "r-ack")
            self.assertTrue(done["ok"], done)
            merged.update({s["seq"]: s for s in snapshots})
            self.assertEqual(sorted(merged), list(range(1, done["seq"] + 1)))
            self.assertEqual(sum(s["hits"] for s in merged.values()), nginx.access_log_count())

    def test_a_run_rides_out_a_silent_controller_and_reattaches(self):
        identity, _ = self.controller.register()
        with harness.Nginx() as nginx:
            self.controller.send(identity, {"type": "assign", "run": "r-out",
                                            "assignment": url_assignment(nginx.url, [2], duration=6.0)})
            self.controller.receive(types={"ready"})
            self.controller.send(identity, {"type": "start", "run": "r-out", "at": time.time_ns()})
            _, first = self.controller.receive(types={"snapshot"})
            self.controller.ack(identity, "r-out", first["seq"])
            # The controller goes away (nothing read, nothing said) for 4 s: the run goes on, and
            # the worker says hello again, naming its run.
            time.sleep(4)
            identity, hello = self.controller.receive(types={"hello"}, timeout=10)
            self.assertEqual(hello["run"], "r-out")
            # Taken back: welcome names the run, and the ack says where the results stand.
            self.controller.send(identity, {"type": "welcome", "worker": "w1", "heartbeat_ms": 200,
                                            "run": "r-out"})
            self.controller.ack(identity, "r-out", first["seq"])
            snapshots, done = self.controller.collect(identity, "r-out", timeout=20)
            self.assertTrue(done["ok"], done)
            merged = {first["seq"]: first}
            merged.update({s["seq"]: s for s in snapshots if s["seq"] > first["seq"]})
            self.assertEqual(sorted(merged), list(range(1, done["seq"] + 1)))
            self.assertEqual(sum(s["hits"] for s in merged.values()), nginx.access_log_count())

    def test_a_controller_that_no_longer_counts_on_it_ends_its_run(self):
        identity, _ = self.controller.register()
        with harness.Nginx() as nginx:
            self.controller.send(identity, {"type": "assign", "run": "r-gone",
                                            "assignment": url_assignment(nginx.url, [1], duration=30.0)})
            self.controller.receive(types={"ready"})
            self.controller.send(identity, {"type": "start", "run": "r-gone", "at": time.time_ns()})
            self.controller.receive(types={"snapshot"})
            # Asked to register again (as a restarted controller does), and welcomed without the
            # run: the worker stops loading the target for it.
            self.controller.send(identity, {"type": "rejoin"})
            identity, hello = self.controller.receive(types={"hello"}, timeout=5)
            self.assertEqual(hello["run"], "r-gone")
            self.controller.send(identity, {"type": "welcome", "worker": "w1", "heartbeat_ms": 200,
                                            "run": ""})
            time.sleep(0.5)
            count = nginx.access_log_count()
            time.sleep(1)
            self.assertEqual(nginx.access_log_count(), count)
            # And it is ready for another run.
            _, done = self.controller.run(identity, "r-next", url_assignment(nginx.url, [1], [2]))
            self.assertTrue(done["ok"], done)

    def test_sigterm_mid_run_sends_the_final_results_and_leaves(self):
        identity, _ = self.controller.register()
        with harness.Nginx() as nginx:
            self.controller.send(identity, {"type": "assign", "run": "r-term",
                                            "assignment": url_assignment(nginx.url, [2], duration=30.0)})
            self.controller.receive(types={"ready"})
            self.controller.send(identity, {"type": "start", "run": "r-term", "at": time.time_ns()})
            _, first = self.controller.receive(types={"snapshot"})
            self.controller.ack(identity, "r-term", first["seq"])
            self.worker.send_signal(signal.SIGTERM)
            snapshots, done = self.controller.collect(identity, "r-term")
            self.assertTrue(done["ok"], done)
            self.assertTrue(done["left"], done)
            self.assertIn("shutting down", done["message"])
            _, bye = self.controller.receive(types={"bye"}, timeout=5)
            self.assertEqual(bye["worker"], "w1")
            self.assertEqual(self.worker.wait(timeout=10), 0, self.worker.stderr.read())
            merged = {first["seq"]: first}
            merged.update({s["seq"]: s for s in snapshots})
            self.assertEqual(sum(s["hits"] for s in merged.values()), nginx.access_log_count())

    def test_sigterm_when_idle_says_bye_and_exits_0(self):
        self.controller.register()
        time.sleep(0.3)
        self.worker.send_signal(signal.SIGTERM)
        self.controller.receive(types={"bye"}, timeout=5)
        self.assertEqual(self.worker.wait(timeout=10), 0)
        self.assertNotIn("Interrupted", self.worker.stderr.read())

    def test_a_refused_worker_says_why_and_exits_3(self):
        identity, _ = self.controller.receive(types={"hello"})
        self.controller.send(identity, {"type": "refused", "message": "wrong token"})
        self.assertEqual(self.worker.wait(timeout=10), 3)
        self.assertIn("the controller refused this worker: wrong token", self.worker.stderr.read())

    def test_a_slow_library_keeps_the_heartbeats_going_and_a_stuck_one_ends_the_worker(self):
        harness.stop_process(self.worker)
        self.worker.stderr.close()
        self.start_worker("--load-timeout", "3")
        identity, _ = self.controller.register()
        assignment = url_assignment("", [1], hits=[1])
        with open(os.path.join(harness.bin_dir(), "..", "tests", "sdk", "stuck_library.so"), "rb") as f:
            assignment.update(test="stuck_library.Slow.get", url="", library=f.read())
        self.controller.send(identity, {"type": "assign", "run": "r-stuck", "assignment": assignment})
        # Its initializer never returns: heartbeats go on meanwhile ...
        started = time.monotonic()
        self.controller.receive(types={"heartbeat"}, timeout=2)
        # ... until the load timeout fails the run and the worker exits to start clean.
        _, done = self.controller.receive(types={"done"}, timeout=10)
        self.assertGreaterEqual(time.monotonic() - started, 2.5)
        self.assertFalse(done["ok"])
        self.assertIn("took more than 3 s", done["message"])
        self.assertEqual(self.worker.wait(timeout=10), 1)

    def test_a_throwing_initializer_fails_the_run_and_the_worker_starts_clean(self):
        identity, _ = self.controller.register()
        assignment = url_assignment("", [1], hits=[1])
        with open(os.path.join(harness.bin_dir(), "..", "tests", "sdk", "throwing_library.so"),
                  "rb") as f:
            assignment.update(test="throwing_library.Bad.segfault", url="", library=f.read())
        self.controller.send(identity, {"type": "assign", "run": "r-throw", "assignment": assignment})
        # Told as a load failure that names the exception, not a SIGABRT of the worker ...
        _, done = self.controller.receive(types={"done"}, timeout=10)
        self.assertFalse(done["ok"])
        self.assertEqual(done["message"],
                         "cannot load the test library: a global initializer threw (the "
                         "configuration file /nonexistent/loads.cfg is missing); worker w1 exits "
                         "to start clean")
        # ... and the worker leaves (the loader's lock stays held by the parked thread).
        self.assertEqual(self.worker.wait(timeout=10), 1)
        self.assertIn("a global initializer threw", self.worker.stderr.read())


if __name__ == "__main__":
    unittest.main()
