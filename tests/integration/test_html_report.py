"""The HTML report (--output html:FILE) opened in a real headless Chromium: it loads with no
console error and no request outside the file, every chart holds exactly the JSON report's
series (read back from Chart.js), the tables hold the report's numbers, and text from the run
stays text. A screenshot is left in build/test-artifacts/ for a person to look at.

Run: LOADS_BIN_DIR=build/bin /usr/bin/python3 -m unittest -v test_html_report   (from tests/integration)
"""

import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browser  # noqa: E402
import harness  # noqa: E402

EXIT_THRESHOLDS = 10

TABLES = """JSON.stringify(Object.fromEntries(Array.from(document.querySelectorAll('table[id]')).map(
  (t) => [t.id, Array.from(t.tBodies[0].rows).map((r) => Array.from(r.cells).map(
    (c) => c.textContent))])))"""


class HtmlReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.chromium = browser.Chromium()

    @classmethod
    def tearDownClass(cls):
        cls.chromium.close()

    def run_with_html(self, args, expected_code=0):
        tmp = tempfile.mkdtemp(prefix="loads-html-")
        self.addCleanup(lambda: shutil.rmtree(tmp, ignore_errors=True))
        path = os.path.join(tmp, "report.html")
        result = harness.run_runner([*args, "--output", f"html:{path}"], timeout=60)
        harness.assert_no_crash(self, result)
        self.assertEqual(result.code, expected_code, harness.describe(result))
        return result, path

    def assert_clean_load(self, page, url):
        self.assertEqual(page.exceptions, [])
        self.assertEqual([c for c in page.console if c[0] in ("error", "warning", "assert")], [])
        self.assertEqual(page.log_errors, [])
        # The page is the whole report: it asked for nothing but itself.
        self.assertEqual(set(page.requests), {url})

    def test_the_report_file_shows_the_run_as_the_json_report_has_it(self):
        with harness.Nginx() as nginx:
            result, path = self.run_with_html(
                ["--url", nginx.url, "-u", "3", "-d", "4", "--threshold", "p99<5s",
                 "--threshold", "p50<1us"], expected_code=EXIT_THRESHOLDS)
            logged = nginx.access_log_count()
        report = result.report
        self.assertEqual(report["hits"], logged)
        url = "file://" + path
        page = self.chromium.open(url, expressions=(browser.CHARTS, TABLES, "document.title",
                                                    "document.getElementById('verdict').textContent"),
                                  wait_for="document.getElementById('loads-report')"
                                           ".dataset.rendered === 'true'",
                                  screenshot=True)
        with open(os.path.join(browser.artifact_dir(), "html_report.png"), "wb") as f:
            f.write(page.screenshot)
        self.assert_clean_load(page, url)

        charts = json.loads(page.values[browser.CHARTS])
        series = report["series"]
        step = series["step_seconds"]
        points = len(series["seconds"])
        self.assertGreaterEqual(points, 4)
        self.assertEqual(sorted(charts), ["chart-distribution", "chart-errors", "chart-latency",
                                          "chart-rps", "chart-users"])
        for name in ("chart-rps", "chart-errors", "chart-users", "chart-latency"):
            self.assertEqual(len(charts[name]["labels"]), points, name)
        self.assertEqual(charts["chart-rps"]["datasets"][0]["data"],
                         [h / step for h in series["hits"]])
        self.assertEqual(sum(charts["chart-rps"]["datasets"][0]["data"]) * step, logged)
        self.assertEqual([d["data"] for d in charts["chart-errors"]["datasets"]],
                         [[n / step for n in series[k]] for k in ("hit_errors", "errors",
                                                                  "failures")])
        self.assertEqual(charts["chart-users"]["datasets"][0]["data"], series["active_users"])
        for dataset, key in zip(charts["chart-latency"]["datasets"],
                                ("p50_seconds", "p90_seconds", "p99_seconds")):
            self.assertEqual(len(dataset["data"]), points)
            for shown, value in zip(dataset["data"], series[key]):
                if value is None:
                    self.assertIsNone(shown)
                else:
                    self.assertAlmostEqual(shown, value * 1000, places=9)
        latency = report["latency_seconds"]
        self.assertEqual(charts["chart-distribution"]["labels"],
                         ["min", "p50", "p90", "p95", "p99", "p99.9", "max"])
        for shown, key in zip(charts["chart-distribution"]["datasets"][0]["data"],
                              ("min", "p50", "p90", "p95", "p99", "p99_9", "max")):
            self.assertAlmostEqual(shown, latency[key] * 1000, places=9)

        tables = json.loads(page.values[TABLES])
        summary = dict(tables["summary"])
        self.assertEqual(summary["Hits"], f"{logged:,}")
        self.assertEqual(summary["Success"], f"{report['tests']['success']:,}")
        self.assertEqual(summary["Started"], report["started"])
        self.assertEqual(tables["thresholds"],
                         [["PASS", "p99<5s", report["thresholds"][0]["observed_text"], ""],
                          ["FAIL", "p50<1us", report["thresholds"][1]["observed_text"], ""]])
        self.assertEqual(page.values["document.getElementById('verdict').textContent"],
                         "1 of 2 thresholds failed")
        self.assertEqual([row[:3] for row in tables["urls"]],
                         [[f"GET {nginx.url}", f"{logged:,}", "0"]])
        self.assertEqual(tables["status-codes"], [["200", f"{logged:,}"]])

    def test_text_from_the_run_stays_text(self):
        # The test name comes from the command line (and error messages from servers): a
        # </script> in it must neither end the page's script nor run.
        hostile = "/</script><script>window.pwned=1</script><!--"
        with harness.Nginx() as nginx:
            result, path = self.run_with_html(["--url", nginx.url + hostile[1:], "-u", "1",
                                               "--hits", "5"])
        self.assertEqual(result.report["status_codes"], {"404": 5})
        with open(path) as f:
            self.assertEqual(f.read().count("</script>"), 3)  # the page's own three
        url = "file://" + path
        page = self.chromium.open(url, expressions=("typeof window.pwned",
                                                    "document.querySelector('h1').textContent"),
                                  wait_for="document.getElementById('loads-report')"
                                           ".dataset.rendered === 'true'")
        self.assert_clean_load(page, url)
        self.assertEqual(page.values["typeof window.pwned"], "undefined")
        self.assertEqual(page.values["document.querySelector('h1').textContent"],
                         "Loads report: " + result.report["test"])
        self.assertIn("</script>", result.report["test"])

    def test_a_one_hit_run_renders(self):
        # The smallest run: one point in each chart, no thresholds, the verdict from the
        # executions.
        with harness.Nginx() as nginx:
            result, path = self.run_with_html(["--url", nginx.url, "-u", "1", "--hits", "1"])
        url = "file://" + path
        page = self.chromium.open(url, expressions=(browser.CHARTS, TABLES,
                                                    "document.getElementById('verdict').textContent"),
                                  wait_for="document.getElementById('loads-report')"
                                           ".dataset.rendered === 'true'")
        self.assert_clean_load(page, url)
        self.assertEqual(page.values["document.getElementById('verdict').textContent"],
                         "Every execution succeeded")
        self.assertEqual(dict(json.loads(page.values[TABLES])["summary"])["Hits"], "1")
        charts = json.loads(page.values[browser.CHARTS])
        self.assertEqual(charts["chart-rps"]["datasets"][0]["data"],
                         [float(h) for h in result.report["series"]["hits"]])


if __name__ == "__main__":
    unittest.main()
