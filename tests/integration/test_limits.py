"""Limits that hold and errors that say what went wrong: a response body over 64 MiB, a header
section over 64 KiB and a WebSocket message over 64 MiB are each an error of their own kind,
whatever the server does (nginx sends a static file's header and first body bytes in one
packet); a refused certificate says why (self-signed, unknown issuer, expired, wrong name); a
request that could not connect names its method and URL.

Run: LOADS_BIN_DIR=build/bin LOADS_EXAMPLES_DIR=build/examples \\
     /usr/bin/python3 -m unittest -v test_limits      (from tests/integration)
"""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MIB = 1 << 20


class LimitsTest(unittest.TestCase):
    def run_url(self, url, hits=1, expected_code=1, env=None, timeout=120):
        result = harness.run_runner(["--url", url, "-u", "1", "--hits", str(hits)], timeout=timeout,
                                    env=env)
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, expected_code, harness.describe(result))
        harness.assert_report_consistent(self, result)
        return result

    def assert_hit_errors(self, result, expected):
        self.assertEqual(harness.nonzero(result.report.get("hit_errors")), expected,
                         harness.describe(result))

    def test_response_body_limit_on_static_files(self):
        files = {"limit.bin": 64 * MIB, "over.bin": 64 * MIB + 1, "big.bin": 200 * MIB}
        with harness.Nginx(static_files=files) as nginx:
            exact = self.run_url(nginx.url + "static/limit.bin", expected_code=0)
            self.assertEqual(exact.report["status_codes"], {"200": 1}, harness.describe(exact))
            for name in ("over.bin", "big.bin"):
                with self.subTest(file=name):
                    result = self.run_url(nginx.url + "static/" + name, hits=2)
                    self.assert_hit_errors(result, {"body_too_large": 2})
                    self.assertIn("response body larger than 64 MiB", result.stdout)
                    self.assertIn(f"GET {nginx.url}static/{name}", result.stdout)
            # Every request reached nginx, and each one the runner counted as a hit.
            self.assertEqual(nginx.access_log_count(), 5)

    def test_response_header_limit(self):
        with harness.Nginx(header_kib=[40, 80]) as nginx:
            self.run_url(nginx.url + "headers/40", expected_code=0)
            result = self.run_url(nginx.url + "headers/80", hits=2)
            self.assert_hit_errors(result, {"header_too_large": 2})
            self.assertIn("response header section larger than 64 KiB", result.stdout)
            self.assertEqual(nginx.access_log_count(), 3)

    def test_websocket_message_limit(self):
        examples = harness.examples_dir()
        for size, expected_code in ((64 * MIB, 0), (64 * MIB + 1, 1)):
            with self.subTest(size=size), harness.WsServer(messages=1, size=size) as server:
                result = harness.run_runner([
                    "websocket_example.TestWebSocket.test_receive", "--test-path", examples,
                    "--server-url", server.url, "-u", "1", "--hits", "1"], timeout=120)
                harness.assert_no_crash(self, result)
                self.assertEqual(result.code, expected_code, harness.describe(result))
                ws = result.report["websockets"]
                if expected_code == 0:
                    self.assertEqual(ws["bytes_received"], size)
                else:
                    self.assertEqual(result.report["tests"]["errors"], 1)
                    self.assertEqual(ws["messages_received"], 0)
                    self.assertIn("message_too_large", result.stdout)
                    self.assertIn("message larger than 64 MiB", result.stdout)

    def test_connection_errors_name_the_request(self):
        with harness.ClosedPort() as closed:
            result = self.run_url(closed.url + "path?q=1", hits=2)
        self.assert_hit_errors(result, {"connection_refused": 2})
        self.assertIn(f"GET {closed.url}path: connect to", result.stdout)


class CertificateErrorsTest(unittest.TestCase):
    """Each refused certificate is a `tls` hit error whose message gives OpenSSL's reason.
    The runner trusts a private CA through SSL_CERT_FILE, which OpenSSL reads in place of the
    system's store."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="loads-certs-")
        cls.ca = harness.make_ca(cls.dir, "trusted-ca")
        cls.other_ca = harness.make_ca(cls.dir, "other-ca")
        cls.env = {"SSL_CERT_FILE": cls.ca[0]}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def fetch(self, certificate, url_host="127.0.0.1", expected_code=1):
        with harness.Nginx(certificate=certificate) as nginx:
            url = nginx.https_url.replace("127.0.0.1", url_host)
            result = harness.run_runner(["--url", url, "-u", "1", "--hits", "2"], env=self.env)
            logged = nginx.access_log_count()
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, expected_code, harness.describe(result))
        harness.assert_report_consistent(self, result)
        if expected_code:
            self.assertEqual(harness.nonzero(result.report["hit_errors"]), {"tls": 2},
                             harness.describe(result))
            self.assertEqual(logged, 0)  # no request was sent over a refused connection
        else:
            self.assertEqual(logged, 2)
        return result

    def test_a_valid_certificate_is_accepted(self):
        self.fetch(harness.make_certificate(self.dir, "valid", self.ca, "IP:127.0.0.1"),
                   expected_code=0)

    def test_self_signed(self):
        with harness.Nginx(https=True) as plain:
            cert = (plain.cert_path, plain.key_path)
            copy = (os.path.join(self.dir, "self.pem"), os.path.join(self.dir, "self.key"))
            shutil.copy(cert[0], copy[0])
            shutil.copy(cert[1], copy[1])
        result = self.fetch(copy)
        self.assertIn("certificate verify failed: self-signed certificate", result.stdout)

    def test_unknown_issuer(self):
        result = self.fetch(harness.make_certificate(self.dir, "stranger", self.other_ca,
                                                     "IP:127.0.0.1"))
        self.assertIn("certificate verify failed: unable to get local issuer certificate",
                      result.stdout)

    def test_expired(self):
        result = self.fetch(harness.make_certificate(self.dir, "expired", self.ca, "IP:127.0.0.1",
                                                     expired=True))
        self.assertIn("certificate verify failed: certificate has expired", result.stdout)

    def test_wrong_host_name(self):
        result = self.fetch(harness.make_certificate(self.dir, "elsewhere", self.ca,
                                                     "DNS:elsewhere.test"), url_host="localhost")
        self.assertIn("certificate verify failed: hostname mismatch", result.stdout)

    def test_wrong_ip_address(self):
        result = self.fetch(harness.make_certificate(self.dir, "other-ip", self.ca, "IP:10.1.2.3"))
        self.assertIn("certificate verify failed: IP address mismatch", result.stdout)


if __name__ == "__main__":
    unittest.main()
