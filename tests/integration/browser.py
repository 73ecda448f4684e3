"""A real headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for the tests
of the HTML report and the live page: what the page logged, what it requested, what its charts
hold (read back from Chart.js itself) and a screenshot.

python3-websockets 10 has no synchronous client, so each call runs a short asyncio exchange.
"""

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

import websockets


def chromium_path():
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("chromium is not installed (scripts/install-deps.sh installs it)")
    return path


class Page:
    """What a page did while it loaded and ran: console messages, errors and requests."""

    def __init__(self):
        self.console = []     # (type, text)
        self.exceptions = []  # text
        self.log_errors = []  # browser-side errors (a blocked request, a CSP violation)
        self.requests = []    # URLs the page asked for
        self.values = {}      # expression -> value, from evaluate()
        self.screenshot = None


class Chromium:
    """One headless Chromium with a DevTools port; close() (or `with`) ends it."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="loads-chromium-")
        self.process = subprocess.Popen(
            [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--disable-background-networking", "--disable-component-update",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "--window-size=1200,2600", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        deadline = time.monotonic() + 30
        self.port = None
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            match = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if match:
                self.port = int(match.group(1))
                break
        if self.port is None:
            self.close()
            raise RuntimeError("chromium did not open its DevTools port")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _page_socket(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as r:
            targets = json.load(r)
        pages = [t for t in targets if t.get("type") == "page"]
        return pages[0]["webSocketDebuggerUrl"]

    def open(self, url, expressions=(), wait_for="true", settle=0.3, timeout=30,
             screenshot=False, watch=None):
        """Load `url`, wait until the JavaScript `wait_for` is true (and `settle` seconds more),
        evaluate each expression (their JSON values land in Page.values), optionally take a
        screenshot. `watch(page, evaluate)` may run more checks while the page stays open
        (an async callable)."""
        return asyncio.run(self._open(url, expressions, wait_for, settle, timeout, screenshot,
                                      watch))

    async def _open(self, url, expressions, wait_for, settle, timeout, screenshot, watch):
        page = Page()
        async with websockets.connect(self._page_socket(), max_size=64 * 1024 * 1024) as ws:
            ids = iter(range(1, 1 << 30))
            pending = {}

            async def reader():
                async for raw in ws:
                    message = json.loads(raw)
                    if "id" in message:
                        future = pending.pop(message["id"], None)
                        if future is not None and not future.done():
                            future.set_result(message)
                        continue
                    method, params = message.get("method"), message.get("params", {})
                    if method == "Runtime.consoleAPICalled":
                        text = " ".join(str(a.get("value", a.get("description", "")))
                                        for a in params.get("args", []))
                        page.console.append((params.get("type"), text))
                    elif method == "Runtime.exceptionThrown":
                        details = params.get("exceptionDetails", {})
                        page.exceptions.append(
                            details.get("exception", {}).get("description") or details.get("text"))
                    elif method == "Log.entryAdded":
                        entry = params.get("entry", {})
                        if entry.get("level") in ("error", "warning"):
                            page.log_errors.append(entry.get("text"))
                    elif method == "Network.requestWillBeSent":
                        page.requests.append(params["request"]["url"])

            async def call(method, **params):
                number = next(ids)
                future = asyncio.get_running_loop().create_future()
                pending[number] = future
                await ws.send(json.dumps({"id": number, "method": method, "params": params}))
                reply = await asyncio.wait_for(future, timeout)
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

            async def evaluate(expression):
                result = await call("Runtime.evaluate", expression=expression,
                                    returnByValue=True, awaitPromise=True)
                if "exceptionDetails" in result:
                    raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
                return result["result"].get("value")

            task = asyncio.create_task(reader())
            try:
                for domain in ("Runtime", "Log", "Network", "Page"):
                    await call(f"{domain}.enable")
                # Log.enable replays what an earlier page of this tab logged: not this page's.
                await call("Log.clear")
                await asyncio.sleep(0.05)
                page.console.clear()
                page.exceptions.clear()
                page.log_errors.clear()
                page.requests.clear()
                await call("Page.navigate", url=url)
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        if await evaluate(f"Boolean({wait_for})"):
                            break
                    except RuntimeError:
                        pass  # the page is still being replaced
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the page never reached: {wait_for}")
                    await asyncio.sleep(0.1)
                await asyncio.sleep(settle)
                for expression in expressions:
                    page.values[expression] = await evaluate(expression)
                if watch is not None:
                    await watch(page, evaluate)
                if screenshot:
                    shot = await call("Page.captureScreenshot", format="png",
                                      captureBeyondViewport=True)
                    page.screenshot = base64.b64decode(shot["data"])
            finally:
                # A page that polls (the list of runs) must not go on into the next test.
                try:
                    await call("Page.navigate", url="about:blank")
                except Exception:  # noqa: BLE001 - the browser may be going away
                    pass
                task.cancel()
        return page


# Reads every chart back from Chart.js: {canvas id: {labels, datasets: [{label, data}]}}.
CHARTS = """JSON.stringify(Object.fromEntries(Array.from(document.querySelectorAll('canvas')).map(
  (canvas) => { const chart = Chart.getChart(canvas);
    return [canvas.id, {labels: chart.data.labels,
                        datasets: chart.data.datasets.map((d) => ({label: d.label, data: d.data}))}];
  })))"""


def artifact_dir():
    """Where tests leave files for a person to look at (screenshots): build/test-artifacts."""
    path = os.environ.get("LOADS_ARTIFACT_DIR") or os.path.join(
        os.environ.get("LOADS_BIN_DIR", "build/bin"), "..", "test-artifacts")
    os.makedirs(path, exist_ok=True)
    return os.path.abspath(path)
