"""Load models against real servers (docs/load-models.md): an open model keeps its arrival rate
per second and in total, and its latency from the intended start shows a stalled server that a
closed model hides; a pool too small drops what it cannot start, exactly; ramped users and rates
follow their line; pacing and think time; the rate split over workers; bad input refused.

Per-second numbers come from the snapshots the controller republishes (one per worker and
second), read with Python's zmq and msgpack modules.
"""

import json
import os
import signal
import sys
import tempfile
import threading
import time
import unittest
import uuid

import grpc
import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_distributed import generate_stubs  # noqa: E402


class Stream:
    """Collects every snapshot the controller publishes for one run."""

    def __init__(self, publish, run_id):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.connect(publish)
        self.socket.setsockopt(zmq.SUBSCRIBE, run_id.encode())
        self.run_id = run_id
        self.snapshots = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        time.sleep(0.3)  # let the subscription reach the publisher

    def _read(self):
        while not self._stop.is_set():
            if self.socket.poll(100):
                topic, frame = self.socket.recv_multipart()
                if topic.decode() == self.run_id:  # topics are prefixes: compare
                    self.snapshots.append(msgpack.unpackb(frame, raw=False, strict_map_key=False))

    def close(self):
        time.sleep(0.5)
        self._stop.set()
        self._thread.join(timeout=5)
        self.socket.close()
        self.context.term()

    def intervals(self):
        """Each worker's snapshots, by worker, in order, with times in seconds from the start of
        its run (its first snapshot's t0)."""
        by_worker = {}
        for s in sorted(self.snapshots, key=lambda s: s["seq"]):
            by_worker.setdefault(s["worker"], []).append(s)
        out = {}
        for worker, snaps in by_worker.items():
            zero = snaps[0]["t0"]
            out[worker] = [dict(s, start=(s["t0"] - zero) / 1e9, end=(s["t1"] - zero) / 1e9)
                           for s in snaps]
        return out


class LoadModelsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pb, cls.rpc = generate_stubs(tempfile.mkdtemp(prefix="loads-stubs-"))

    def setUp(self):
        self.nginx = harness.Nginx()
        self.nginx.start()
        self.controller = None

    def tearDown(self):
        if self.controller:
            self.controller.close()
        self.nginx.stop()

    def cluster(self, workers):
        self.controller = harness.Controller(extra=("--max-local-workers", "0"))
        self.controller.start_workers(workers)
        return self.controller

    def run_watched(self, *args, timeout=120):
        """A run on the controller, with its published snapshots: (RunResult, Stream)."""
        stub = self.rpc.ControllerStub(grpc.insecure_channel(self.controller.grpc))
        process = harness.RunnerProcess(["--controller", self.controller.grpc, *map(str, args)])
        # The run id is the runner's own: find it as soon as the controller has it.
        deadline = time.monotonic() + 10
        runs = []
        while not runs and time.monotonic() < deadline:
            runs = [r for r in stub.ListRuns(self.pb.ListRunsRequest()).runs
                    if r.state in (self.pb.RUN_STATE_ASSIGNING, self.pb.RUN_STATE_RUNNING)]
            time.sleep(0.02)
        self.assertTrue(runs, "the run did not appear on the controller")
        stream = Stream(self.controller.publish, runs[0].run_id)
        result = process.wait(timeout=timeout)
        stream.close()
        return result, stream

    # -- the open model ----------------------------------------------------------------------

    def test_a_stalled_server_shows_in_the_latency_from_the_intended_start(self):
        def stall_at(seconds):
            def stall():
                time.sleep(seconds)
                os.kill(self.nginx.process.pid, signal.SIGSTOP)
                time.sleep(1)
                os.kill(self.nginx.process.pid, signal.SIGCONT)
            thread = threading.Thread(target=stall)
            thread.start()
            return thread

        # Open model: 2,000 executions a second for 10 s, nginx frozen for 1 s at 4 s.
        stall = stall_at(4)
        opened = harness.run_runner(["--url", self.nginx.url, "--rate", "2000", "-d", "10"],
                                    timeout=60)
        stall.join()
        self.assertEqual(opened.code, 0, harness.describe(opened))
        self.assertEqual(opened.report["hits"], self.nginx.access_log_count())
        self.assertEqual(opened.report["executions"]["started"], 20_000)
        self.assertEqual(opened.report["executions"]["dropped"], 0)
        corrected = opened.report["corrected_latency_seconds"]
        self.assertGreaterEqual(corrected["p99"], 0.85, corrected)
        # An arrival lands at most 0.5 ms after the freeze and waits out the rest of it; the
        # histogram reports bucket bounds, so allow a few milliseconds below the 1 s stall.
        self.assertGreaterEqual(corrected["max"], 0.98, corrected)
        # The schedule was kept while the server stood still: the arrivals due in the stall were
        # started on time (and waited for the server), none was held back.
        self.assertLess(opened.report["schedule_lag_seconds"]["p99"], 0.05,
                        opened.report["schedule_lag_seconds"])
        self.assertIn("Latency from intended start:", opened.stdout)
        self.assertTrue(opened.report["latency_corrected"])
        self.assertEqual(opened.report["model"], "open")

        # The closed model of the same test: its users waited with the server, so the stall is
        # a blip in the maximum, not in the percentiles, and the report says the latency is
        # uncorrected.
        before = self.nginx.access_log_count()
        stall = stall_at(4)
        closed = harness.run_runner(["--url", self.nginx.url, "-u", "10", "-d", "10"], timeout=60)
        stall.join()
        self.assertEqual(closed.code, 0, harness.describe(closed))
        self.assertEqual(closed.report["hits"], self.nginx.access_log_count() - before)
        self.assertLess(closed.report["latency_seconds"]["p99"], 0.1, closed.report["latency_seconds"])
        self.assertGreaterEqual(closed.report["latency_seconds"]["max"], 0.98)
        self.assertIsNone(closed.report["corrected_latency_seconds"])
        self.assertFalse(closed.report["latency_corrected"])
        self.assertIn("Latency: uncorrected (closed model", closed.stdout)

    def test_a_pool_too_small_drops_exactly_what_it_cannot_start(self):
        # 200 arrivals a second for 3 s, each 50 ms long, 5 users: about 100 a second fit.
        with harness.DemoTarget() as target:
            result = harness.run_runner(["--url", target.url + "delay/50", "--rate", "200",
                                         "-d", "3", "--max-users", "5"], timeout=60)
        self.assertEqual(result.code, 0, harness.describe(result))
        executions = result.report["executions"]
        self.assertEqual(executions["started"] + executions["dropped"], 600)  # exactly the target
        self.assertGreater(executions["dropped"], 200)
        self.assertEqual(result.report["tests"]["total"], executions["started"])
        self.assertIn(f"{executions['dropped']} dropped (no free user", result.stdout)

    def test_rates_hold_per_second_and_in_total(self):
        self.cluster(1)
        for rate, seconds in ((1000, 10), (20_000, 10)):
            with self.subTest(rate=rate):
                before = self.nginx.access_log_count()
                result, stream = self.run_watched("--url", self.nginx.url, "--rate", rate,
                                                  "-d", seconds)
                self.assertEqual(result.code, 0, harness.describe(result))
                self.assertEqual(result.report["executions"]["started"], rate * seconds)
                self.assertEqual(result.report["hits"], self.nginx.access_log_count() - before)
                [snaps] = stream.intervals().values()
                full = [s for s in snaps if not s["final"] and s["end"] <= seconds - 0.5]
                self.assertGreaterEqual(len(full), seconds - 2)
                for s in full:
                    want = rate * (s["end"] - s["start"])
                    self.assertLessEqual(abs(s["started"] - want), 0.01 * want + 1,
                                         f"{s['started']} started in [{s['start']:.3f}, "
                                         f"{s['end']:.3f}] s, {want:.0f} due")
                    self.assertAlmostEqual(s["rate"], rate, delta=0.001 * rate)
                self.assertEqual(sum(s["started"] for s in snaps), rate * seconds)

    def test_a_rate_split_over_three_workers_is_exact(self):
        self.cluster(3)
        result, stream = self.run_watched("--url", self.nginx.url, "--rate", "3000", "-d", "5",
                                          "--workers", "3")
        self.assertEqual(result.code, 0, harness.describe(result))
        self.assertEqual(result.report["executions"]["started"], 15_000)
        self.assertEqual(result.report["hits"], self.nginx.access_log_count())
        by_worker = stream.intervals()
        self.assertEqual(len(by_worker), 3)
        for snaps in by_worker.values():
            # Each worker takes every third arrival: a third of the rate, every second.
            self.assertEqual(sum(s["started"] for s in snaps), 5000)
            for s in snaps:
                if not s["final"]:
                    self.assertAlmostEqual(s["rate"], 1000, delta=1)

    def test_ramps_follow_their_line(self):
        self.cluster(1)
        # Users 0 -> 100 over 5 s, back to 0 over 5 s; each pauses 50 ms between executions.
        result, stream = self.run_watched("--url", self.nginx.url, "--stages", "5s:100,5s:0",
                                          "--pause", "0.05")
        self.assertEqual(result.code, 0, harness.describe(result))
        self.assertEqual(result.report["hits"], self.nginx.access_log_count())
        [snaps] = stream.intervals().values()

        def line(t):
            return round(100 * t / 5) if t <= 5 else round(100 * (10 - t) / 5)

        checked = [s for s in snaps if not s["final"] and s["end"] < 9.9]
        self.assertGreaterEqual(len(checked), 8)
        for s in checked:
            self.assertLessEqual(abs(s["users"] - line(s["end"])), 1,
                                 f"{s['users']} users at {s['end']:.3f} s, the line says "
                                 f"{line(s['end'])}")
        # The arrival rate ramped from 100/s to 1000/s over 10 s: within 2% every second.
        before = self.nginx.access_log_count()
        result, stream = self.run_watched("--url", self.nginx.url, "--rate", "100",
                                          "--rate-stages", "10s:1000")
        self.assertEqual(result.code, 0, harness.describe(result))
        self.assertEqual(result.report["executions"]["started"], 5500)  # (100 + 1000) / 2 x 10
        self.assertEqual(result.report["hits"], self.nginx.access_log_count() - before)
        [snaps] = stream.intervals().values()

        def due(t):  # Λ(t) = 100 t + 45 t^2
            return 100 * t + 45 * t * t

        checked = [s for s in snaps if not s["final"] and s["end"] < 9.5]
        self.assertGreaterEqual(len(checked), 8)
        for s in checked:
            want = due(s["end"]) - due(s["start"])
            self.assertLessEqual(abs(s["started"] - want), 0.02 * want + 1,
                                 f"{s['started']} started in [{s['start']:.3f}, {s['end']:.3f}]"
                                 f" s, {want:.0f} due")

    # -- the closed model's pace -------------------------------------------------------------

    def test_pacing_and_think_time(self):
        # Two users, an execution every 100 ms each, for 2 s: 20 each.
        paced = harness.run_runner(["--url", self.nginx.url, "-u", "2", "-d", "2",
                                    "--pacing", "0.1"], timeout=30)
        self.assertEqual(paced.code, 0, harness.describe(paced))
        self.assertIn(paced.report["tests"]["total"], range(38, 43))
        self.assertEqual(paced.report["executions"]["missed_pace"], 0)
        self.assertIsNotNone(paced.report["corrected_latency_seconds"])
        self.assertIn("Missed pace: 0 executions started late", paced.stdout)
        # Each execution takes 150 ms, longer than the pace: every one after the first is late,
        # and its latency from the intended start grows with the delay.
        with harness.DemoTarget() as target:
            late = harness.run_runner(["--url", target.url + "delay/150", "-u", "1", "-d", "1.5",
                                       "--pacing", "0.1"], timeout=30)
        self.assertEqual(late.code, 0, harness.describe(late))
        self.assertGreater(late.report["executions"]["missed_pace"], 0)
        self.assertEqual(late.report["executions"]["missed_pace"],
                         late.report["tests"]["total"] - 1)
        self.assertGreater(late.report["corrected_latency_seconds"]["max"],
                           late.report["latency_seconds"]["max"] + 0.2)
        # Think time: 2 users pausing 0.2 to 0.3 s for 2 s do fewer than 22 executions.
        paused = harness.run_runner(["--url", self.nginx.url, "-u", "2", "-d", "2",
                                     "--pause", "0.2:0.3"], timeout=30)
        self.assertEqual(paused.code, 0, harness.describe(paused))
        self.assertIn(paused.report["tests"]["total"], range(14, 23))
        self.assertEqual(paused.report["plan"]["pause_seconds"], [0.2, 0.3])

    def test_a_scenario_file_says_how_hard(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"name": "open", "load": {"rate": 50, "duration": 2},
                       "steps": [{"request": {"url": "/"}}]}, f)
        self.addCleanup(os.unlink, f.name)
        result = harness.run_runner([f.name, "--server-url", self.nginx.url], timeout=30)
        self.assertEqual(result.code, 0, harness.describe(result))
        self.assertEqual(result.report["hits"], 100)
        self.assertEqual(result.report["model"], "open")
        # The command line wins over the file.
        result = harness.run_runner([f.name, "--server-url", self.nginx.url, "--rate", "20"],
                                    timeout=30)
        self.assertEqual(result.report["hits"], 40)

    # -- bad input ---------------------------------------------------------------------------

    def test_bad_load_options_run_nothing(self):
        cases = [
            (["--rate", "0", "-d", "1"], "--rate"),
            (["--rate", "-3", "-d", "1"], "--rate"),
            (["--rate", "1e12", "-d", "1"], "--rate"),
            (["--rate", "100", "--hits", "5"], "--hits"),
            (["--rate", "100"], "--duration"),
            (["--rate", "100", "-d", "1", "-u", "5"], "--users"),
            (["--stages", "30s100"], "--stages"),
            (["--stages", "0s:5"], "--stages"),
            (["--stages", "1s:5", "--rate", "10"], "--stages"),
            (["--pacing", "-1", "-d", "1"], "--pacing"),
            (["--pacing", "1", "--pause", "1", "-d", "1"], "--pacing"),
            (["--max-users", "5", "-d", "1"], "--max-users"),
            (["--rate-stages", "1s:5", "-d", "1"], "--duration"),
        ]
        for args, flag in cases:
            with self.subTest(args=args):
                result = harness.run_runner(["--url", self.nginx.url, *args], timeout=10)
                self.assertEqual(result.code, 2, harness.describe(result))
                lines = result.stderr.strip().splitlines()
                self.assertEqual(len(lines), 1, result.stderr)
                self.assertIn(flag, lines[0])
        self.assertEqual(self.nginx.access_log_count(), 0)
        # Over gRPC, INVALID_ARGUMENT naming the field, and nothing runs either.
        controller = self.cluster(1)
        stub = self.rpc.ControllerStub(grpc.insecure_channel(controller.grpc))
        url = self.nginx.url
        grpc_cases = [
            ("spec.rate", self.pb.RunSpec(url=url, rate=-1, duration={"seconds": 1})),
            ("spec.users", self.pb.RunSpec(url=url, rate=10, duration={"seconds": 1}, users=[3])),
            ("spec.duration", self.pb.RunSpec(url=url, rate=10)),
            ("spec.stages", self.pb.RunSpec(url=url, rate=10, duration={"seconds": 1},
                                            stages=[self.pb.Stage(duration={"seconds": 1}, target=3)])),
            ("spec.pacing", self.pb.RunSpec(url=url, users=[1], duration={"seconds": 1}, pacing={"seconds": -2})),
            ("spec.arrivals", self.pb.RunSpec(url=url, users=[1], hits=[1], arrivals=2)),
        ]
        for field, spec in grpc_cases:
            with self.subTest(field=field):
                with self.assertRaises(grpc.RpcError) as error:
                    stub.StartRun(self.pb.StartRunRequest(run_id=str(uuid.uuid4()), spec=spec))
                self.assertEqual(error.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertTrue(error.exception.details().startswith(field),
                                error.exception.details())
        self.assertEqual(self.nginx.access_log_count(), 0)


if __name__ == "__main__":
    unittest.main()
