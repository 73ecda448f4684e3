"""Notifications (--notify): a webhook receives the exact JSON report, a mail server (Debian's
python3-aiosmtpd, a real SMTP server) receives a summary with the HTML report attached; a webhook
that is down, slow or answers 500 changes neither the run's result nor how long the runner takes
beyond its bounded retries; a controller tells its runs' ends to its own targets and the runs'.

Run: LOADS_BIN_DIR=build/bin /usr/bin/python3 -m unittest -v test_notify   (from tests/integration)
"""

import email
import email.policy
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import unittest

from aiosmtpd.controller import Controller as SmtpController

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class Hook:
    """A local HTTP server that records each POST and answers with the next planned status
    (then 200), optionally after a delay."""

    def __init__(self, statuses=(), delay=0.0):
        self.bodies = []
        self.headers = []
        self.statuses = list(statuses)
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.bodies.append(body)
                hook.headers.append(dict(self.headers))
                time.sleep(delay)
                status = hook.statuses.pop(0) if hook.statuses else 200
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up (its timeout)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """A real SMTP server (aiosmtpd) on a free loopback port, keeping what it receives."""

    def __init__(self):
        self.messages = []
        mailbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                mailbox.messages.append((envelope.mail_from, envelope.rcpt_tos,
                                         email.message_from_bytes(envelope.content,
                                                                  policy=email.policy.default)))
                return "250 OK"

        self.port = harness.free_port()
        self.controller = SmtpController(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


class NotifyTest(unittest.TestCase):
    def setUp(self):
        self.nginx = harness.Nginx()
        self.nginx.start()
        self.addCleanup(self.nginx.stop)
        self.tmp = tempfile.mkdtemp(prefix="loads-notify-")
        self.addCleanup(lambda: shutil.rmtree(self.tmp, ignore_errors=True))

    def run_notifying(self, *args, expected_code=0):
        started = time.monotonic()
        result = harness.run_runner(["--url", self.nginx.url, "-u", "2", "--hits", "10",
                                     *args], timeout=60)
        seconds = time.monotonic() - started
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, expected_code, harness.describe(result))
        return result, seconds

    def test_the_webhook_gets_the_exact_report(self):
        report = os.path.join(self.tmp, "report.json")
        with Hook() as hook:
            result, _ = self.run_notifying("--notify", f"webhook:{hook.url}", "--output",
                                           f"json:{report}")
        with open(report, "rb") as f:
            self.assertEqual(hook.bodies, [f.read()])
        self.assertEqual(hook.headers[0]["Content-Type"], "application/json")
        self.assertEqual(result.report["hits"], self.nginx.access_log_count())
        self.assertIn(f"loads-runner: notify webhook {hook.url}: HTTP 200 after 1 attempt",
                      result.stderr)

    def test_a_webhook_that_fails_changes_nothing(self):
        # 500 twice, then 200: told on the third attempt (1 s, then 2 s later).
        with Hook(statuses=[500, 503]) as flaky, Hook(statuses=[404]) as wrong, \
                harness.ClosedPort() as down:
            result, seconds = self.run_notifying(
                "--notify", f"webhook:{flaky.url}", "--notify", f"webhook:{wrong.url}",
                "--notify", f"webhook:{down.url}/hook")
        self.assertEqual(len(flaky.bodies), 3)
        self.assertIn(f"webhook {flaky.url}: HTTP 200 after 3 attempts", result.stderr)
        # A 404 is not tried again.
        self.assertEqual(len(wrong.bodies), 1)
        self.assertIn(f"webhook {wrong.url}: not sent: HTTP 404 after 1 attempt", result.stderr)
        self.assertIn(f"webhook {down.url}/hook: not sent: Couldn't connect to server after 3 "
                      "attempts", result.stderr)
        self.assertEqual(result.report["hits"], self.nginx.access_log_count())
        # The targets are told side by side: 3 s of pauses, not 3 × 3.
        self.assertLess(seconds, 8)

        # A webhook that never answers: each attempt ends at --notify-timeout.
        with Hook(delay=30) as slow:
            result, seconds = self.run_notifying("--notify", f"webhook:{slow.url}",
                                                 "--notify-timeout", "0.5")
        self.assertIn(f"webhook {slow.url}: not sent: Timeout was reached after 3 attempts",
                      result.stderr)
        self.assertLess(seconds, 0.5 * 3 + 3 + 3)

    def test_a_mail_with_the_html_report(self):
        html = os.path.join(self.tmp, "report.html")
        with Mailbox() as mailbox:
            result, _ = self.run_notifying(
                "--notify", "email:ops@example.com", "--smtp", f"127.0.0.1:{mailbox.port}",
                "--smtp-from", "loads@ci.example.com", "--output", f"html:{html}")
        self.assertEqual(len(mailbox.messages), 1)
        sender, recipients, message = mailbox.messages[0]
        self.assertEqual(sender, "loads@ci.example.com")
        self.assertEqual(recipients, ["ops@example.com"])
        self.assertEqual(message["To"], "ops@example.com")
        self.assertEqual(message["Subject"], f"Loads: GET {self.nginx.url}: passed")
        logged = self.nginx.access_log_count()
        text = message.get_body(preferencelist=("plain",)).get_content()
        self.assertIn(f"Hits: {logged}", text)
        attachments = list(message.iter_attachments())
        self.assertEqual([a.get_filename() for a in attachments], ["loads-report.html"])
        with open(html, "rb") as f:
            self.assertEqual(attachments[0].get_payload(decode=True), f.read())
        self.assertIn("loads-runner: notify email ops@example.com: accepted by", result.stderr)

    def test_bad_notify_options_run_nothing(self):
        cases = {
            ("--notify", "ftp://host/x"): "expected webhook:URL or email:ADDRESS",
            ("--notify", "webhook:ftp://host/x"): "a webhook needs an http(s) URL",
            ("--notify", "email:nobody"): "not a mail address",
            ("--notify", "email:a@b.c\r\nRCPT TO:<x@y>"): "not a mail address",
            ("--notify", "email:ops@example.com"): "needs --smtp HOST:PORT",
            ("--smtp", "mail.example.com"): "HOST:PORT",
            ("--notify-timeout", "0"): "seconds, 0.1 to 60",
        }
        for args, message in cases.items():
            with self.subTest(args=args):
                result = harness.run_runner(["--url", self.nginx.url, *args])
                self.assertEqual(result.code, 2, harness.describe(result))
                self.assertIn(message, result.stderr)
        self.assertEqual(self.nginx.access_log_count(), 0)
        refused = harness.run_runner(["--controller", "127.0.0.1:1", "--url", self.nginx.url,
                                      "--smtp", "127.0.0.1:25"])
        self.assertEqual(refused.code, 2)
        self.assertIn("--smtp applies to local runs only", refused.stderr)

    def test_a_controller_tells_its_runs_ends(self):
        with Hook() as default, Hook() as own:
            controller = harness.Controller(extra=("--max-local-workers", "0", "--notify",
                                                   f"webhook:{default.url}"))
            try:
                controller.start_workers(2)
                result = harness.run_runner(
                    ["--controller", controller.grpc, "--url", self.nginx.url, "--workers", "2",
                     "-u", "2", "--hits", "10", "--notify", f"webhook:{own.url}"], timeout=60)
                deadline = time.monotonic() + 10
                while (not default.bodies or not own.bodies) and time.monotonic() < deadline:
                    time.sleep(0.1)
                # A controller without a mail server refuses mail targets at StartRun.
                refused = harness.run_runner(
                    ["--controller", controller.grpc, "--url", self.nginx.url, "--hits", "1",
                     "--notify", "email:ops@example.com"], timeout=30)
            finally:
                log = controller.stderr
                controller.close()
        self.assertEqual(result.code, 0, harness.describe(result))
        self.assertEqual(result.report["hits"], 20)
        self.assertEqual(self.nginx.access_log_count(), 20)
        # Both got the run's final report, as its JSON file has it.
        self.assertEqual(len(default.bodies), 1, log)
        self.assertEqual(len(own.bodies), 1, log)
        self.assertEqual(json.loads(default.bodies[0]), result.report)
        self.assertEqual(default.bodies[0], own.bodies[0])
        self.assertIn(f"notify webhook {own.url}: HTTP 200 after 1 attempt", log)
        self.assertNotEqual(refused.code, 0)
        self.assertIn("this controller has no mail server (--smtp)", refused.stderr)


if __name__ == "__main__":
    unittest.main()
