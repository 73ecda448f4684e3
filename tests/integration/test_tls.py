"""The gRPC API over TLS and mTLS, tried as an attacker would on loopback, with real gRPC clients
(Python's grpcio) and loads-runner: a plain-text client, a client trusting another CA, a client
without a certificate under mTLS are refused; a rotated certificate is served without a restart
and without dropping the run in progress (nginx's count is the witness); the plain health port
answers probes and nothing else; a read-only token may look but not start or stop runs.

Certificates are made for each test with the openssl command.

Run: LOADS_BIN_DIR=build/bin /usr/bin/python3 -m unittest -v test_tls   (from tests/integration)
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_distributed import generate_stubs  # noqa: E402


class Pki:
    """A throwaway CA that signs server and client certificates (ECDSA P-256, 1 day)."""

    def __init__(self, directory, name):
        self.dir = directory
        self.name = name
        self.ca_key = self.path(f"{name}-ca.key")
        self.ca = self.path(f"{name}-ca.crt")
        self.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                     "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "1",
                     "-subj", f"/CN={name} test CA")

    def path(self, name):
        return os.path.join(self.dir, name)

    def openssl(self, *args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    def issue(self, name, san=None):
        """(certificate, key) paths of a certificate for `name`, with subjectAltName `san`."""
        key, csr, cert = (self.path(f"{name}.{ext}") for ext in ("key", "csr", "crt"))
        self.openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                     "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        extensions = self.path(f"{name}.ext")
        with open(extensions, "w") as f:
            f.write(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
        self.openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                     "-CAcreateserial", "-out", cert, "-days", "1", "-extfile", extensions)
        return cert, key


def read(path):
    with open(path, "rb") as f:
        return f.read()


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stubs_dir = tempfile.mkdtemp(prefix="loads-stubs-")
        cls.pb, cls.rpc = generate_stubs(cls.stubs_dir)
        # The standard health service's contract (grpc.health.v1), as probes call it; Debian's
        # python3-grpcio has no stubs of it.
        os.makedirs(os.path.join(cls.stubs_dir, "grpc_health_probe"), exist_ok=True)
        proto = os.path.join(cls.stubs_dir, "grpc_health_probe", "health.proto")
        with open(proto, "w") as f:
            f.write('syntax = "proto3";\npackage grpc.health.v1;\n'
                    "message HealthCheckRequest { string service = 1; }\n"
                    "message HealthCheckResponse {\n"
                    "  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; "
                    "SERVICE_UNKNOWN = 3; }\n  ServingStatus status = 1;\n}\n"
                    "service Health { rpc Check(HealthCheckRequest) returns "
                    "(HealthCheckResponse); }\n")
        subprocess.run(["protoc", "-I", cls.stubs_dir, f"--python_out={cls.stubs_dir}",
                        f"--grpc_python_out={cls.stubs_dir}",
                        "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin", proto],
                       check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.stubs_dir, ignore_errors=True)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="loads-tls-")
        self.addCleanup(lambda: shutil.rmtree(self.tmp, ignore_errors=True))
        self.servers = Pki(self.tmp, "server")
        self.clients = Pki(self.tmp, "client")
        self.cert, self.key = self.servers.issue("controller", "IP:127.0.0.1,DNS:localhost")
        # The files the controller watches: copies, so that a test can rotate them.
        self.served_cert = os.path.join(self.tmp, "tls.crt")
        self.served_key = os.path.join(self.tmp, "tls.key")
        shutil.copy(self.cert, self.served_cert)
        shutil.copy(self.key, self.served_key)

    def controller(self, *extra):
        controller = harness.Controller(extra=("--max-local-workers", "0", "--tls-cert",
                                               self.served_cert, "--tls-key", self.served_key,
                                               *extra))
        self.addCleanup(controller.close)
        controller.client_args = ("--tls-ca", self.servers.ca)
        return controller

    def stub(self, address, credentials=None, token=None):
        channel = (grpc.secure_channel(address, credentials) if credentials
                   else grpc.insecure_channel(address))
        self.addCleanup(channel.close)
        stub = self.rpc.ControllerStub(channel)
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        return stub, metadata

    def list_runs(self, address, credentials=None, token=None):
        stub, metadata = self.stub(address, credentials, token)
        return stub.ListRuns(self.pb.ListRunsRequest(), timeout=5, metadata=metadata)

    def assert_refused(self, address, credentials, code=grpc.StatusCode.UNAVAILABLE, token=None):
        with self.assertRaises(grpc.RpcError) as refused:
            self.list_runs(address, credentials, token)
        self.assertEqual(refused.exception.code(), code, refused.exception.details())
        return refused.exception

    def test_tls_refuses_plain_text_and_strangers(self):
        controller = self.controller()
        trusted = grpc.ssl_channel_credentials(root_certificates=read(self.servers.ca))
        self.assertEqual(list(self.list_runs(controller.grpc, trusted).runs), [])
        # Plain text, and a client that trusts another CA (a man in the middle's view): refused
        # in the handshake, before any RPC.
        self.assert_refused(controller.grpc, None)
        other = Pki(self.tmp, "other")
        self.assert_refused(controller.grpc,
                            grpc.ssl_channel_credentials(root_certificates=read(other.ca)))
        # loads-runner over TLS runs a real run.
        with harness.Nginx() as nginx:
            controller.start_workers(1)
            result = harness.run_runner(["--controller", controller.grpc, "--tls-ca",
                                         self.servers.ca, "--url", nginx.url, "--hits", "7"],
                                        timeout=60)
            self.assertEqual(result.code, 0, harness.describe(result) + controller.stderr)
            self.assertEqual(result.report["hits"], nginx.access_log_count())
            self.assertEqual(result.report["hits"], 7)
            # A runner that forgot --tls-ca is told why, not left waiting.
            plain = harness.run_runner(["--controller", controller.grpc, "--url", nginx.url,
                                        "--hits", "1", "--reconnect-timeout", "2"], timeout=60)
            self.assertEqual(plain.code, 7, harness.describe(plain))
            self.assertIn("a controller that serves TLS closes plain-text connections: is "
                          "--tls-ca missing?", plain.stderr)
            stranger = harness.run_runner(["--controller", controller.grpc, "--url", nginx.url,
                                           "--hits", "1", "--tls-ca", other.ca], timeout=60)
            self.assertNotEqual(stranger.code, 0)
            self.assertIn("the controller's certificate is not signed by a CA of --tls-ca",
                          stranger.stderr)
            self.assertNotIn("ssl_transport_security", stranger.stderr)
            self.assertEqual(nginx.access_log_count(), 7)

    def test_mtls_needs_a_client_certificate_of_its_ca(self):
        controller = self.controller("--client-ca", self.clients.ca)
        client_cert, client_key = self.clients.issue("a-client")
        good = grpc.ssl_channel_credentials(root_certificates=read(self.servers.ca),
                                            private_key=read(client_key),
                                            certificate_chain=read(client_cert))
        self.assertEqual(list(self.list_runs(controller.grpc, good).runs), [])
        # No certificate, or one from another CA (a server certificate of ours, even).
        self.assert_refused(controller.grpc,
                            grpc.ssl_channel_credentials(root_certificates=read(self.servers.ca)))
        stranger = grpc.ssl_channel_credentials(root_certificates=read(self.servers.ca),
                                                private_key=read(self.key),
                                                certificate_chain=read(self.cert))
        self.assert_refused(controller.grpc, stranger)
        ping = harness.run_runner(["--controller", controller.grpc, "--ping", "--tls-ca",
                                   self.servers.ca, "--tls-cert", client_cert, "--tls-key",
                                   client_key], timeout=30)
        self.assertEqual(ping.code, 0, harness.describe(ping))
        refused = harness.run_runner(["--controller", controller.grpc, "--ping", "--tls-ca",
                                      self.servers.ca], timeout=30)
        self.assertNotEqual(refused.code, 0)

    def test_a_rotated_certificate_is_served_without_a_restart(self):
        controller = self.controller()
        controller.start_workers(1)
        with harness.Nginx() as nginx:
            run = harness.RunnerProcess(["--controller", controller.grpc, "--tls-ca",
                                         self.servers.ca, "--url", nginx.url, "-u", "2", "-d",
                                         "6"])
            self.addCleanup(run.close)
            time.sleep(1.5)
            # cert-manager writes a new pair (here from a new CA, so that the test can tell).
            renewed = Pki(self.tmp, "renewed")
            cert, key = renewed.issue("controller-2", "IP:127.0.0.1,DNS:localhost")
            shutil.copy(key, self.served_key + ".new")
            shutil.copy(cert, self.served_cert + ".new")
            os.replace(self.served_key + ".new", self.served_key)
            os.replace(self.served_cert + ".new", self.served_cert)
            trusting_new = grpc.ssl_channel_credentials(root_certificates=read(renewed.ca))
            deadline = time.monotonic() + 10
            while True:
                try:
                    self.list_runs(controller.grpc, trusting_new)
                    break
                except grpc.RpcError:
                    self.assertLess(time.monotonic(), deadline, "the new certificate never served")
                    time.sleep(0.2)
            # The run that was watching over the old connection ends whole.
            result = run.wait(timeout=60)
            self.assertEqual(result.code, 0, harness.describe(result) + controller.stderr)
            self.assertEqual(result.report["hits"], nginx.access_log_count())
        self.assertEqual(controller.process.poll(), None, "the controller restarted")

    def test_the_health_port_answers_probes_only(self):
        controller = self.controller("--health", "127.0.0.1:0")
        self.assertIsNotNone(controller.health)
        channel = grpc.insecure_channel(controller.health)
        self.addCleanup(channel.close)
        from grpc_health_probe import health_pb2, health_pb2_grpc  # noqa: E402
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "loads.v1.Controller"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            self.assertEqual(reply.status, health_pb2.HealthCheckResponse.SERVING)
        # The API is not there.
        with self.assertRaises(grpc.RpcError) as missing:
            self.rpc.ControllerStub(channel).ListRuns(self.pb.ListRunsRequest(), timeout=5)
        self.assertEqual(missing.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_a_read_only_token_looks_but_does_not_touch(self):
        api, reader = uuid.uuid4().hex, uuid.uuid4().hex
        paths = []
        for token in (api, reader):
            path = os.path.join(self.tmp, f"token-{len(paths)}")
            with open(path, "w") as f:
                f.write(token + "\n")
            paths.append(path)
        controller = self.controller("--api-token-file", paths[0], "--read-token-file",
                                     paths[1])
        trusted = grpc.ssl_channel_credentials(root_certificates=read(self.servers.ca))
        self.assertEqual(list(self.list_runs(controller.grpc, trusted, token=reader).runs), [])
        stub, metadata = self.stub(controller.grpc, trusted, reader)
        spec = self.pb.RunSpec(url="http://127.0.0.1:9/", users=[1], hits=[1])
        for call, request in ((stub.StartRun, self.pb.StartRunRequest(run_id="r1", spec=spec)),
                              (stub.StopRun, self.pb.StopRunRequest(run_id="r1"))):
            with self.assertRaises(grpc.RpcError) as denied:
                call(request, timeout=5, metadata=metadata)
            self.assertEqual(denied.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
            self.assertIn("may only list, get and watch runs", denied.exception.details())
        self.assert_refused(controller.grpc, trusted, grpc.StatusCode.UNAUTHENTICATED,
                            token="not-a-token")
        self.assertEqual(list(self.list_runs(controller.grpc, trusted, token=api).runs), [])

    def test_bad_tls_options_are_refused_at_start(self):
        other_cert, other_key = self.servers.issue("other")
        cases = [
            (("--tls-cert", self.served_cert), "--tls-cert and --tls-key go together"),
            (("--tls-cert", self.served_cert, "--tls-key", other_key),
             f"--tls-key {other_key} is not the key of --tls-cert {self.served_cert}"),
            (("--tls-cert", self.served_key, "--tls-key", self.served_key),
             "not a PEM certificate"),
            (("--tls-cert", "/nonexistent.crt", "--tls-key", self.served_key),
             "cannot read /nonexistent.crt"),
            (("--client-ca", self.clients.ca), "--client-ca needs --tls-cert"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                result = subprocess.run([harness.binary("loads-controller"), "--grpc",
                                         "127.0.0.1:0", "--no-state", *args],
                                        capture_output=True, text=True, timeout=10)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn(message, result.stderr)
        del other_cert


if __name__ == "__main__":
    unittest.main()
