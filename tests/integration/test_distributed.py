"""Distributed runs: loads-controller with loads-worker processes, driven by loads-runner and by a
gRPC client in Python (stubs generated from proto/ with protoc and Debian's grpc_python_plugin).
Merged counts are compared with nginx's own access log.
"""

import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

import grpc
import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def generate_stubs(into):
    subprocess.run(["protoc", "-I", PROTO_DIR, f"--python_out={into}", f"--grpc_python_out={into}",
                    "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
                    os.path.join(PROTO_DIR, "loads", "v1", "controller.proto")], check=True)
    sys.path.insert(0, into)
    from loads.v1 import controller_pb2, controller_pb2_grpc  # noqa: E402
    return controller_pb2, controller_pb2_grpc


Controller = harness.Controller


class DistributedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stubs_dir = tempfile.mkdtemp(prefix="loads-stubs-")
        cls.pb, cls.rpc = generate_stubs(cls.stubs_dir)

    def setUp(self):
        self.controller = Controller()
        self.channel = grpc.insecure_channel(self.controller.grpc)
        self.stub = self.rpc.ControllerStub(self.channel)

    def tearDown(self):
        self.channel.close()
        self.controller.close()
        # Workers the controller launched are stopped with it: none is left behind.
        found = subprocess.run(["pgrep", "-f", "--", f"--controller {self.controller.zmq} "],
                               capture_output=True, text=True)
        self.assertIn(found.returncode, (0, 1), found.stderr)  # 1: nothing matched
        self.assertEqual(found.stdout.split(), [],
                         "workers left running after the controller stopped")

    def wait_workers(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = self.stub.ListWorkers(self.pb.ListWorkersRequest()).workers
            if len(workers) >= n:
                return workers
            time.sleep(0.05)
        raise AssertionError(f"fewer than {n} workers registered")

    def runner(self, args, timeout=60):
        return harness.run_runner(["--controller", self.controller.grpc, *args], timeout=timeout)

    def test_runner_on_three_workers_counts_exactly(self):
        self.controller.start_workers(3)
        self.wait_workers(3)
        with harness.Nginx() as nginx:
            result = self.runner(["example.TestWebSite.test_redirect", "--test-path",
                                  harness.examples_dir(), "--server-url", nginx.url,
                                  "-u", "6:3", "--hits", "5", "--workers", "3"])
            self.assertEqual(result.code, 0, harness.describe(result))
            self.assertEqual(result.report["hits"], 180)  # 9 users x 5 hits x 4 hops
            self.assertEqual(result.report["tests"]["success"], 45)
            self.assertEqual(nginx.access_log_count(), 180)
            self.assertIn("Hits: 180", result.stdout)
            self.assertIn("on 3 worker(s)", result.stdout)

    def test_grpc_client_starts_and_watches_a_run_with_launched_workers(self):
        with harness.Nginx() as nginx:
            run_id = str(uuid.uuid4())
            spec = self.pb.RunSpec(url=nginx.url, users=[4], hits=[25], workers=2)
            run = self.stub.StartRun(self.pb.StartRunRequest(run_id=run_id, spec=spec))
            # Accepted at once, assigned when the workers the launcher starts have registered.
            self.assertEqual(run.state, self.pb.RUN_STATE_ASSIGNING)
            updates = list(self.stub.WatchRun(self.pb.WatchRunRequest(run_id=run_id)))
            final = updates[-1]
            self.assertEqual(final.state, self.pb.RUN_STATE_DONE)
            self.assertEqual(len(final.workers), 2)  # started by the controller's launcher
            self.assertEqual(final.test, f"GET {nginx.url}")  # as the report names it
            for update in updates:  # the interval view is a valid snapshot, never above the total
                interval = msgpack.unpackb(update.interval_stats, raw=False, strict_map_key=False)
                self.assertLessEqual(interval["hits"], update.hits)
            report = json.loads(final.report_json)
            self.assertEqual(report["format"], "loads.report")
            self.assertEqual(report["hits"], 100)
            self.assertEqual(nginx.access_log_count(), 100)
            # StartRun is idempotent on the run id: no second run.
            again = self.stub.StartRun(self.pb.StartRunRequest(run_id=run_id, spec=spec))
            self.assertEqual(again.run_id, run_id)
            time.sleep(0.5)
            self.assertEqual(nginx.access_log_count(), 100)
            with self.assertRaises(grpc.RpcError) as changed:
                self.stub.StartRun(self.pb.StartRunRequest(
                    run_id=run_id, spec=self.pb.RunSpec(url=nginx.url, users=[1], hits=[1])))
            self.assertEqual(changed.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
            runs = self.stub.ListRuns(self.pb.ListRunsRequest()).runs
            self.assertEqual([r.run_id for r in runs], [run_id])

    def test_a_python_worker_joins_with_the_documented_protocol(self):
        latencies = [1000, 2500, 40_000, 1_000_000, 3_000_000, 3_000_000]
        worker = subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                          "python_worker.py"),
             self.controller.zmq, "py-1", *map(str, latencies)])
        try:
            self.wait_workers(1)
            run_id = str(uuid.uuid4())
            self.stub.StartRun(self.pb.StartRunRequest(
                run_id=run_id, spec=self.pb.RunSpec(url="http://127.0.0.1:9/", users=[1], hits=[1])))
            final = list(self.stub.WatchRun(self.pb.WatchRunRequest(run_id=run_id)))[-1]
            self.assertEqual(final.state, self.pb.RUN_STATE_DONE, final.error)
            self.assertEqual(list(final.workers), ["py-1"])
            report = json.loads(final.report_json)
            self.assertEqual(report["hits"], 6)  # the duplicate snapshot was not counted
            self.assertEqual(report["counters"], {"python": 6})
            self.assertEqual(report["status_codes"], {"200": 6})
            self.assertEqual(report["latency_seconds"]["min"], 1e-6)
            self.assertEqual(report["latency_seconds"]["max"], 3e-3)
            self.assertEqual([u["name"] for u in report["urls"]], ["GET /python"])
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    def test_cluster_operations_of_the_runner(self):
        self.controller.start_workers(2)
        self.wait_workers(2)
        ping = harness.run_runner(["--controller", self.controller.grpc, "--ping"])
        self.assertEqual(ping.code, 0, harness.describe(ping))
        self.assertIn("2 worker(s)", ping.stdout)
        self.assertIn(self.controller.zmq, ping.stdout)
        with harness.Nginx() as nginx:
            # --check-cluster: one execution on every idle worker.
            check = self.runner(["--check-cluster", "--url", nginx.url])
            self.assertEqual(check.code, 0, harness.describe(check))
            self.assertEqual(check.report["hits"], 2)
            self.assertIn("on 2 worker(s)", check.stdout)
            # --detach returns at once with the run id; --list-runs shows it; --stop stops that
            # run; --attach prints its report.
            detached = subprocess.run(
                [harness.runner_path(), "--controller", self.controller.grpc, "--url", nginx.url,
                 "-u", "2", "-d", "30", "--workers", "2", "--detach", "--project-name", "shop",
                 "--user-id", "ana", "--label", "team=perf"],
                capture_output=True, text=True, timeout=30)
            self.assertEqual(detached.returncode, 0, detached.stderr)
            run_id = detached.stdout.strip()
            listed = harness.run_runner(["--controller", self.controller.grpc, "--list-runs"])
            self.assertIn(run_id, listed.stdout)
            self.assertEqual(dict(self.stub.GetRun(self.pb.GetRunRequest(run_id=run_id)).spec.metadata),
                             {"project_name": "shop", "user_id": "ana", "team": "perf"})
            time.sleep(1)
            stopped = harness.run_runner(["--controller", self.controller.grpc, "--stop", run_id])
            self.assertEqual(stopped.code, 0, harness.describe(stopped))
            attached = self.runner(["--attach", run_id], timeout=30)
            self.assertEqual(attached.code, 130, harness.describe(attached))  # it was stopped
            self.assertEqual(attached.report["hits"], nginx.access_log_count() - 2)
            self.assertTrue(attached.report["interrupted"])
            missing = harness.run_runner(["--controller", self.controller.grpc, "--stop", "nope"])
            self.assertEqual(missing.code, 7)
            self.assertIn("no run nope", missing.stderr)

    def test_watch_shows_the_last_second(self):
        with harness.Nginx() as nginx:
            run_id = str(uuid.uuid4())
            spec = self.pb.RunSpec(url=nginx.url, users=[2], duration={"seconds": 3}, workers=1)
            self.stub.StartRun(self.pb.StartRunRequest(run_id=run_id, spec=spec))
            live = []
            for update in self.stub.WatchRun(self.pb.WatchRunRequest(run_id=run_id)):
                interval = msgpack.unpackb(update.interval_stats, raw=False, strict_map_key=False)
                live.append(interval["hits"])
            # While it ran, some one-second window saw requests, and none saw more than the run.
            self.assertGreater(max(live), 0)
            self.assertLess(max(live), nginx.access_log_count())

    def test_watch_sends_each_series_point_once(self):
        with harness.Nginx() as nginx:
            run_id = str(uuid.uuid4())
            spec = self.pb.RunSpec(url=nginx.url, users=[2], duration={"seconds": 5}, workers=1)
            self.stub.StartRun(self.pb.StartRunRequest(run_id=run_id, spec=spec))
            updates = list(self.stub.WatchRun(self.pb.WatchRunRequest(run_id=run_id)))
            logged = nginx.access_log_count()
        *live, final = updates
        self.assertEqual(updates[0].series_from, 0)
        # A client keeps what it was sent and appends: no gap, no point sent twice.
        kept, sent = [], 0
        for update in live:
            self.assertLessEqual(update.series_from, len(kept))
            if update.series_from:
                self.assertEqual(update.series_from, len(kept), "a point was skipped or resent")
            kept = kept[:update.series_from] + [p.second for p in update.series]
            sent += len(update.series)
        self.assertTrue(any(u.series_from > 0 for u in live), [u.series_from for u in live])
        # The last update, once the run is over, has every point: the report's and nginx's.
        self.assertEqual(final.series_from, 0)
        full = [p.second for p in final.series]
        self.assertEqual(full[:len(kept)], kept)
        self.assertEqual(sum(p.hits for p in final.series), logged)
        # Sent once each, where whole series would have sent the points again every update.
        resent = sum(u.series_from + len(u.series) for u in live)
        self.assertLessEqual(sent, len(kept))
        self.assertLess(sent, resent)

    def test_a_client_of_the_older_proto_still_runs_and_an_unknown_field_is_refused(self):
        # Before durations were google.protobuf.Durations, RunSpec.duration was a double at
        # field 6 and timeout_ms an int64 at field 11: such a client's bytes, made by hand.
        def legacy(url, extra=b""):
            def key(field, wire):  # fields below 16: a one-byte tag
                return bytes([field << 3 | wire])
            body = key(3, 2) + bytes([len(url)]) + url.encode()
            body += key(4, 0) + bytes([2])                      # users: 2
            body += key(6, 1) + struct.pack("<d", 1.5)          # duration: 1.5 s
            body += key(11, 0) + bytes([0xe8, 0x07])            # timeout_ms: 1000
            return self.pb.RunSpec.FromString(body + extra)
        with harness.Nginx() as nginx:
            run_id = str(uuid.uuid4())
            self.stub.StartRun(self.pb.StartRunRequest(run_id=run_id, spec=legacy(nginx.url)))
            final = list(self.stub.WatchRun(self.pb.WatchRunRequest(run_id=run_id)))[-1]
            self.assertEqual(final.state, self.pb.RUN_STATE_DONE, final.error)
            # Read as Durations, and the run lasted them.
            self.assertEqual((final.spec.duration.seconds, final.spec.duration.nanos), (1, 500_000_000))
            self.assertEqual(final.spec.timeout.seconds, 1)
            report = json.loads(final.report_json)
            self.assertGreaterEqual(report["duration_seconds"], 1.5)
            self.assertLess(report["duration_seconds"], 4)
            self.assertEqual(final.hits, nginx.access_log_count())
            with self.assertRaises(grpc.RpcError) as error:
                self.stub.StartRun(self.pb.StartRunRequest(
                    run_id=str(uuid.uuid4()),
                    spec=legacy(nginx.url, extra=bytes([0xb8, 0x06, 1]))))  # field 103: 1
            self.assertEqual(error.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("spec: unknown field 103", error.exception.details())

    def test_the_published_stream_carries_every_snapshot_once(self):
        import zmq
        context = zmq.Context()
        subscriber = context.socket(zmq.SUB)
        subscriber.connect(self.controller.publish)
        run_id = str(uuid.uuid4())
        subscriber.setsockopt(zmq.SUBSCRIBE, run_id.encode())
        time.sleep(0.3)  # let the subscription reach the publisher
        try:
            with harness.Nginx() as nginx:
                spec = self.pb.RunSpec(url=nginx.url, users=[4],
                                       duration={"seconds": 2, "nanos": 500_000_000}, workers=2)
                self.stub.StartRun(self.pb.StartRunRequest(run_id=run_id, spec=spec))
                final = list(self.stub.WatchRun(self.pb.WatchRunRequest(run_id=run_id)))[-1]
                snapshots = []
                while subscriber.poll(1000):
                    topic, frame = subscriber.recv_multipart()
                    self.assertEqual(topic.decode(), run_id)
                    snapshots.append(msgpack.unpackb(frame, raw=False, strict_map_key=False))
            by_worker = {}
            for snap in snapshots:
                by_worker.setdefault(snap["worker"], []).append(snap["seq"])
            self.assertEqual(set(by_worker), set(final.workers))
            for seqs in by_worker.values():
                self.assertEqual(seqs, list(range(1, len(seqs) + 1)))
            self.assertEqual(sum(s["hits"] for s in snapshots), final.hits)
            self.assertEqual(sum(1 for s in snapshots if s["final"]), 2)
        finally:
            subscriber.close()
            context.term()

    def test_garbage_on_every_port_is_survived(self):
        import socket
        import zmq
        context = zmq.Context()
        try:
            # Well-formed ZeroMQ, bad content: not msgpack, wrong types, unknown runs and workers,
            # multipart, a snapshot from nobody.
            dealer = context.socket(zmq.DEALER)
            dealer.setsockopt(zmq.ROUTING_ID, b"intruder")
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(self.controller.zmq)
            for frame in [b"", b"\xc1", b"x" * 100_000, b"\x93\x01\x02\x03",
                          b"\x82\xa1v\x01\xa4type\xa5start",
                          b"\x82\xa1v\x01\xa4type\xa9heartbeat"]:
                dealer.send(frame)
            dealer.send_multipart([b"a", b"b", b"c"])
            # Raw bytes that are not even ZeroMQ or HTTP/2, to every port.
            for endpoint in [self.controller.zmq, self.controller.publish,
                             "tcp://" + self.controller.grpc]:
                host, port = endpoint.rsplit("/", 1)[1].rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=5) as raw:
                    raw.sendall(b"\xff" * 64 + b"GET / HTTP/1.0\r\n\r\n" + bytes(range(256)))
            time.sleep(0.5)
            dealer.close()
        finally:
            context.term()
        self.assertIsNone(self.controller.process.poll(), "the controller died")
        # Still serving: a run on a new worker completes with exact counts.
        self.controller.start_workers(1)
        self.wait_workers(1)
        with harness.Nginx() as nginx:
            result = self.runner(["--url", nginx.url, "-u", "2", "--hits", "5"])
            self.assertEqual(result.code, 0, harness.describe(result))
            self.assertEqual(result.report["hits"], nginx.access_log_count())

    def test_api_token_decides_who_may_submit_runs(self):
        with tempfile.NamedTemporaryFile("w", delete=False) as f:
            f.write("api-s3cret\n")
        secured = Controller(extra=("--max-local-workers", "1", "--api-token-file", f.name))
        try:
            channel = grpc.insecure_channel(secured.grpc)
            stub = self.rpc.ControllerStub(channel)
            with self.assertRaises(grpc.RpcError) as denied:
                stub.ListWorkers(self.pb.ListWorkersRequest())
            self.assertEqual(denied.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
            stub.ListWorkers(self.pb.ListWorkersRequest(),
                             metadata=[("authorization", "Bearer api-s3cret")])
            channel.close()
            with harness.Nginx() as nginx:
                refused = harness.run_runner(["--controller", secured.grpc, "--url", nginx.url])
                self.assertEqual(refused.code, 7, harness.describe(refused))
                self.assertIn("needs a token", refused.stderr)
                allowed = harness.run_runner(["--controller", secured.grpc, "--token-file", f.name,
                                              "--url", nginx.url, "-u", "2", "--hits", "3"])
                self.assertEqual(allowed.code, 0, harness.describe(allowed))
                self.assertEqual(nginx.access_log_count(), 6)
        finally:
            secured.close()
            os.unlink(f.name)

    def test_open_addresses_need_tokens(self):
        local = ["--grpc", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:0", "--publish",
                 "tcp://127.0.0.1:0", "--metrics", "127.0.0.1:0", "--no-state"]
        for args, expected in [(["--grpc", "0.0.0.0:0"], "without --api-token-file"),
                               (["--zmq", "tcp://*:0"], "without --token-file"),
                               (["--metrics", "0.0.0.0:0"],
                                "refusing to serve /metrics on 0.0.0.0:0 without "
                                "--metrics-token-file (or --insecure)"),
                               (["--publish", "tcp://0.0.0.0:0"],
                                "refusing to publish results on tcp://0.0.0.0:0 in clear text "
                                "without --curve-key-file (or --insecure)")]:
            with self.subTest(args=args):
                result = subprocess.run([harness.binary("loads-controller"), *local, *args],
                                        capture_output=True, text=True, timeout=10)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn(expected, result.stderr)
        # The worker's own /metrics too.
        result = subprocess.run([harness.binary("loads-worker"), "--controller",
                                 "tcp://127.0.0.1:1", "--metrics", "0.0.0.0:0"],
                                capture_output=True, text=True, timeout=10)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("refusing to serve /metrics on 0.0.0.0:0 without --metrics-token-file "
                      "(or --insecure)", result.stderr)

    def test_invalid_requests_name_the_field(self):
        cases = [
            (self.pb.StartRunRequest(run_id="", spec=self.pb.RunSpec(url="http://h/", users=[1], hits=[1])), "run_id"),
            (self.pb.StartRunRequest(run_id="a", spec=self.pb.RunSpec(url="http://h/", hits=[1])), "spec.users"),
            (self.pb.StartRunRequest(run_id="a", spec=self.pb.RunSpec(url="http://h/", users=[1])), "spec.hits"),
            (self.pb.StartRunRequest(run_id="a", spec=self.pb.RunSpec(url="nope", users=[1], hits=[1])), "spec.url"),
            (self.pb.StartRunRequest(run_id="a", spec=self.pb.RunSpec(users=[1], hits=[1])), "spec.url"),
            (self.pb.StartRunRequest(run_id="a", spec=self.pb.RunSpec(url="http://h/", users=[1], hits=[1], workers=5000)), "spec.workers"),
            (self.pb.StartRunRequest(run_id="a", spec=self.pb.RunSpec(url="http://h/", users=[1], hits=[1], thresholds=["p99<1"])),
             "spec.thresholds: 'p99<1': a latency needs its unit"),
            # A scenario with a number beyond a double: refused, and the controller stays up.
            (self.pb.StartRunRequest(run_id="a", spec=self.pb.RunSpec(scenario='{"steps": [{"think": 1e999}]}', users=[1], hits=[1])),
             "number overflow parsing '1e999'"),
            (self.pb.StartRunRequest(run_id="a", spec=self.pb.RunSpec(url="http://h/", users=[1], hits=[1], thresholds=["errors==0 abort:soon"])),
             "spec.thresholds: 'errors==0 abort:soon'"),
        ]
        for request, field in cases:
            with self.assertRaises(grpc.RpcError) as error:
                self.stub.StartRun(request)
            self.assertEqual(error.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn(field, error.exception.details())
        with self.assertRaises(grpc.RpcError) as error:
            self.stub.GetRun(self.pb.GetRunRequest(run_id="unknown"))
        self.assertEqual(error.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_a_killed_worker_degrades_the_run_which_completes(self):
        self.controller.start_workers(2)
        self.wait_workers(2)
        with harness.Nginx() as nginx:
            process = harness.RunnerProcess(
                ["--controller", self.controller.grpc, "--url", nginx.url, "-u", "4", "-d", "4",
                 "--workers", "2"])
            time.sleep(1.5)
            os.kill(self.controller.workers[0].pid, signal.SIGKILL)
            result = process.wait(timeout=30)
            # Partial: the lost worker's results from its loss on are missing (exit 8).
            self.assertEqual(result.code, 8, harness.describe(result))
            self.assertIn("Lost: w0", result.stdout)
            self.assertEqual(result.report["run"]["state"], "partial")
            self.assertEqual(result.report["run"]["lost_workers"], ["w0"])
            self.assertGreater(result.report["hits"], 0)
            self.assertLessEqual(result.report["hits"], nginx.access_log_count())

    def test_ctrl_c_stops_the_run_on_the_controller(self):
        self.controller.start_workers(1)
        self.wait_workers(1)
        with harness.Nginx() as nginx:
            process = harness.RunnerProcess(
                ["--controller", self.controller.grpc, "--url", nginx.url, "-u", "2", "-d", "30"])
            time.sleep(1.5)
            result, stop_time = process.interrupt_and_wait(timeout=15)
            self.assertLess(stop_time, 5)
            self.assertEqual(result.code, 130, harness.describe(result))
            self.assertIn("Hits:", result.stdout)
            self.assertEqual(result.report["hits"], nginx.access_log_count())


if __name__ == "__main__":
    unittest.main()
