/* The Loads report page: renders one JSON report (docs/report.md) with Chart.js.
 *
 * The HTML report file (--output html:FILE) embeds its report as window.LOADS_REPORT and renders
 * it once. A live page calls LoadsReport.render(root, report) again with every update: the
 * sections are rebuilt and the charts updated in place, so that they do not flicker.
 *
 * Everything the page shows comes from the report; nothing is fetched. Text from the run (test
 * and URL names, error messages) is only ever set as text, never as HTML.
 */
(function () {
  "use strict";

  // ---- formatting ----

  function seconds(s) {
    if (s === null || s === undefined) return "—";
    if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1e3).toFixed(2) + " ms";
    return s.toFixed(3) + " s";
  }

  function count(n) {
    if (n === null || n === undefined) return "—";
    return Number(n).toLocaleString("en-US");
  }

  function el(tag, attributes, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function table(head, rows, id) {
    const attributes = id ? { id: id } : {};
    return el("table", attributes, [
      el("thead", {}, [el("tr", {}, head.map((h) => el("th", { text: h })))]),
      el("tbody", {}, rows.map((row) => el("tr", {}, row.map((cell) =>
        cell instanceof Node ? el("td", {}, [cell]) : el("td", { text: String(cell) }))))),
    ]);
  }

  function section(title, children, id) {
    return el("section", id ? { id: id } : {}, [el("h2", { text: title })].concat(children));
  }

  // ---- the verdict and the summary (the seed's fields first) ----

  function verdict(report, state) {
    const failedThresholds = report.thresholds.filter((t) => !t.passed).length;
    const problems = report.tests.failures + report.tests.errors;
    let text;
    let kind;
    if (state === "running" || state === "assigning") {
      text = "Running: " + count(report.hits) + " hits so far";
      kind = "live";
    } else if (report.run && report.run.state !== "done") {
      text = "Run " + report.run.state + (report.run.error ? ": " + report.run.error : "");
      kind = "fail";
    } else if (report.incidents.length) {
      text = "The engine reported " + report.incidents.length + " incident(s)";
      kind = "fail";
    } else if (report.thresholds.length) {
      text = failedThresholds ? failedThresholds + " of " + report.thresholds.length +
                                    " thresholds failed"
                              : "All " + report.thresholds.length + " thresholds passed";
      kind = failedThresholds ? "fail" : "pass";
    } else {
      text = problems ? count(problems) + " executions failed or errored"
                      : "Every execution succeeded";
      kind = problems ? "fail" : "pass";
    }
    if (report.interrupted) text += " (interrupted)";
    return el("p", { id: "verdict", class: "verdict " + kind, text: text });
  }

  function summary(report) {
    const rows = [
      ["Hits", count(report.hits)],
      ["Started", report.started],
      ["Duration", report.duration_seconds.toFixed(2) + " seconds"],
      ["Approximate Average RPS", count(Math.round(report.rps))],
      ["Average request time", seconds(report.latency_seconds.mean)],
      ["Opened web sockets", count(report.websockets.opened)],
      ["Bytes received via web sockets", count(report.websockets.bytes_received)],
      ["Success", count(report.tests.success)],
      ["Errors", count(report.tests.errors)],
      ["Failures", count(report.tests.failures)],
      ["Executions started", count(report.executions.started)],
      ["Dropped executions", count(report.executions.dropped)],
      ["Model", report.model + (report.latency_corrected
                                    ? " (latency also measured from each intended start)"
                                    : " (latency uncorrected: users wait for the server)")],
    ];
    if (report.run) {
      rows.push(["Run", report.run.id + " on " + report.run.workers.length + " worker(s), " +
                            report.run.state]);
      if (report.run.lost_workers.length) {
        rows.push(["Lost workers", report.run.lost_workers.join(", ")]);
      }
    }
    return section("Summary", [table(["", ""], rows, "summary")]);
  }

  function thresholds(report) {
    if (!report.thresholds.length) return null;
    const rows = report.thresholds.map((t) => [
      el("span", { class: t.passed ? "pass" : "fail", text: t.passed ? "PASS" : "FAIL" }),
      t.threshold,
      t.observed_text,
      t.aborted_at_seconds === null ? "" : "aborted the run at " +
                                               t.aborted_at_seconds.toFixed(1) + " s",
    ]);
    return section("Thresholds", [table(["", "Threshold", "Observed", ""], rows, "thresholds")]);
  }

  // ---- charts over time ----

  const charts = {};  // by canvas id, kept across renders

  const colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

  function chart(id, type, labels, datasets, xTitle, yTitle, yScale) {
    const existing = charts[id];
    if (existing && existing.canvas.isConnected) {
      existing.data.labels = labels;
      datasets.forEach((d, i) => { existing.data.datasets[i].data = d.data; });
      existing.update("none");
      return existing.canvas.parentNode;
    }
    const canvas = el("canvas", { id: id });
    const box = el("div", { class: "chart" }, [canvas]);
    charts[id] = new Chart(canvas, {
      type: type,
      data: {
        labels: labels,
        datasets: datasets.map((d, i) => Object.assign({
          borderColor: colors[i % colors.length],
          backgroundColor: colors[i % colors.length],
          borderWidth: 1.5,
          pointRadius: labels.length > 120 ? 0 : 2,
          spanGaps: false,
        }, d)),
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { title: { display: true, text: xTitle } },
          y: Object.assign({ beginAtZero: true, title: { display: true, text: yTitle } },
                           yScale || {}),
        },
      },
    });
    return box;
  }

  function overTime(report) {
    const s = report.series;
    if (!s || !s.seconds.length) {
      return section("Over time", [el("p", {
        class: "note",
        text: "This report has no per-second series.",
      })]);
    }
    const step = s.step_seconds;
    const labels = s.seconds.map((t) => t.toFixed(step < 1 ? 1 : 0));
    const perSecond = (column) => column.map((n) => n / step);
    const ms = (column) => column.map((v) => (v === null ? null : v * 1000));
    const x = step === 1 ? "seconds into the run" : "seconds into the run (" + step + " s points)";
    return section("Over time", [
      el("h3", { text: "Requests per second" }),
      chart("chart-rps", "line", labels, [{ label: "hits/s", data: perSecond(s.hits) }], x, "hits/s"),
      el("h3", { text: "Errors per second" }),
      chart("chart-errors", "line", labels, [
        { label: "hits without a response/s", data: perSecond(s.hit_errors) },
        { label: "errored executions/s", data: perSecond(s.errors) },
        { label: "failed executions/s", data: perSecond(s.failures) },
      ], x, "per second"),
      el("h3", { text: "Active users" }),
      chart("chart-users", "line", labels, [{ label: "active users", data: s.active_users }], x,
            "users"),
      el("h3", { text: "Latency percentiles" }),
      chart("chart-latency", "line", labels, [
        { label: "p50 ms", data: ms(s.p50_seconds) },
        { label: "p90 ms", data: ms(s.p90_seconds) },
        { label: "p99 ms", data: ms(s.p99_seconds) },
      ], x, "milliseconds"),
    ], "over-time");
  }

  // ---- distribution and tables ----

  const percentileKeys = [["min", "min"], ["p50", "p50"], ["p90", "p90"], ["p95", "p95"],
                          ["p99", "p99"], ["p99_9", "p99.9"], ["max", "max"]];

  function distribution(report) {
    if (!report.latency_seconds.count) return null;
    const labels = percentileKeys.map((k) => k[1]);
    const sets = [{
      label: "request time (send to response), ms",
      data: percentileKeys.map((k) => report.latency_seconds[k[0]] * 1000),
    }];
    if (report.corrected_latency_seconds) {
      sets.push({
        label: "latency from the intended start, ms",
        data: percentileKeys.map((k) => report.corrected_latency_seconds[k[0]] * 1000),
      });
    }
    return section("Latency distribution", [
      // Logarithmic: the maximum is often a hundred times the median.
      chart("chart-distribution", "bar", labels, sets, "percentile", "milliseconds (log scale)",
            { type: "logarithmic", beginAtZero: false }),
      table(["", "count", "mean"].concat(labels), [
        ["request time", count(report.latency_seconds.count), seconds(report.latency_seconds.mean)]
            .concat(percentileKeys.map((k) => seconds(report.latency_seconds[k[0]]))),
      ].concat(report.corrected_latency_seconds ? [
        ["from intended start", count(report.corrected_latency_seconds.count),
         seconds(report.corrected_latency_seconds.mean)]
            .concat(percentileKeys.map((k) => seconds(report.corrected_latency_seconds[k[0]]))),
      ] : []), "percentiles"),
    ]);
  }

  function urls(report) {
    if (!report.urls.length) return null;
    return section("URLs (slowest first)", [table(
        ["URL", "hits", "errors", "mean", "p50", "p99", "max"],
        report.urls.map((u) => [u.name, count(u.hits), count(u.errors), seconds(u.mean_seconds),
                                seconds(u.p50_seconds), seconds(u.p99_seconds),
                                seconds(u.max_seconds)]),
        "urls")]);
  }

  function outcomes(report) {
    const parts = [];
    const codes = Object.entries(report.status_codes);
    if (codes.length) {
      parts.push(el("h3", { text: "Status codes" }),
                 table(["status", "responses"], codes.map(([c, n]) => [c, count(n)]),
                       "status-codes"));
    }
    const hitErrors = Object.entries(report.hit_errors);
    if (hitErrors.length) {
      parts.push(el("h3", { text: "Requests without a response" }),
                 table(["kind", "hits"], hitErrors.map(([k, n]) => [k, count(n)]), "hit-errors"));
    }
    if (report.errors.length) {
      parts.push(el("h3", { text: "Most common errors" }),
                 table(["message", "count"], report.errors.map((e) => [e.message, count(e.count)]),
                       "errors"));
    }
    const counters = Object.entries(report.counters);
    if (counters.length) {
      parts.push(el("h3", { text: "Counters" }),
                 table(["name", "value"], counters.map(([k, n]) => [k, count(n)]), "counters"));
    }
    if (report.incidents.length) {
      parts.push(el("h3", { text: "Engine incidents" }),
                 el("ul", { id: "incidents" }, report.incidents.map((i) => el("li", { text: i }))));
    }
    return parts.length ? section("Outcomes", parts) : null;
  }

  // ---- the page ----

  // `state`: the run's state when it is drawn live ("running", ...); absent for a report file.
  function render(root, report, state) {
    const header = el("header", {}, [
      el("h1", { text: "Loads report: " + report.test }),
      verdict(report, state),
    ]);
    const parts = [header, summary(report), thresholds(report), overTime(report),
                   distribution(report), urls(report), outcomes(report)];
    // The chart boxes are reused (chart() returns the live one), so replacing the children
    // keeps the charts and their canvases.
    root.replaceChildren(...parts.filter((p) => p !== null));
    root.setAttribute("data-rendered", "true");
  }

  window.LoadsReport = { render: render, charts: charts };

  if (window.LOADS_REPORT) {  // the report file; the live page renders what it receives
    render(document.getElementById("loads-report"), window.LOADS_REPORT);
  }
})();
