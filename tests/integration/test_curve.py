"""CurveZMQ on the worker protocol and the results stream, tried as an attacker would on loopback:
a worker without CURVE, a worker with a key the controller does not allow, and bytes replayed from
a capture are refused (and counted) while a run goes on exactly (nginx's count is the witness);
a sniffer on the loopback interface sees no URL, run id, test name or token in clear (and does
see them without CURVE, which shows that it works); the results stream is encrypted too.

The sniffer is a raw AF_PACKET socket on `lo`, so this test needs root (as CI has).

Run: LOADS_BIN_DIR=build/bin /usr/bin/python3 -m unittest -v test_curve   (from tests/integration)
"""

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TOKEN = "worker-token-in-the-clear?"


class Sniffer:
    """Every byte crossing the loopback interface while it is open."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self.packets = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                self.packets.append(self.sock.recv(65536))
            except socket.timeout:
                pass

    def stop(self):
        self.running = False
        self.thread.join()
        self.sock.close()
        return self.packets


def keygen(path):
    out = subprocess.run([harness.binary("loads-controller"), "keygen", path],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return re.search(r"^public: (\S{40})$", out, re.M).group(1)


class CurveTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="loads-curve-")
        self.addCleanup(lambda: shutil.rmtree(self.tmp, ignore_errors=True))
        self.controller_key = os.path.join(self.tmp, "controller.key")
        self.controller_public = keygen(self.controller_key)
        self.worker_key = os.path.join(self.tmp, "worker.key")
        self.worker_public = keygen(self.worker_key)
        self.allowed = os.path.join(self.tmp, "allowed")
        with open(self.allowed, "w") as f:
            f.write(f"# the standing workers\npublic: {self.worker_public}\n")
        self.token = os.path.join(self.tmp, "token")
        with open(self.token, "w") as f:
            f.write(TOKEN + "\n")
        self.nginx = harness.Nginx()
        self.nginx.start()
        self.addCleanup(self.nginx.stop)

    def controller(self, curve=True):
        extra = ["--max-local-workers", "0", "--token-file", self.token]
        if curve:
            extra += ["--curve-key-file", self.controller_key, "--curve-allow", self.allowed]
        controller = harness.Controller(extra=tuple(extra))
        self.addCleanup(controller.close)
        return controller

    def curve_worker_args(self, key=None):
        return ("--token-file", self.token, "--curve-server-key", self.controller_public,
                "--curve-key-file", key or self.worker_key)

    def sniffed_run(self, controller, worker_args):
        controller.start_workers(1, *worker_args)
        sniffer = Sniffer()
        try:
                result = harness.run_runner(["--controller", controller.grpc, "--url",
                                         self.nginx.url + "secret-path", "--hits", "20"],
                                        timeout=60)
        finally:
            captured = sniffer.stop()
        self.assertEqual(result.report["hits"], 20, harness.describe(result))
        return result, captured

    def test_keygen_writes_a_private_file_once(self):
        mode = stat.S_IMODE(os.stat(self.controller_key).st_mode)
        self.assertEqual(mode, 0o600)
        with open(self.controller_key) as f:
            text = f.read()
        self.assertIn(f"public: {self.controller_public}", text)
        self.assertRegex(text, r"secret: \S{40}")
        again = subprocess.run([harness.binary("loads-controller"), "keygen",
                                self.controller_key], capture_output=True, text=True, timeout=10)
        self.assertEqual(again.returncode, 1)
        self.assertIn("cannot create", again.stderr)
        # Bad key material is refused at start, without the key in the message.
        bad = os.path.join(self.tmp, "bad.key")
        with open(bad, "w") as f:
            f.write("secret: not-a-key\n")
        refused = subprocess.run([harness.binary("loads-controller"), "--no-state",
                                  "--curve-key-file", bad, "--curve-any-worker"],
                                 capture_output=True, text=True, timeout=10)
        self.assertEqual(refused.returncode, 2)
        self.assertIn("holds no \"secret: KEY\" line", refused.stderr)
        alone = subprocess.run([harness.binary("loads-controller"), "--no-state",
                                "--curve-key-file", self.controller_key],
                               capture_output=True, text=True, timeout=10)
        self.assertEqual(alone.returncode, 2)
        self.assertIn("say who may connect", alone.stderr)

    def test_strangers_are_refused_and_the_run_goes_on(self):
        controller = self.controller()
        controller.start_workers(1, *self.curve_worker_args())
        # A worker that speaks plain text, and one whose key is not allowed: never registered.
        stranger_key = os.path.join(self.tmp, "stranger.key")
        stranger_public = keygen(stranger_key)
        rogues = [subprocess.Popen([harness.binary("loads-worker"), "--controller",
                                    controller.zmq, "--id", name, *args],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for name, args in (("plain", ("--token-file", self.token)),
                                     ("stranger", self.curve_worker_args(stranger_key)))]
        try:
            result = harness.run_runner(["--controller", controller.grpc, "--url",
                                         self.nginx.url, "-u", "2", "--hits", "25"], timeout=60)
            ping = subprocess.run([harness.binary("loads-runner"), "--controller",
                                   controller.grpc, "--ping"], capture_output=True, text=True,
                                  timeout=10)
        finally:
            for rogue in rogues:
                harness.stop_process(rogue)
        self.assertEqual(result.code, 0, harness.describe(result) + controller.stderr)
        self.assertEqual(result.report["hits"], 50)
        self.assertEqual(self.nginx.access_log_count(), 50)
        self.assertEqual(result.report["run"]["workers"], ["w0"])
        self.assertIn("1 worker(s)", ping.stdout)
        self.assertIn(f"public key {stranger_public} is not allowed", controller.stderr)
        metrics = urllib.request.urlopen(controller.metrics, timeout=5).read().decode()
        refused = re.search(r'loads_messages_dropped_total\{reason="curve_refused"\} (\d+)',
                            metrics)
        self.assertIsNotNone(refused, metrics)
        self.assertGreaterEqual(int(refused.group(1)), 1)

    def test_a_sniffer_sees_nothing_in_clear(self):
        plain = self.controller(curve=False)
        result, captured = self.sniffed_run(plain, ("--token-file", self.token))
        run_id = result.report["run"]["id"].encode()
        # Without CURVE the sniffer does see the assignment and the results on the worker port.
        seen = tcp_payload(captured, int(plain.zmq.rsplit(":", 1)[1]))
        self.assertIn(b"secret-path", seen)
        self.assertIn(run_id, seen)
        plain.close()

        controller = self.controller()
        result, captured = self.sniffed_run(controller, self.curve_worker_args())
        run_id = result.report["run"]["id"].encode()
        # The gRPC API (plain text here) carries the URL between runner and controller; the
        # worker port must not: look at what crossed it only.
        zmq_port = int(controller.zmq.rsplit(":", 1)[1])
        worker_bytes = tcp_payload(captured, zmq_port)
        self.assertGreater(len(worker_bytes), 1_000)
        for secret in (b"secret-path", TOKEN.encode(), run_id, b"hello", b"snapshot"):
            self.assertNotIn(secret, worker_bytes, secret)

        # Bytes replayed from the capture on a new connection are refused; the controller and
        # its worker go on.
        with socket.create_connection(("127.0.0.1", zmq_port), timeout=5) as replay:
            replay.sendall(worker_bytes[:4096])
            time.sleep(0.5)
        again = harness.run_runner(["--controller", controller.grpc, "--url", self.nginx.url,
                                    "--hits", "5"], timeout=60)
        self.assertEqual(again.code, 0, harness.describe(again))
        self.assertEqual(again.report["run"]["workers"], ["w0"])

    def test_workers_the_controller_starts_get_their_own_key(self):
        controller = harness.Controller(extra=("--max-local-workers", "2", "--curve-key-file",
                                               self.controller_key, "--curve-allow",
                                               self.allowed))
        self.addCleanup(controller.close)
        result = harness.run_runner(["--controller", controller.grpc, "--url", self.nginx.url,
                                     "--workers", "2", "-u", "2", "--hits", "10"], timeout=60)
        self.assertEqual(result.code, 0, harness.describe(result) + controller.stderr)
        self.assertEqual(result.report["hits"], 20)
        self.assertEqual(self.nginx.access_log_count(), 20)
        self.assertNotIn("refused a CURVE connection", controller.stderr)

    def test_the_results_stream_is_encrypted(self):
        controller = self.controller()
        controller.start_workers(1, *self.curve_worker_args())
        context = zmq.Context()
        self.addCleanup(context.term)
        # A subscriber with an allowed key gets the snapshots; one without CURVE gets nothing.
        allowed_public, allowed_secret = self.worker_public, None
        with open(self.worker_key) as f:
            allowed_secret = re.search(r"secret: (\S{40})", f.read()).group(1)
        good = context.socket(zmq.SUB)
        good.curve_serverkey = self.controller_public.encode()
        good.curve_publickey = allowed_public.encode()
        good.curve_secretkey = allowed_secret.encode()
        plain = context.socket(zmq.SUB)
        for sub in (good, plain):
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(controller.publish)
            self.addCleanup(sub.close)
        time.sleep(0.5)
        result = harness.run_runner(["--controller", controller.grpc, "--url", self.nginx.url,
                                     "-u", "1", "-d", "2"], timeout=60)
        self.assertEqual(result.code, 0, harness.describe(result))
        received = {"good": 0, "plain": 0}
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            for name, sub in (("good", good), ("plain", plain)):
                try:
                    sub.recv_multipart(flags=zmq.NOBLOCK)
                    received[name] += 1
                except zmq.Again:
                    pass
            time.sleep(0.01)
        self.assertGreater(received["good"], 0, received)
        self.assertEqual(received["plain"], 0, received)


    def test_a_worker_with_a_stale_key_file_starts_again_when_it_changes(self):
        # A standing worker in Kubernetes may start before the controller has written its new
        # public key into the Secret the worker mounts: it cannot connect, and must not wait
        # for ever.
        controller = self.controller()
        stale = os.path.join(self.tmp, "stale.key")
        stale_public = keygen(stale)
        mounted = os.path.join(self.tmp, "public-key")
        with open(mounted, "w") as f:
            f.write(stale_public + "\n")
        def standing_worker():  # as its pod starts it, reading the key from the mounted file
            worker = subprocess.Popen(
                [harness.binary("loads-worker"), "--controller", controller.zmq, "--token-file",
                 self.token, "--curve-server-key-file", mounted, "--curve-key-file",
                 self.worker_key, "--id", "standing-1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            self.addCleanup(harness.stop_process, worker)
            return worker

        worker = standing_worker()
        time.sleep(3)
        self.assertIsNone(worker.poll(), "it exited while its key was unchanged")
        with open(mounted, "w") as f:  # as the kubelet updates a mounted Secret
            f.write(self.controller_public + "\n")
        self.assertEqual(worker.wait(timeout=10), 1)
        self.assertIn(f"the controller's public key in {mounted} has changed", worker.stderr.read())
        # Started again, it registers with the key now in the file.
        again = standing_worker()
        deadline = time.monotonic() + 15
        while "standing-1" not in harness.run_runner(
                ["--controller", controller.grpc, "--ping"]).stdout:
            self.assertLess(time.monotonic(), deadline, "the worker did not register")
            time.sleep(0.3)
        result = harness.run_runner(["--controller", controller.grpc, "--url", self.nginx.url,
                                     "--hits", "5"])
        self.assertEqual(result.code, 0, harness.describe(result))
        self.assertEqual(result.report["run"]["workers"], ["standing-1"])
        self.assertEqual(self.nginx.access_log_count(), 5)

def tcp_payload(packets, port):
    """The TCP payload bytes of the IPv4 packets to or from `port` in an AF_PACKET capture of lo
    (each: a 14-byte Ethernet header, then IP, then TCP)."""
    out = bytearray()
    for data in packets:
        if len(data) < 54 or data[12:14] != b"\x08\x00" or data[14] >> 4 != 4 or data[23] != 6:
            continue
        ihl = (data[14] & 0x0F) * 4
        total = int.from_bytes(data[16:18], "big")
        tcp = 14 + ihl
        sport = int.from_bytes(data[tcp:tcp + 2], "big")
        dport = int.from_bytes(data[tcp + 2:tcp + 4], "big")
        offset = (data[tcp + 12] >> 4) * 4
        if port in (sport, dport):
            out += data[tcp + offset:14 + total]
    return bytes(out)


if __name__ == "__main__":
    unittest.main()
