"""The controller's Prometheus metrics: the exposition passes `promtool check metrics`, its counts
equal the run's report and nginx's log, a real Prometheus server scrapes it and answers PromQL
on it, and a finished run's series go away after the retention time.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_distributed import Controller  # noqa: E402


def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def samples(text, name):
    """{labels string: value} of one metric in the text exposition."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, value = line.rsplit(" ", 1)
            out[key[len(name):]] = float(value)
    return out


DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "helm",
                         "loads", "dashboards", "loads.json")


def dashboard_promql(expr, run):
    """A panel's expression as Grafana sends it with the run selector on `run` (a regex)."""
    return (expr.replace("$run", run).replace("$__rate_interval", "15s")
            .replace("$__range", "1m"))


class Prometheus:
    """Debian's prometheus binary with its own config and data folder, scraping every second."""

    def __init__(self, target, bearer_file=None, wait_up=True):
        self.dir = tempfile.mkdtemp(prefix="loads-prom-")
        self.port = harness.free_port()
        with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
            f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                    "scrape_configs:\n"
                    "  - job_name: loads-controller\n"
                    f"    static_configs: [{{targets: ['{target}']}}]\n")
            if bearer_file:
                f.write(f"    authorization: {{type: Bearer, credentials_file: '{bearer_file}'}}\n")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={self.dir}/prometheus.yml",
             f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("prometheus did not become ready")
        # Ready is not scraping: target discovery reaches the scrape loop some seconds later, and
        # gauges of a short run would be missed until then.
        while wait_up and time.monotonic() < deadline:
            if self.query("up"):
                return
            time.sleep(0.2)
        if wait_up:
            raise AssertionError("prometheus did not scrape the controller")

    def query(self, promql):
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?" +
               urllib.parse.urlencode({"query": promql}))
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def label_values(self, definition):
        """A Grafana query variable's `label_values(METRIC, LABEL)`, answered by the API call
        Grafana's Prometheus data source makes for it."""
        match = re.fullmatch(r"label_values\((\w+), *(\w+)\)", definition)
        assert match, f"not a label_values() variable: {definition}"
        metric, label = match.groups()
        url = (f"http://127.0.0.1:{self.port}/api/v1/label/{label}/values?" +
               urllib.parse.urlencode({"match[]": metric}))
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def close(self):
        harness.stop_process(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


class MetricsTest(unittest.TestCase):
    def setUp(self):
        self.controller = Controller(extra=("--max-local-workers", "2", "--metrics-retention", "3"))
        self.controller.start_workers(2)

    def tearDown(self):
        self.controller.close()

    def run_on_cluster(self, nginx, *load):
        result = harness.run_runner(["--controller", self.controller.grpc, "--url", nginx.url,
                                     "--workers", "2", *load], timeout=60)
        self.assertEqual(result.code, 0, harness.describe(result))
        return result

    def run_id(self, text):
        runs = {k.split('run="')[1].split('"')[0] for k in samples(text, "loads_hits_total")}
        self.assertEqual(len(runs), 1, runs)
        return runs.pop()

    def test_exposition_is_valid_and_exact(self):
        with harness.Nginx() as nginx:
            result = self.run_on_cluster(nginx, "-u", "4", "--hits", "25")
            time.sleep(1.2)  # the per-second gauges
            text = scrape(self.controller.metrics)
            check = subprocess.run(["promtool", "check", "metrics"], input=text,
                                   capture_output=True, text=True)
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
            run = self.run_id(text)
            hits = sum(samples(text, "loads_hits_total").values())
            self.assertEqual(hits, result.report["hits"])
            # Every hit was a GET answered 2xx, of the test the report names.
            test = result.report["test"]
            self.assertEqual(samples(text, "loads_hits_total"), {
                f'{{method="GET",run="{run}",status_class="2xx",test="{test}"}}': hits})
            self.assertEqual(hits, nginx.access_log_count())
            self.assertEqual(samples(text, "loads_request_duration_seconds_count"),
                             {f'{{run="{run}"}}': 100.0})
            self.assertEqual(samples(text, "loads_executions_total")[
                f'{{outcome="success",run="{run}"}}'], 100.0)
            percentiles = samples(text, "loads_request_duration_percentile_seconds")
            p99 = percentiles[f'{{percentile="99",run="{run}"}}']
            self.assertAlmostEqual(p99, result.report["latency_seconds"]["p99"], places=6)
            self.assertEqual(samples(text, "loads_planned_users")[f'{{run="{run}"}}'], 4.0)
            self.assertEqual(samples(text, "loads_active_users")[f'{{run="{run}"}}'], 0.0)
            self.assertEqual(samples(text, "loads_workers")['{state="idle"}'], 2.0)
            # Retention: 3 s after the run ended its series are gone.
            time.sleep(4.5)
            self.assertNotIn(run, scrape(self.controller.metrics))

    def test_custom_counters_pass_promtool(self):
        # incr_counter's counts on the cluster: loads_custom_total (a name promtool's lint takes;
        # loads_custom_counter_total was refused for holding its type), equal to the report's.
        with harness.DemoTarget() as demo:
            result = harness.run_runner([
                "example.TestWebSite.test_counter", "--test-path", harness.examples_dir(),
                "--server-url", demo.url, "--controller", self.controller.grpc, "--workers", "2",
                "-u", "3", "--hits", "2"], timeout=60)
            self.assertEqual(result.code, 0, harness.describe(result))
        self.assertEqual(result.report["counters"], {"visits": 6})
        text = scrape(self.controller.metrics)
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                               text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        run = self.run_id(text)
        self.assertEqual(samples(text, "loads_custom_total"),
                         {f'{{name="visits",run="{run}"}}': 6.0})
        # Every drop reason is there from the start, at 0.
        dropped = samples(text, "loads_messages_dropped_total")
        self.assertEqual(len(dropped), 13, dropped)
        self.assertEqual(set(dropped.values()), {0.0})

    def test_websocket_times(self):
        # The echo test on the cluster: the connect and round-trip histograms count what the
        # report counts.
        with harness.WsServer(echo_delay=0.01) as server:
            result = harness.run_runner([
                "websocket_example.TestWebSocket.test_echo", "--test-path",
                harness.examples_dir(), "--server-url", server.url, "--controller",
                self.controller.grpc, "--workers", "2", "-u", "2", "--hits", "2"], timeout=60)
            self.assertEqual(result.code, 0, harness.describe(result))
        text = scrape(self.controller.metrics)
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                               text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        ws = result.report["websockets"]
        self.assertEqual(ws["connect_seconds"]["count"], 4, harness.describe(result))
        self.assertEqual(ws["round_trip_seconds"]["count"], 40, harness.describe(result))
        self.assertGreaterEqual(ws["round_trip_seconds"]["min"], 0.01)
        connect = samples(text, "loads_websocket_connect_duration_seconds_count")
        trips = samples(text, "loads_websocket_round_trip_seconds_count")
        self.assertEqual(list(connect.values()), [4.0], text)
        self.assertEqual(list(trips.values()), [40.0], text)
        # Every round trip took at least the server's 10 ms: the 5 ms bucket holds none.
        buckets = samples(text, "loads_websocket_round_trip_seconds_bucket")
        self.assertEqual([v for k, v in buckets.items() if 'le="0.005"' in k], [0.0], buckets)

    def test_a_real_prometheus_scrapes_it(self):
        target = self.controller.metrics.split("//")[1].split("/")[0]
        prometheus = Prometheus(target)
        try:
            with harness.Nginx() as nginx:
                result = self.run_on_cluster(nginx, "-u", "4", "-d", "4")
                time.sleep(2.5)  # two more scrapes after the run
                hits = prometheus.query("sum(loads_hits_total)")
                self.assertEqual(float(hits[0]["value"][1]), result.report["hits"])
                self.assertEqual(result.report["hits"], nginx.access_log_count())
                # Over the whole run: the cumulative buckets, summed over every series.
                p99 = prometheus.query("histogram_quantile(0.99, sum by (le) "
                                       "(loads_request_duration_seconds_bucket))")
                self.assertTrue(p99, "no p99 from the classic histogram")
                self.assertGreater(float(p99[0]["value"][1]), 0)
                # The 4 users were seen running, summed over both workers, and are gone now.
                users = prometheus.query("max_over_time(sum(loads_active_users)[1m:1s])")
                self.assertEqual(float(users[0]["value"][1]), 4.0)
                self.assertEqual(float(prometheus.query("sum(loads_active_users)")[0]["value"][1]),
                                 0.0)
                up = prometheus.query('up{job="loads-controller"}')
                self.assertEqual(up[0]["value"][1], "1")
        finally:
            prometheus.close()


    def token_file(self, name, token):
        """A file holding `token` (a line), removed after the test."""
        if not hasattr(self, "token_dir"):
            self.token_dir = tempfile.mkdtemp(prefix="loads-metrics-token-")
            self.addCleanup(shutil.rmtree, self.token_dir, ignore_errors=True)
        path = os.path.join(self.token_dir, name)
        with open(path, "w") as f:
            f.write(token + "\n")
        return path

    def test_a_metrics_token_lets_only_prometheus_in(self):
        token_file = self.token_file("token", "scrape-secret")
        wrong_file = self.token_file("wrong", "not-it")
        controller = Controller(extra=("--max-local-workers", "0", "--metrics-token-file",
                                       token_file))
        self.addCleanup(controller.close)
        url = controller.metrics
        for headers in ({}, {"Authorization": "Bearer not-it"},
                        {"Authorization": "Basic c2NyYXBlLXNlY3JldA=="}):
            with self.subTest(headers=headers):
                with self.assertRaises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5)
                self.assertEqual(refused.exception.code, 401)
                self.assertEqual(refused.exception.headers["WWW-Authenticate"], "Bearer")
        request = urllib.request.Request(url, headers={"Authorization": "Bearer scrape-secret"})
        with urllib.request.urlopen(request, timeout=5) as response:
            self.assertIn("text/plain; version=0.0.4", response.headers["Content-Type"])
            self.assertIn("loads_merge_delay_seconds_count 0", response.read().decode())
        # A real Prometheus with the token scrapes it; one with another token cannot.
        target = url.split("//")[1].split("/")[0]
        with_token = Prometheus(target, bearer_file=token_file)
        without = Prometheus(target, bearer_file=wrong_file, wait_up=False)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                up = with_token.query('up{job="loads-controller"}')
                down = without.query('up{job="loads-controller"}')
                if up and down:
                    break
                time.sleep(0.3)
            self.assertEqual(up[0]["value"][1], "1")
            self.assertEqual(down[0]["value"][1], "0")
        finally:
            with_token.close()
            without.close()

    def test_a_worker_metrics_token_lets_only_its_holder_in(self):
        token_file = self.token_file("token", "worker-scrape")
        worker = subprocess.Popen(
            [harness.binary("loads-worker"), "--controller", self.controller.zmq,
             "--metrics", "127.0.0.1:0", "--metrics-token-file", token_file],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.addCleanup(harness.stop_process, worker)
        line = ""
        while "metrics on" not in line:
            line = worker.stderr.readline()
            self.assertTrue(line, "the worker exited before serving its metrics")
        self.assertIn("(with a token)", line)
        url = re.search(r"(http://\S+/metrics)", line).group(1)
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        self.assertEqual(refused.exception.code, 401)
        request = urllib.request.Request(url, headers={"Authorization": "Bearer worker-scrape"})
        with urllib.request.urlopen(request, timeout=5) as response:
            # Families without a series yet print nothing: the answer itself is the check.
            self.assertEqual(response.status, 200)
            self.assertIn("text/plain; version=0.0.4", response.headers["Content-Type"])

    def test_every_dashboard_expression_returns_data(self):
        with open(DASHBOARD) as f:
            dashboard = json.load(f)
        expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        self.assertGreaterEqual(len(expressions), 15)
        variables = [v["definition"] for v in dashboard["templating"]["list"]
                     if v["type"] == "query"]
        self.assertEqual(len(variables), 1)
        target = self.controller.metrics.split("//")[1].split("/")[0]
        prometheus = Prometheus(target)
        # A load that exercises every panel: HTTP, a WebSocket, and a request to a closed port
        # (an error outcome and a hit error), in the open model (target and achieved rates, the
        # latency from the intended start) with a pool too small (dropped executions).
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"name": "dashboard", "steps": [
                {"ws_connect": {"url": "/ws"}}, {"ws_send": {"text": "hi"}},
                {"ws_receive": {"expect": "hi"}}, {"ws_close": {}},
                {"request": {"url": "/", "name": "home"}}, {"think": 0.05},
                {"request": {"method": "POST", "url": "/echo", "body": "x", "name": "echo"}},
                {"request": {"url": "http://127.0.0.1:1/", "name": "closed port"}}]}, f)
        try:
            import zmq
            context = zmq.Context()
            intruder = context.socket(zmq.DEALER)
            intruder.setsockopt(zmq.LINGER, 0)
            intruder.connect(self.controller.zmq)
            intruder.send(b"garbage")  # one malformed message among the zeros of the others
            with harness.DemoTarget() as demo:
                result = harness.run_runner(["--controller", self.controller.grpc, f.name,
                                             "--server-url", demo.url, "--rate", "40", "-d", "4",
                                             "--max-users", "2", "--workers", "2"], timeout=60)
            self.assertEqual(result.code, 1, harness.describe(result))  # the closed port errors
            intruder.close()
            context.term()
            run = self.run_id(scrape(self.controller.metrics))
            time.sleep(2.5)
            methods = {r["metric"]["method"] for r in prometheus.query(
                f'sum by (method) (loads_hits_total{{run="{run}"}})')}
            self.assertEqual(methods, {"GET", "POST"})
            tests = {r["metric"]["test"] for r in prometheus.query(
                f'sum by (test) (loads_hits_total{{run="{run}"}})')}
            self.assertEqual(tests, {"scenario:dashboard"})
            for definition in variables:
                with self.subTest(variable=definition):
                    self.assertIn(run, prometheus.label_values(definition))
            for expr in expressions:
                promql = dashboard_promql(expr, run)
                with self.subTest(expr=expr):
                    self.assertTrue(prometheus.query(promql), f"no data for {promql}")
        finally:
            prometheus.close()
            os.unlink(f.name)

    def test_dashboard_on_clean_and_websocket_only_runs(self):
        # Runs without a single error nor dropped message, where "No data" used to stand for 0,
        # and a WebSocket-only run, which has no loads_hits_total at all.
        with open(DASHBOARD) as f:
            dashboard = json.load(f)
        panels = {p["title"]: {t["refId"]: t["expr"] for t in p["targets"]}
                  for p in dashboard["panels"]}
        [selector] = [v for v in dashboard["templating"]["list"] if v["name"] == "run"]
        # The first run's series must outlive the second run: a retention longer than setUp's.
        controller = Controller(extra=("--max-local-workers", "2", "--metrics-retention", "120"))
        self.addCleanup(controller.close)
        controller.start_workers(2)
        target = controller.metrics.split("//")[1].split("/")[0]
        prometheus = Prometheus(target)
        try:
            with harness.Nginx() as nginx:
                result = harness.run_runner(["--controller", controller.grpc, "--url", nginx.url,
                                             "--workers", "2", "-u", "2", "-d", "3"], timeout=60)
                self.assertEqual(result.code, 0, harness.describe(result))
            http_run = self.run_id(scrape(controller.metrics))
            with harness.WsServer(echo_delay=0.001) as server:
                result = harness.run_runner([
                    "websocket_example.TestWebSocket.test_echo", "--test-path",
                    harness.examples_dir(), "--server-url", server.url, "--controller",
                    controller.grpc, "--workers", "2", "-u", "2", "-d", "3"], timeout=60)
                self.assertEqual(result.code, 0, harness.describe(result))
            text = scrape(controller.metrics)
            runs = {k.split('run="')[1].split('"')[0]
                    for k in samples(text, "loads_planned_users")}
            [ws_run] = runs - {http_run}
            self.assertEqual(self.run_id(text), http_run, "the WebSocket run sent HTTP requests")
            time.sleep(2.5)  # two more scrapes after the runs

            # The run selector offers both runs: the WebSocket one has no HTTP series.
            self.assertLessEqual({http_run, ws_run},
                                 set(prometheus.label_values(selector["definition"])))
            self.assertFalse(prometheus.query(f'loads_hits_total{{run="{ws_run}"}}'))

            # The error rate of a clean run is 0, one series per run with requests (the
            # WebSocket run has none: no rate to show), with the selector on All.
            error_rate = panels["Error rate"]["A"]
            for selected in (http_run, ".*"):
                with self.subTest(selected=selected):
                    answer = prometheus.query(dashboard_promql(error_rate, selected))
                    self.assertEqual({r["metric"].get("run"): r["value"][1] for r in answer},
                                     {http_run: "0"})

            # Dropped messages: every reason at 0 from the controller's start, none missing.
            dropped = prometheus.query(dashboard_promql(panels["Controller health"]["B"], ".*"))
            self.assertTrue(dropped, "no data for the dropped messages on a clean cluster")
            self.assertEqual({r["value"][1] for r in dropped}, {"0"})
            self.assertIn("malformed", {r["metric"]["reason"] for r in dropped})
        finally:
            prometheus.close()


if __name__ == "__main__":
    unittest.main()
