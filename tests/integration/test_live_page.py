"""The live page (loads-controller --web, loads-runner --web) opened in a real headless Chromium
while a run runs against nginx: its numbers move while the run runs and stop at the final report,
which equals the JSON report and nginx's own count; its stop button stops the run; it loads
nothing from anywhere but its server; and who may see it or stop a run is decided by the API
token, checked request by request with a plain HTTP client.

Run: LOADS_BIN_DIR=build/bin /usr/bin/python3 -m unittest -v test_live_page   (from tests/integration)
"""

import asyncio
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browser  # noqa: E402
import harness  # noqa: E402

SUMMARY_HITS = """(() => { const rows = document.querySelectorAll('#summary tbody tr');
  for (const r of rows) if (r.cells[0].textContent === 'Hits') return r.cells[1].textContent;
  return null; })()"""
RENDERED = "document.getElementById('loads-report').dataset.updates"


class WebController(harness.Controller):
    """A controller serving its live page on a free loopback port."""

    def __init__(self, token=None, read_token=None):
        extra = ["--max-local-workers", "0", "--web", "127.0.0.1:0"]
        self.token_paths = []
        for flag, value in (("--api-token-file", token), ("--read-token-file", read_token)):
            if value is None:
                continue
            handle, path = tempfile.mkstemp(prefix="loads-token-")
            with os.fdopen(handle, "w") as f:
                f.write(value + "\n")
            self.token_paths.append(path)
            extra += [flag, path]
        super().__init__(extra=tuple(extra))

    def close(self):
        super().close()
        for path in self.token_paths:
            os.unlink(path)


def request(base, method, path, headers=None):
    """(status, headers, body) of one HTTP request to the live page's server."""
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        reply = connection.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read().decode()
    finally:
        connection.close()


def number(text):
    return int(text.replace(",", "")) if text else None


class LivePageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.chromium = browser.Chromium()

    @classmethod
    def tearDownClass(cls):
        cls.chromium.close()

    def setUp(self):
        self.nginx = harness.Nginx()
        self.nginx.start()
        self.addCleanup(self.nginx.stop)

    def assert_only_its_server(self, page, base):
        self.assertEqual(page.exceptions, [])
        self.assertEqual([c for c in page.console if c[0] in ("error", "warning", "assert")], [])
        self.assertEqual(page.log_errors, [], (page.requests, page.console))
        for url in page.requests:
            self.assertTrue(url.startswith(base), f"the page asked {url} (not {base})")

    def running_run(self, base):
        """The id of the run the page lists as running (waits up to 10 s for one)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            runs = json.loads(request(base, "GET", "/api/runs")[2])["runs"]
            if runs and runs[0]["state"] == "running":
                return runs[0]["id"]
            time.sleep(0.1)
        self.fail("no run became running")

    def watch_until_over(self, samples):
        """A `watch` for Chromium.open: samples the page's hits and update count every 0.5 s
        until the page says the run is over (at most 60 s)."""
        async def watch(page, evaluate):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                samples.append((await evaluate(RENDERED), number(await evaluate(SUMMARY_HITS)),
                                await evaluate("document.getElementById('loads-report')"
                                               ".dataset.over === 'true'")))
                if samples[-1][2]:
                    return
                await asyncio.sleep(0.5)
        return watch

    def test_a_controller_run_watched_live(self):
        controller = WebController()
        self.addCleanup(controller.close)
        controller.start_workers(2)
        base = controller.web.rstrip("/")
        run = harness.RunnerProcess(["--controller", controller.grpc, "--url", self.nginx.url,
                                     "--workers", "2", "-u", "4", "-d", "5",
                                     "--threshold", "p99<5s"])
        self.addCleanup(run.close)
        run_id = self.running_run(base)

        samples = []
        page = self.chromium.open(f"{base}/runs/{run_id}", wait_for=RENDERED,
                                  expressions=(browser.CHARTS,), settle=0,
                                  watch=self.watch_until_over(samples))
        result = run.wait(timeout=60)
        self.assertEqual(result.code, 0, harness.describe(result))
        logged = self.nginx.access_log_count()
        self.assertEqual(result.report["hits"], logged)
        self.assert_only_its_server(page, base)

        # While it ran, the numbers moved; at the end they are the final report's.
        running = [s for s in samples if not s[2]]
        self.assertGreaterEqual(len(running), 3, samples)
        hits = [s[1] for s in running if s[1] is not None]
        self.assertGreater(hits[-1], hits[0], samples)
        self.assertEqual(hits, sorted(hits), samples)
        self.assertTrue(samples[-1][2], samples)
        self.assertEqual(samples[-1][1], logged, samples)
        self.assertGreaterEqual(int(samples[-1][0]), 3, samples)

        # After the end, the page shows exactly the final report's series.
        final = self.chromium.open(f"{base}/runs/{run_id}",
                                   wait_for="document.getElementById('loads-report')"
                                            ".dataset.over === 'true'",
                                   expressions=(browser.CHARTS, SUMMARY_HITS), screenshot=True)
        with open(os.path.join(browser.artifact_dir(), "live_page.png"), "wb") as f:
            f.write(final.screenshot)
        self.assert_only_its_server(final, base)
        charts = json.loads(final.values[browser.CHARTS])
        series = result.report["series"]
        self.assertEqual(charts["chart-rps"]["datasets"][0]["data"],
                         [h / series["step_seconds"] for h in series["hits"]])
        self.assertEqual(sum(series["hits"]), logged)
        self.assertEqual(number(final.values[SUMMARY_HITS]), logged)

        # The HTML report of a finished run, from the page's link.
        status, headers, body = request(base, "GET", f"/runs/{run_id}/report.html")
        self.assertEqual(status, 200)
        self.assertIn("attachment", headers["Content-Disposition"])
        self.assertIn("window.LOADS_REPORT = ", body)

        # The list of runs links to it.
        listing = self.chromium.open(base + "/", wait_for="document.getElementById("
                                     "'loads-report').dataset.refreshes",
                                     expressions=(listing_expr(),))
        self.assert_only_its_server(listing, base)
        self.assertIn([run_id, "done", f"{logged:,}"], listing.values[listing_expr()])

    def test_the_stop_button_stops_the_run(self):
        controller = WebController()
        self.addCleanup(controller.close)
        controller.start_workers(2)
        base = controller.web.rstrip("/")
        run = harness.RunnerProcess(["--controller", controller.grpc, "--url", self.nginx.url,
                                     "--workers", "2", "-u", "2", "-d", "60"])
        self.addCleanup(run.close)
        run_id = self.running_run(base)

        async def press_stop(page, evaluate):
            await evaluate("document.getElementById('stop').click()")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if await evaluate("document.getElementById('loads-report').dataset.over"):
                    return
                await asyncio.sleep(0.2)

        started = time.monotonic()
        page = self.chromium.open(f"{base}/runs/{run_id}", wait_for=RENDERED,
                                  expressions=(), watch=press_stop)
        result = run.wait(timeout=30)
        self.assertLess(time.monotonic() - started, 20)
        self.assert_only_its_server(page, base)
        self.assertEqual(result.code, 130, harness.describe(result))
        self.assertEqual(result.report["run"]["state"], "stopped")
        self.assertEqual(result.report["hits"], self.nginx.access_log_count())

    def test_who_may_see_the_page_and_stop_a_run(self):
        token = "s3cret-token-for-the-page"
        reader = "a-token-that-only-looks"
        controller = WebController(token=token, read_token=reader)
        self.addCleanup(controller.close)
        base = controller.web.rstrip("/")
        bearer = {"Authorization": f"Bearer {token}"}

        for path in ("/", "/runs/x", "/api/runs", "/api/runs/x/events"):
            with self.subTest(path=path):
                status, _, body = request(base, "GET", path)
                self.assertEqual(status, 401, body)
                self.assertNotIn(token, body)
                status, _, _ = request(base, "GET", path,
                                       {"Authorization": "Bearer s3cret-token-for-the-pagX"})
                self.assertEqual(status, 401)
        self.assertEqual(request(base, "GET", "/api/runs", bearer)[0], 200)
        self.assertEqual(request(base, "GET", "/api/runs/nope", bearer)[0], 404)

        # Opened once with ?token=, the page keeps it in an HttpOnly cookie and drops it from the
        # address.
        status, headers, _ = request(base, "GET", f"/?token={token}")
        self.assertEqual(status, 303)
        self.assertEqual(headers["Location"], "/")
        cookie = headers["Set-Cookie"]
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=Strict", cookie)
        jar = {"Cookie": cookie.split(";")[0]}
        self.assertEqual(request(base, "GET", "/api/runs", jar)[0], 200)
        self.assertEqual(request(base, "GET", "/?token=wrong")[0], 401)

        # Stopping needs the token and the X-Loads-Action header (no other site can send it).
        self.assertEqual(request(base, "POST", "/api/runs/nope/stop")[0], 401)
        status, _, body = request(base, "POST", "/api/runs/nope/stop", bearer)
        self.assertEqual(status, 403, body)
        self.assertIn("X-Loads-Action: stop", body)
        self.assertEqual(request(base, "POST", "/api/runs/nope/stop",
                                 {**bearer, "X-Loads-Action": "stop"})[0], 404)
        self.assertEqual(request(base, "GET", "/api/runs/nope/stop", bearer)[0], 405)
        # The read-only token (--read-token-file) sees the page but cannot stop runs.
        looker = {"Authorization": f"Bearer {reader}"}
        self.assertEqual(request(base, "GET", "/api/runs", looker)[0], 200)
        self.assertEqual(request(base, "GET", "/", looker)[0], 200)
        status, _, body = request(base, "POST", "/api/runs/nope/stop",
                                  {**looker, "X-Loads-Action": "stop"})
        self.assertEqual(status, 403, body)
        self.assertIn("this token may only look", body)
        self.assertEqual(request(base, "GET", "/etc/passwd", bearer)[0], 404)
        self.assertEqual(request(base, "GET", "/api/runs/%0d%0aX:1", bearer)[0], 400)

        # Beyond loopback the page needs a token, as the API does.
        refused = subprocess.run([harness.binary("loads-controller"), "--web", "0.0.0.0:0",
                                  "--grpc", "127.0.0.1:0", "--no-state"],
                                 capture_output=True, text=True, timeout=10)
        self.assertEqual(refused.returncode, 2, refused.stderr)
        self.assertIn("refusing to serve the live page on 0.0.0.0:0 without --api-token-file",
                      refused.stderr)

    def test_a_local_run_watched_live(self):
        run = harness.RunnerProcess(["--url", self.nginx.url, "-u", "2", "-d", "4",
                                     "--web", "127.0.0.1:0"])
        self.addCleanup(run.close)
        deadline = time.monotonic() + 10
        address = None
        while address is None and time.monotonic() < deadline:
            with open(os.path.join(run.tmp, "stderr")) as f:
                match = re.search(r"live page of this run: (http://\S+)", f.read())
            address = match.group(1) if match else None
            time.sleep(0.05)
        self.assertIsNotNone(address)
        base = address[:address.index("/runs/")]
        samples = []
        page = self.chromium.open(address, wait_for=RENDERED, settle=0,
                                  watch=self.watch_until_over(samples))
        result = run.wait(timeout=30)
        self.assertEqual(result.code, 0, harness.describe(result))
        logged = self.nginx.access_log_count()
        self.assertEqual(result.report["hits"], logged)
        self.assert_only_its_server(page, base)
        hits = [s[1] for s in samples if not s[2] and s[1] is not None]
        self.assertGreaterEqual(len(hits), 2, samples)
        self.assertGreater(hits[-1], hits[0], samples)
        # The runner waits for its viewers to get the final report before it exits.
        self.assertTrue(samples[-1][2], samples)
        self.assertEqual(samples[-1][1], logged, samples)

        # Only loopback, and never with a controller.
        refused = harness.run_runner(["--url", self.nginx.url, "--web", "0.0.0.0:8089"])
        self.assertEqual(refused.code, 2)
        self.assertIn("a loopback address", refused.stderr)
        refused = harness.run_runner(["--controller", "127.0.0.1:1", "--url", self.nginx.url,
                                      "--web", "127.0.0.1:0"])
        self.assertEqual(refused.code, 2)
        self.assertIn("--web applies to local runs only", refused.stderr)


def listing_expr():
    return ("Array.from(document.querySelectorAll('#runs tbody tr')).map((r) => [r.cells[0]."
            "textContent, r.cells[1].textContent, r.cells[4].textContent])")


if __name__ == "__main__":
    unittest.main()
