"""Distributed runs under faults, with nginx's access log as the ledger: a controller killed and
restarted mid-run, frozen workers, network cuts (a TCP proxy that stops forwarding), SIGTERM on a
worker, a lost worker that returns, slow, stuck and large test libraries, a worker with a wrong
token, invalid requests, and the health and metrics endpoints under hostile clients.

The rule every test checks: a run either counts exactly what the server saw and says DONE (exit
0), or says it is partial or failed (non-zero exit), and once over its numbers never change.

LOADS_RESTART_REPEAT=N repeats the restart test N times (ctest's `long` label runs it 5 times).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
import uuid

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_distributed import generate_stubs  # noqa: E402


def sdk_dir():
    return os.path.join(harness.bin_dir(), "..", "tests", "sdk")


class FaultsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stubs_dir = tempfile.mkdtemp(prefix="loads-stubs-")
        cls.pb, cls.rpc = generate_stubs(cls.stubs_dir)

    def setUp(self):
        self.controllers = []
        self.nginx = harness.Nginx()
        self.nginx.start()

    def tearDown(self):
        for controller in self.controllers:
            controller.close()
        self.nginx.stop()

    def controller(self, *extra, worker_timeout="1.5"):
        controller = harness.Controller(extra=("--max-local-workers", "0", *extra),
                                        worker_timeout=worker_timeout)
        self.controllers.append(controller)
        return controller

    def stub(self, controller):
        channel = grpc.insecure_channel(controller.grpc)
        self.addCleanup(channel.close)
        return self.rpc.ControllerStub(channel)

    def runner(self, controller, *args):
        return harness.RunnerProcess(["--controller", controller.grpc, *map(str, args)])

    def assert_final_numbers_stay(self, controller, result, wait=3.0):
        """The run as the controller keeps it, a while after the end, equals the report."""
        time.sleep(wait)
        run = self.stub(controller).GetRun(self.pb.GetRunRequest(run_id=result.report["run"]["id"]))
        self.assertEqual(run.hits, result.report["hits"])
        self.assertEqual(run.executions, result.report["tests"]["total"])
        self.assertEqual(json.loads(run.report_json)["hits"], result.report["hits"])

    # -- the controller --------------------------------------------------------------------

    def test_a_controller_killed_mid_run_and_restarted_loses_nothing(self):
        repeat = int(os.environ.get("LOADS_RESTART_REPEAT", "1"))
        for attempt in range(repeat):
            with self.subTest(attempt=attempt):
                self.restart_mid_run()

    def restart_mid_run(self):
        controller = self.controller()
        controller.start_workers(3)
        before = self.nginx.access_log_count()
        process = self.runner(controller, "--url", self.nginx.url, "-u", 6, "-d", 12, "--workers", 3)
        time.sleep(3)
        controller.kill()
        time.sleep(2)
        controller.restart()
        result = process.wait(timeout=60)
        self.assertEqual(result.code, 0, harness.describe(result) + controller.stderr)
        served = self.nginx.access_log_count() - before
        self.assertGreater(served, 0)
        # Exactly what nginx saw: nothing lost in the outage, nothing counted twice.
        self.assertEqual(result.report["hits"], served, harness.describe(result))
        self.assertEqual(result.report["run"]["state"], "done")
        self.assertEqual(result.report["run"]["controller_restarts"], 1)
        self.assertGreater(result.report["run"]["unreachable_seconds"], 1)
        self.assertIn("Controller restarts: 1", result.stdout)
        self.assertIn(f"Hits: {served}", result.stdout)
        # The series went on across the restart: every hit in one of its seconds, and the
        # seconds of the run (12 s of load) all there.
        series = result.report["series"]
        self.assertEqual(sum(series["hits"]), served, series)
        self.assertGreaterEqual(len(series["seconds"]), 12, series)
        self.assertEqual(series["seconds"], list(range(len(series["seconds"]))))
        self.assert_final_numbers_stay(controller, result, wait=0.5)
        controller.close()
        self.controllers.remove(controller)

    def test_runs_survive_a_restart_and_are_listed_newest_first(self):
        controller = self.controller()
        controller.start_workers(1)
        ids = []
        for _ in range(3):
            result = harness.run_runner(["--controller", controller.grpc, "--url", self.nginx.url,
                                         "--hits", "2"])
            self.assertEqual(result.code, 0, harness.describe(result))
            ids.append(result.report["run"]["id"])
        controller.kill()
        controller.restart()
        stub = self.stub(controller)
        page = stub.ListRuns(self.pb.ListRunsRequest(page_size=2))
        self.assertEqual([r.run_id for r in page.runs], ids[::-1][:2])
        self.assertNotEqual(page.next_page_token, "")
        rest = stub.ListRuns(self.pb.ListRunsRequest(page_size=2, page_token=page.next_page_token))
        self.assertEqual([r.run_id for r in rest.runs], ids[:1])
        self.assertEqual(rest.next_page_token, "")
        done = stub.ListRuns(self.pb.ListRunsRequest(state=self.pb.RUN_STATE_DONE))
        self.assertEqual(len(done.runs), 3)
        self.assertEqual(stub.GetRun(self.pb.GetRunRequest(run_id=ids[0])).hits, 2)
        failed = stub.ListRuns(self.pb.ListRunsRequest(state=self.pb.RUN_STATE_FAILED))
        self.assertEqual(len(failed.runs), 0)
        with self.assertRaises(grpc.RpcError) as bad:
            stub.ListRuns(self.pb.ListRunsRequest(page_token="junk"))
        self.assertEqual(bad.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        # The report of a run from before the restart is whole.
        report = json.loads(stub.GetRun(self.pb.GetRunRequest(run_id=ids[1])).report_json)
        self.assertEqual(report["hits"], 2)

    # -- workers ---------------------------------------------------------------------------

    def test_frozen_workers_fail_the_run_and_its_numbers_stay(self):
        controller = self.controller()
        controller.start_workers(3)
        process = self.runner(controller, "--url", self.nginx.url, "-u", 3, "-d", 8, "--workers", 3)
        time.sleep(2)
        for worker in controller.workers:
            os.kill(worker.pid, signal.SIGSTOP)
        time.sleep(5)
        for worker in controller.workers:
            os.kill(worker.pid, signal.SIGCONT)
        result = process.wait(timeout=60)
        self.assertNotEqual(result.code, 0, harness.describe(result))
        self.assertIn(result.report["run"]["state"], ("failed", "partial"))
        self.assertIn("every worker was lost", result.stderr)
        self.assertLessEqual(result.report["hits"], self.nginx.access_log_count())
        # The workers, back, keep going for a moment and send late results: not counted.
        self.assert_final_numbers_stay(controller, result)

    def test_a_cut_shorter_than_the_loss_timeout_loses_nothing(self):
        controller = self.controller(worker_timeout="3")
        proxy = harness.TcpProxy(int(controller.zmq.rsplit(":", 1)[1]))
        self.addCleanup(proxy.close)
        controller.start_workers(2, endpoint=proxy.endpoint)
        process = self.runner(controller, "--url", self.nginx.url, "-u", 2, "-d", 6, "--workers", 2)
        time.sleep(2)
        proxy.cut()
        time.sleep(1)
        proxy.restore()
        result = process.wait(timeout=60)
        self.assertEqual(result.code, 0, harness.describe(result))
        self.assertEqual(result.report["run"]["state"], "done")
        self.assertEqual(result.report["hits"], self.nginx.access_log_count())

    def test_a_cut_longer_than_the_loss_timeout_makes_the_run_partial(self):
        controller = self.controller()
        proxy = harness.TcpProxy(int(controller.zmq.rsplit(":", 1)[1]))
        self.addCleanup(proxy.close)
        controller.start_workers(1, endpoint=proxy.endpoint)  # w0, behind the proxy
        controller.start_workers(1)  # w1, direct
        # 1000 executions of 5 ms per user: about 5 s.
        with harness.DemoTarget() as target:
            process = self.runner(controller, "--url", target.url + "delay/5", "-u", 2,
                                  "--hits", 1000, "--workers", 2)
            time.sleep(1.5)
            proxy.cut()
            time.sleep(4)
            proxy.restore()
            result = process.wait(timeout=90)
        self.assertEqual(result.code, 8, harness.describe(result))  # partial
        self.assertEqual(result.report["run"]["state"], "partial")
        self.assertEqual(result.report["run"]["lost_workers"], ["w0"])
        missing = result.report["run"]["missing_executions"]
        self.assertGreater(missing, 0)
        self.assertEqual(result.report["tests"]["total"] + missing, 2000)
        self.assertIn("planned executions not reported", result.stdout)
        self.assert_final_numbers_stay(controller, result)

    def test_sigterm_to_a_worker_mid_run_keeps_the_run_exact(self):
        controller = self.controller()
        controller.start_workers(2)
        process = self.runner(controller, "--url", self.nginx.url, "-u", 4, "-d", 6, "--workers", 2)
        time.sleep(2)
        controller.workers[0].send_signal(signal.SIGTERM)
        self.assertEqual(controller.workers[0].wait(timeout=15), 0)
        result = process.wait(timeout=60)
        self.assertEqual(result.code, 0, harness.describe(result))
        self.assertEqual(result.report["hits"], self.nginx.access_log_count())
        self.assertEqual(result.report["run"]["state"], "done")
        self.assertEqual(result.report["run"]["left_workers"], ["w0"])
        self.assertEqual(result.report["run"]["lost_workers"], [])
        self.assertIn("Left early: w0", result.stdout)

    def test_a_lost_worker_that_returns_is_registered_at_once(self):
        controller = self.controller()
        controller.start_workers(1)
        stub = self.stub(controller)
        os.kill(controller.workers[0].pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while stub.ListWorkers(self.pb.ListWorkersRequest()).workers and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(len(stub.ListWorkers(self.pb.ListWorkersRequest()).workers), 0)
        os.kill(controller.workers[0].pid, signal.SIGCONT)
        back = time.monotonic()
        while not stub.ListWorkers(self.pb.ListWorkersRequest()).workers:
            self.assertLess(time.monotonic() - back, 3, "the worker did not come back in 3 s")
            time.sleep(0.05)

    def test_a_worker_with_a_wrong_token_is_told_and_exits(self):
        with tempfile.NamedTemporaryFile("w", suffix=".token", delete=False) as good, \
                tempfile.NamedTemporaryFile("w", suffix=".token", delete=False) as bad:
            good.write("s3cret\n")
            bad.write("guess\n")
        self.addCleanup(os.unlink, good.name)
        self.addCleanup(os.unlink, bad.name)
        controller = self.controller("--token-file", good.name)
        worker = subprocess.Popen([harness.binary("loads-worker"), "--controller", controller.zmq,
                                   "--token-file", bad.name], stderr=subprocess.PIPE, text=True)
        try:
            self.assertEqual(worker.wait(timeout=10), 3)
            self.assertIn("refused this worker: wrong token", worker.stderr.read())
        finally:
            harness.stop_process(worker)
            worker.stderr.close()

    # -- test libraries --------------------------------------------------------------------

    def test_a_library_slower_to_load_than_the_loss_timeout_runs(self):
        controller = self.controller()
        controller.start_workers(1)
        result = harness.run_runner(["--controller", controller.grpc, "slow_library.Slow.get",
                                     "--test-path", sdk_dir(), "--server-url", self.nginx.url,
                                     "-u", "2", "--hits", "3"], timeout=60)
        self.assertEqual(result.code, 0, harness.describe(result))
        self.assertEqual(result.report["hits"], 6)
        self.assertEqual(self.nginx.access_log_count(), 6)
        self.assertEqual(result.report["run"]["lost_workers"], [])

    def test_a_stuck_library_fails_the_run_with_the_reason(self):
        controller = self.controller()
        controller.start_workers(1, "--load-timeout", "2")
        started = time.monotonic()
        result = harness.run_runner(["--controller", controller.grpc, "stuck_library.Slow.get",
                                     "--test-path", sdk_dir(), "--server-url", self.nginx.url],
                                    timeout=60)
        self.assertLess(time.monotonic() - started, 20)
        self.assertEqual(result.code, 1, harness.describe(result))
        self.assertEqual(result.report["run"]["state"], "failed")
        self.assertIn("took more than 2 s", result.stderr)
        # The worker, stuck in the loader, leaves to start clean.
        self.assertEqual(controller.workers[0].wait(timeout=10), 1)

    def test_a_library_larger_than_grpcs_default_limit_is_shipped(self):
        path = os.path.join(sdk_dir(), "big_library.so")
        self.assertGreater(os.path.getsize(path), 5 * 1024 * 1024)
        controller = self.controller()
        controller.start_workers(1)
        result = harness.run_runner(["--controller", controller.grpc, "big_library.Big.get",
                                     "--test-path", sdk_dir(), "--server-url", self.nginx.url,
                                     "--hits", "4"], timeout=60)
        self.assertEqual(result.code, 0, harness.describe(result))
        self.assertEqual(result.report["hits"], 4)

    # -- the API ---------------------------------------------------------------------------

    def test_start_run_checks_every_field(self):
        controller = self.controller()
        stub = self.stub(controller)
        url = self.nginx.url
        cases = [
            ("run_id", dict(run_id="a\nb", spec=self.pb.RunSpec(url=url, users=[1], hits=[1]))),
            ("run_id", dict(run_id="x" * 201, spec=self.pb.RunSpec(url=url, users=[1], hits=[1]))),
            ("spec.hits", dict(spec=self.pb.RunSpec(url=url, users=[1], hits=[10**13]))),
            ("spec.duration", dict(spec=self.pb.RunSpec(url=url, users=[1],
                                                        duration={"seconds": 10**9}))),
            ("spec.loss_policy", dict(spec=self.pb.RunSpec(url=url, users=[1], hits=[1],
                                                           loss_policy=7))),
            ("spec.workers", dict(spec=self.pb.RunSpec(url=url, users=[1], hits=[1], workers=5000))),
            ("spec.test_library", dict(spec=self.pb.RunSpec(test="m.C.t", users=[1], hits=[1]))),
            ("spec.metadata", dict(spec=self.pb.RunSpec(url=url, users=[1], hits=[1],
                                                        metadata={"k": "line\nbreak"}))),
            ("spec.timeout", dict(spec=self.pb.RunSpec(url=url, users=[1], hits=[1],
                                                       timeout={"seconds": -1}))),
        ]
        for field, fields in cases:
            with self.subTest(field=field):
                fields.setdefault("run_id", str(uuid.uuid4()))
                with self.assertRaises(grpc.RpcError) as error:
                    stub.StartRun(self.pb.StartRunRequest(**fields))
                self.assertEqual(error.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertTrue(error.exception.details().startswith(field),
                                error.exception.details())
        self.assertEqual(self.nginx.access_log_count(), 0)

    def test_health_serves_the_service_by_name(self):
        controller = self.controller()
        channel = grpc.insecure_channel(controller.grpc)
        self.addCleanup(channel.close)
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
        for service in (b"", b"loads.v1.Controller"):
            # HealthCheckRequest{service}; the answer HealthCheckResponse{status: SERVING (1)}.
            answer = check(bytes([0x0a, len(service)]) + service if service else b"", timeout=5)
            self.assertEqual(answer, b"\x08\x01", service)

    def test_half_sent_requests_do_not_keep_metrics_from_prometheus(self):
        controller = self.controller()
        host, port = controller.metrics.split("//")[1].split("/")[0].rsplit(":", 1)
        stalled = []
        for _ in range(4):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the end
            stalled.append(s)
        try:
            started = time.monotonic()
            with urllib.request.urlopen(controller.metrics, timeout=5) as response:
                self.assertEqual(response.status, 200)
                self.assertIn(b"loads_", response.read())
            self.assertLess(time.monotonic() - started, 3)
        finally:
            for s in stalled:
                s.close()


if __name__ == "__main__":
    unittest.main()
