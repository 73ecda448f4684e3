// Tests of the chart's monitoring objects, rendered by tools/helm-render (not Helm; see lib.mjs):
// the PrometheusRule (its alerts, checked by `promtool check rules` and unit-tested by `promtool
// test rules` with alerts.promtool.yaml), the workers' PodMonitor (standing and launched), the ServiceMonitor's
// scrape options and the controller's metrics token, and the dashboard ConfigMap's namespace;
// what values.schema.json refuses of their values; and, without a Prometheus, that every PromQL
// expression of the dashboard parses and that docs/metrics.md counts them right (test_metrics.py
// evaluates them against a real Prometheus).
//
//   node --test tests/helm/monitoring.test.mjs   (LOADS_HELM_RENDER: a built renderer; promtool
//                                                 from Debian's prometheus package on the PATH)

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import yaml from "js-yaml";

import {
  assertSchemaRefuses,
  chartDir,
  CONTROLLER,
  FULLNAME,
  launchedPodOf,
  mergedValues,
  modelOf,
  NAMESPACE,
  RELEASE,
  render,
  repoRoot,
  runRenderer,
  schema,
  scratchDir,
  selects,
  unknownFields,
  validateValues,
  writeTemp,
} from "./lib.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const ALERTS = {
  controllerDown: "LoadsControllerDown",
  runFailed: "LoadsRunFailed",
  runPartial: "LoadsRunPartial",
  workersMissing: "LoadsWorkersMissing",
  messagesDropped: "LoadsMessagesDropped",
};
// How the rules find the controller's series by default: the labels the Prometheus Operator
// gives the ServiceMonitor's targets.
const DEFAULT_SELECTOR = `namespace="${NAMESPACE}",service="${CONTROLLER}"`;


// The chart rendered as release demo in namespace perf with these values (YAML text).
function renderWith(text = "") {
  const files = text ? [writeTemp("values.yaml", text)] : [];
  return render({ valueFiles: files, release: RELEASE, namespace: NAMESPACE }).map((d) => d.object);
}

function renderFailure(text) {
  const file = writeTemp("values.yaml", text);
  const result = runRenderer(["--strict", "--release", RELEASE, "--namespace", NAMESPACE, "-f", file, chartDir]);
  assert.notEqual(result.status, 0, `rendered despite:\n${text}`);
  return result.stderr;
}

const find = (objects, kind, name) =>
  objects.find((o) => o.kind === kind && (!name || o.metadata.name === name));

function promtool(args, cwd) {
  const result = spawnSync("promtool", args, { cwd, encoding: "utf8" });
  if (result.error) throw result.error;
  return result;
}

// A folder holding the PrometheusRule's spec as rules.yaml, as `promtool` reads rule files.
function ruleFolder(rule) {
  const dir = mkdtempSync(path.join(scratchDir(), "rules-"));
  writeFileSync(path.join(dir, "rules.yaml"), yaml.dump(rule.spec));
  return dir;
}

function alertsOf(rule) {
  assert.equal(rule.spec.groups.length, 1);
  return Object.fromEntries(rule.spec.groups[0].rules.filter((r) => r.alert).map((r) => [r.alert, r]));
}

// Every value of the monitoring objects set away from its default.
const EVERYTHING = `
worker: {enabled: true, replicas: 3}
controller:
  metricsToken: {secretName: loads-metrics, key: scrape-token}
dashboards:
  namespace: grafana
  annotations: {grafana_folder: Loads}
serviceMonitor:
  enabled: true
  namespace: monitoring
  labels: {release: kube-prometheus-stack}
  interval: 5s
  scrapeTimeout: 4s
  jobLabel: app.kubernetes.io/name
  honorLabels: true
  relabelings:
    - {sourceLabels: [__meta_kubernetes_pod_node_name], targetLabel: node, action: replace}
  metricRelabelings:
    - {sourceLabels: [__name__], regex: "exposer_.*", action: drop}
podMonitor:
  enabled: true
  namespace: monitoring
  labels: {release: kube-prometheus-stack}
  interval: 10s
  scrapeTimeout: 5s
  jobLabel: app.kubernetes.io/component
  honorLabels: true
  relabelings:
    - {sourceLabels: [__meta_kubernetes_pod_name], targetLabel: worker}
  metricRelabelings:
    - {regex: "go_.*", action: labeldrop}
prometheusRule:
  enabled: true
  namespace: monitoring
  labels: {release: kube-prometheus-stack}
  alertLabels: {team: performance}
  alerts:
    controllerDown: {enabled: true, for: 2m, severity: page}
    runFailed: {enabled: true, for: 1m, severity: warning}
    runPartial: {enabled: false, for: "", severity: warning}
  extraRules:
    - record: loads:hits:rate1m
      expr: sum(rate(loads_hits_total[1m]))
    - alert: LoadsSlowRun
      expr: max by (run) (loads_request_duration_percentile_seconds{percentile="99"}) > 2
      for: 5m
      labels: {severity: info}
      annotations: {summary: "p99 of run {{ $labels.run }} above 2 s"}
`;

describe("monitoring objects off by default", () => {
  it("renders no PrometheusRule, PodMonitor nor ServiceMonitor, and the generated metrics token", () => {
    const objects = renderWith();
    for (const kind of ["PrometheusRule", "PodMonitor", "ServiceMonitor"]) {
      assert.equal(find(objects, kind), undefined, `${kind} rendered by default`);
    }
    const defaults = mergedValues();
    for (const key of ["prometheusRule", "podMonitor", "serviceMonitor"]) {
      assert.equal(defaults[key].enabled, false, key);
    }
    // /metrics asks for a token all the same (the controller refuses it beyond loopback without):
    // the tokens Secret's metrics-token (metrics-token.test.mjs has the rest).
    const container = find(objects, "Deployment", CONTROLLER).spec.template.spec.containers[0];
    assert.equal(container.args[container.args.indexOf("--metrics-token-file") + 1], "/var/run/loads-metrics/token");
    assert.ok("metrics-token" in find(objects, "Secret", `${FULLNAME}-tokens`).data);
    // The dashboard is on by default, in the release namespace.
    assert.equal(find(objects, "ConfigMap", `${FULLNAME}-dashboards`).metadata.namespace, NAMESPACE);
  });

  it("renders no PodMonitor with standing workers but podMonitor off", () => {
    assert.equal(find(renderWith("worker: {enabled: true}\n"), "PodMonitor"), undefined);
  });
});

describe("every monitoring option at once", () => {
  const objects = renderWith(EVERYTHING);
  const values = mergedValues([writeTemp("values.yaml", EVERYTHING)]);

  it("passes values.schema.json", () => {
    assert.ok(validateValues(values), JSON.stringify(validateValues.errors, null, 2));
  });

  it("renders valid objects without unknown fields, in the namespaces asked for", () => {
    const expected = {
      PrometheusRule: [`${FULLNAME}-alerts`, "monitoring"],
      PodMonitor: [`${FULLNAME}-worker`, "monitoring"],
      ServiceMonitor: [CONTROLLER, "monitoring"],
      ConfigMap: [`${FULLNAME}-dashboards`, "grafana"],
    };
    for (const [kind, [name, namespace]] of Object.entries(expected)) {
      const object = find(objects, kind, name);
      assert.ok(object, `no ${kind} ${name}`);
      const Model = modelOf(object);
      assert.ok(Model, `no model for ${kind}`);
      assert.doesNotThrow(() => new Model(object).validate(), kind);
      assert.deepEqual(unknownFields(object), [], `${kind}: fields its schema does not know`);
      assert.equal(object.metadata.namespace, namespace, kind);
      assert.equal(object.metadata.labels["app.kubernetes.io/instance"], RELEASE, kind);
    }
    for (const kind of ["PrometheusRule", "PodMonitor", "ServiceMonitor"]) {
      assert.equal(find(objects, kind).metadata.labels.release, "kube-prometheus-stack", kind);
    }
  });

  it("keeps the dashboard's sidecar label and folder annotation in its namespace", () => {
    const configMap = find(objects, "ConfigMap", `${FULLNAME}-dashboards`);
    assert.equal(configMap.metadata.labels.grafana_dashboard, "1");
    assert.deepEqual(configMap.metadata.annotations, { grafana_folder: "Loads" });
  });

  it("gives the ServiceMonitor its scrape options and the controller's token", () => {
    const monitor = find(objects, "ServiceMonitor");
    assert.equal(monitor.spec.jobLabel, "app.kubernetes.io/name");
    // The job label names a label the selected Service has.
    const service = find(objects, "Service", CONTROLLER);
    assert.ok(service.metadata.labels[monitor.spec.jobLabel], "the Service has no such label");
    assert.deepEqual(monitor.spec.namespaceSelector, { matchNames: [NAMESPACE] });
    assert.deepEqual(monitor.spec.endpoints, [
      {
        port: "metrics",
        path: "/metrics",
        interval: "5s",
        scrapeTimeout: "4s",
        honorLabels: true,
        relabelings: values.serviceMonitor.relabelings,
        metricRelabelings: values.serviceMonitor.metricRelabelings,
        authorization: { type: "Bearer", credentials: { name: "loads-metrics", key: "scrape-token" } },
      },
    ]);
    // The controller asks for the token the ServiceMonitor sends: the same key of the same
    // Secret, mounted where --metrics-token-file reads it.
    const pod = find(objects, "Deployment", CONTROLLER).spec.template.spec;
    const [container] = pod.containers;
    const flag = container.args.indexOf("--metrics-token-file");
    assert.ok(flag >= 0, "no --metrics-token-file");
    const file = container.args[flag + 1];
    const mount = container.volumeMounts.find((m) => file.startsWith(`${m.mountPath}/`));
    assert.ok(mount, `${file} is on no mounted volume`);
    assert.equal(mount.readOnly, true);
    const volume = pod.volumes.find((v) => v.name === mount.name);
    assert.equal(volume.secret.secretName, "loads-metrics");
    assert.deepEqual(volume.secret.items, [{ key: "scrape-token", path: path.basename(file) }]);
    assert.equal(volume.secret.defaultMode, 0o440);
  });

  it("points the PodMonitor at the metrics port of the standing and the launched workers only", () => {
    const monitor = find(objects, "PodMonitor");
    const workers = find(objects, "Deployment", `${FULLNAME}-worker`);
    const controller = find(objects, "Deployment", CONTROLLER);
    // A launched pod as the launcher makes it: its labels carry the controller's --instance.
    const launched = launchedPodOf(objects);
    assert.equal(launched.metadata.labels["app.kubernetes.io/instance"], RELEASE);
    assert.ok(selects(monitor.spec.selector, workers.spec.template.metadata.labels), "selects no standing worker");
    assert.ok(selects(monitor.spec.selector, launched.metadata.labels), "selects no launched worker");
    assert.ok(!selects(monitor.spec.selector, controller.spec.template.metadata.labels), "selects the controller");
    assert.deepEqual(monitor.spec.namespaceSelector, { matchNames: [launched.metadata.namespace] });
    assert.equal(monitor.spec.jobLabel, "app.kubernetes.io/component");
    for (const [what, spec] of [["standing", workers.spec.template.spec], ["launched", launched.spec]]) {
      const container = spec.containers.find((c) => c.name === "worker");
      const port = container.ports.find((p) => p.name === "metrics");
      assert.ok(port, `the ${what} workers have no port named metrics`);
      const metricsFlag = container.args[container.args.indexOf("--metrics") + 1];
      assert.equal(metricsFlag, `0.0.0.0:${port.containerPort}`, what);
    }
    assert.deepEqual(monitor.spec.podMetricsEndpoints, [
      {
        port: "metrics",
        path: "/metrics",
        interval: "10s",
        scrapeTimeout: "5s",
        honorLabels: true,
        relabelings: values.podMonitor.relabelings,
        metricRelabelings: values.podMonitor.metricRelabelings,
        // The workers ask for the controller's token: the same Secret and key.
        authorization: { type: "Bearer", credentials: { name: "loads-metrics", key: "scrape-token" } },
      },
    ]);
  });

  it("gives each alert its own for and severity, the common labels, and the extra rules", () => {
    const rule = find(objects, "PrometheusRule");
    const alerts = alertsOf(rule);
    assert.deepEqual(Object.keys(alerts).sort(), [
      "LoadsControllerDown",
      "LoadsMessagesDropped",
      "LoadsRunFailed",
      "LoadsSlowRun",
      "LoadsWorkersMissing",
    ]);
    assert.equal(alerts.LoadsControllerDown.for, "2m");
    assert.deepEqual(alerts.LoadsControllerDown.labels, { severity: "page", team: "performance" });
    assert.equal(alerts.LoadsRunFailed.for, "1m");
    assert.equal(alerts.LoadsMessagesDropped.for, undefined);
    assert.deepEqual(alerts.LoadsMessagesDropped.labels, { severity: "warning", team: "performance" });
    assert.equal(alerts.LoadsWorkersMissing.for, "10m");
    assert.match(alerts.LoadsWorkersMissing.expr, / < 3$/);
    // The extra rules come last, as written.
    assert.deepEqual(rule.spec.groups[0].rules.slice(-2), values.prometheusRule.extraRules);
  });

  it("passes promtool check rules", () => {
    const check = promtool(["check", "rules", "rules.yaml"], ruleFolder(find(objects, "PrometheusRule")));
    assert.equal(check.status, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /SUCCESS: 6 rules found/);
  });
});

describe("the PrometheusRule's alerts", () => {
  const withWorkers = "worker: {enabled: true, replicas: 2}\nprometheusRule: {enabled: true, alertLabels: {team: perf}}\n";

  it("pass promtool check rules and promtool test rules (alerts.promtool.yaml)", () => {
    const rule = find(renderWith(withWorkers), "PrometheusRule");
    assert.deepEqual(Object.keys(alertsOf(rule)).sort(), Object.values(ALERTS).sort());
    const dir = ruleFolder(rule);
    const check = promtool(["check", "rules", "rules.yaml"], dir);
    assert.equal(check.status, 0, check.stdout + check.stderr);
    copyFileSync(path.join(here, "alerts.promtool.yaml"), path.join(dir, "alerts.promtool.yaml"));
    const test = promtool(["test", "rules", "alerts.promtool.yaml"], dir);
    assert.equal(test.status, 0, test.stdout + test.stderr);
    assert.match(test.stdout, /SUCCESS/);
  });

  // A unit test that still passed without an alert would prove nothing about it.
  for (const [key, name] of Object.entries(ALERTS)) {
    it(`fail promtool test rules without ${name} (alerts.${key}.enabled=false)`, () => {
      const text = `${withWorkers}prometheusRule:\n  enabled: true\n  alertLabels: {team: perf}\n  alerts:\n    ${key}: {enabled: false}\n`;
      const rule = find(renderWith(text), "PrometheusRule");
      assert.equal(alertsOf(rule)[name], undefined, `${name} still rendered`);
      const dir = ruleFolder(rule);
      copyFileSync(path.join(here, "alerts.promtool.yaml"), path.join(dir, "alerts.promtool.yaml"));
      const test = promtool(["test", "rules", "alerts.promtool.yaml"], dir);
      assert.notEqual(test.status, 0, `passed without ${name}`);
      assert.match(test.stdout + test.stderr, new RegExp(`alertname: ${name}\\b`));
    });
  }

  it("select the controller by its ServiceMonitor's namespace and service, or by selector", () => {
    const bySelector = (text) => alertsOf(find(renderWith(text), "PrometheusRule"));
    for (const alert of Object.values(bySelector(withWorkers))) {
      assert.ok(alert.expr.includes(`{${DEFAULT_SELECTOR}`), `${alert.alert}: ${alert.expr}`);
    }
    // namespaceOverride moves the Service, and the selector with it.
    for (const alert of Object.values(bySelector(`${withWorkers}namespaceOverride: load-testing\n`))) {
      assert.ok(alert.expr.includes(`namespace="load-testing",service="${CONTROLLER}"`), alert.expr);
    }
    const custom = bySelector(`${withWorkers}prometheusRule:\n  enabled: true\n  selector: job="loads-controller"\n`);
    for (const alert of Object.values(custom)) {
      assert.ok(alert.expr.includes('{job="loads-controller"'), alert.expr);
      assert.ok(!alert.expr.includes("service="), alert.expr);
    }
    assert.equal(custom.LoadsControllerDown.expr, 'absent(up{job="loads-controller"} == 1)');
    const dir = ruleFolder(find(renderWith(`${withWorkers}prometheusRule:\n  enabled: true\n  selector: job="loads-controller"\n`), "PrometheusRule"));
    const check = promtool(["check", "rules", "rules.yaml"], dir);
    assert.equal(check.status, 0, check.stdout + check.stderr);
  });

  it("count the standing pool for LoadsWorkersMissing, and leave it out without one", () => {
    const expr = (text) => alertsOf(find(renderWith(`prometheusRule: {enabled: true}\n${text}`), "PrometheusRule")).LoadsWorkersMissing?.expr;
    assert.equal(expr("worker: {enabled: true, replicas: 4}\n"), `sum without (state) (loads_workers{${DEFAULT_SELECTOR}}) < 4`);
    // The autoscaler may go down to minReplicas: fewer is missing, more is not required.
    assert.match(expr("worker: {enabled: true, replicas: 4, autoscaling: {enabled: true, minReplicas: 3}}\n"), / < 3$/);
    // Launched workers come and go with runs: no pool to miss.
    assert.equal(expr(""), undefined);
    assert.equal(expr("worker: {enabled: true, replicas: 0}\n"), undefined);
  });

  it("take their labels, for and severity from the values, with the alert's severity first", () => {
    const text = [
      "prometheusRule:",
      "  enabled: true",
      "  labels: {prometheus: main}",
      "  alertLabels: {team: perf, runbook: loads}",
      "  alerts:",
      "    messagesDropped: {enabled: true, for: 30s, severity: info}",
      "",
    ].join("\n");
    const rule = find(renderWith(text), "PrometheusRule");
    assert.equal(rule.metadata.name, `${FULLNAME}-alerts`);
    assert.equal(rule.metadata.namespace, NAMESPACE);
    assert.equal(rule.metadata.labels.prometheus, "main");
    const alerts = alertsOf(rule);
    assert.equal(alerts.LoadsMessagesDropped.for, "30s");
    assert.deepEqual(alerts.LoadsMessagesDropped.labels, { severity: "info", team: "perf", runbook: "loads" });
    assert.deepEqual(alerts.LoadsControllerDown.labels, { severity: "critical", team: "perf", runbook: "loads" });
    for (const alert of Object.values(alerts)) {
      assert.ok(alert.annotations.summary && alert.annotations.description, alert.alert);
    }
  });

  it("refuse to render with no rule at all", () => {
    const off = Object.keys(ALERTS).map((k) => `    ${k}: {enabled: false}`).join("\n");
    const stderr = renderFailure(`prometheusRule:\n  enabled: true\n  alerts:\n${off}\n`);
    assert.match(stderr, /no rule to render/);
    // An extra rule alone is a rule.
    const rule = find(
      renderWith(`prometheusRule:\n  enabled: true\n  alerts:\n${off}\n  extraRules: [{record: "loads:up", expr: up}]\n`),
      "PrometheusRule",
    );
    assert.deepEqual(rule.spec.groups[0].rules, [{ record: "loads:up", expr: "up" }]);
  });
});

describe("the PodMonitor", () => {
  it("refuses to render without workers, standing or launched, whose metrics it scrapes", () => {
    assert.match(
      renderFailure("podMonitor: {enabled: true}\nlauncher: {enabled: false}\n"),
      /podMonitor\.enabled scrapes the worker pods, and there are none: worker\.enabled and launcher\.enabled are both false/,
    );
  });

  // Labels of pods the PodMonitor must leave alone: the controller's, another release's, another
  // application's of this release (an umbrella chart's), whatever their component.
  const strangers = [
    { "app.kubernetes.io/name": "loads", "app.kubernetes.io/instance": "other", "app.kubernetes.io/component": "worker" },
    { "app.kubernetes.io/name": "loads", "app.kubernetes.io/instance": "other", "app.kubernetes.io/component": "standing-worker" },
    { "app.kubernetes.io/name": "shop", "app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "worker" },
    { "app.kubernetes.io/name": "loads", "app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "test" },
  ];

  for (const [what, text, kinds] of [
    ["the launcher alone (the default)", "podMonitor: {enabled: true}\n", ["launched"]],
    ["standing workers alone", "podMonitor: {enabled: true}\nlauncher: {enabled: false}\nworker: {enabled: true}\n", ["standing"]],
    ["both kinds", "podMonitor: {enabled: true}\nworker: {enabled: true}\n", ["standing", "launched"]],
    // The launcher's pods are app.kubernetes.io/name=loads whatever nameOverride says.
    ["both kinds and nameOverride", "podMonitor: {enabled: true}\nworker: {enabled: true}\nnameOverride: loadtest\n", ["standing", "launched"]],
  ]) {
    it(`selects the worker pods there are, and no other, with ${what}`, () => {
      const objects = renderWith(text);
      const monitor = find(objects, "PodMonitor");
      const standing = objects.find((o) => o.kind === "Deployment" && o.metadata.labels["app.kubernetes.io/component"] === "standing-worker");
      const launched = launchedPodOf(objects);
      assert.equal(Boolean(standing), kinds.includes("standing"));
      assert.equal(Boolean(launched), kinds.includes("launched"));
      if (standing) assert.ok(selects(monitor.spec.selector, standing.spec.template.metadata.labels), "selects no standing worker");
      if (launched) assert.ok(selects(monitor.spec.selector, launched.metadata.labels), "selects no launched worker");
      const controller = objects.find((o) => o.kind === "Deployment" && o.metadata.labels["app.kubernetes.io/component"] === "controller");
      assert.ok(!selects(monitor.spec.selector, controller.spec.template.metadata.labels), "selects the controller");
      for (const labels of strangers) assert.ok(!selects(monitor.spec.selector, labels), JSON.stringify(labels));
      // A kind that is off is not selected either.
      const other = kinds.includes("launched")
        ? { "app.kubernetes.io/name": "loads", "app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "standing-worker" }
        : { "app.kubernetes.io/name": "loads", "app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "worker" };
      if (kinds.length === 1) assert.ok(!selects(monitor.spec.selector, other), JSON.stringify(other));
    });
  }

  it("uses the release namespace and Prometheus' defaults when nothing is set", () => {
    const monitor = find(renderWith("worker: {enabled: true}\npodMonitor: {enabled: true, interval: \"\"}\n"), "PodMonitor");
    assert.equal(monitor.metadata.namespace, NAMESPACE);
    assert.equal(monitor.spec.jobLabel, undefined);
    assert.deepEqual(monitor.spec.podMetricsEndpoints, [
      { port: "metrics", path: "/metrics", authorization: { type: "Bearer", credentials: { name: `${FULLNAME}-tokens`, key: "metrics-token" } } },
    ]);
  });
});

describe("the ServiceMonitor without a Secret of yours for the metrics token", () => {
  it("sends the generated token and keeps its defaults", () => {
    const monitor = find(renderWith("serviceMonitor: {enabled: true}\n"), "ServiceMonitor");
    assert.equal(monitor.spec.jobLabel, undefined);
    assert.deepEqual(monitor.spec.endpoints, [
      {
        port: "metrics",
        path: "/metrics",
        interval: "15s",
        authorization: { type: "Bearer", credentials: { name: `${FULLNAME}-tokens`, key: "metrics-token" } },
      },
    ]);
  });

  it("refuses an extra controller volume named like the token's", () => {
    const stderr = renderFailure("controller:\n  extraVolumes: [{name: metrics-token, emptyDir: {}}]\n");
    assert.match(stderr, /metrics-token/);
  });
});

describe("the dashboard's expressions", () => {
  const dashboard = JSON.parse(readFileSync(path.join(chartDir, "dashboards/loads.json"), "utf8"));
  const expressions = dashboard.panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, expr: t.expr })));
  const variables = dashboard.templating.list.filter((v) => v.type === "query");

  it("parse as PromQL (promtool check rules, with Grafana's variables filled in)", () => {
    // Grafana's variables are not PromQL: give them what Grafana would put there.
    const rules = expressions.map(({ expr }, i) => ({
      record: `dashboard:expression_${i}`,
      expr: expr.replaceAll("$run", ".*").replaceAll("$__rate_interval", "1m").replaceAll("$__range", "1h"),
    }));
    const dir = mkdtempSync(path.join(scratchDir(), "dashboard-"));
    writeFileSync(path.join(dir, "rules.yaml"), yaml.dump({ groups: [{ name: "dashboard", rules }] }));
    const check = promtool(["check", "rules", "rules.yaml"], dir);
    assert.equal(check.status, 0, check.stdout + check.stderr);
    assert.match(check.stdout, new RegExp(`SUCCESS: ${rules.length} rules found`));
  });

  it("select runs by a metric every run has from its start", () => {
    const [run] = variables.filter((v) => v.name === "run");
    assert.ok(run, "no run variable");
    // loads_hits_total misses WebSocket-only runs (no HTTP request) and runs before their first
    // request; the planned users are set when a run is assigned.
    assert.equal(run.definition, "label_values(loads_planned_users, run)");
    assert.equal(run.query.query, run.definition);
  });

  it("are counted right in docs/metrics.md", () => {
    const doc = readFileSync(path.join(repoRoot, "docs/metrics.md"), "utf8");
    const match = /every expression of the dashboard \((\d+)/.exec(doc);
    assert.ok(match, "docs/metrics.md no longer counts the dashboard's expressions");
    assert.equal(Number(match[1]), expressions.length + variables.length);
  });
});

describe("values.schema.json on the monitoring values", () => {
  it("accepts durations written as the Prometheus Operator writes them", () => {
    for (const text of [
      "serviceMonitor: {interval: 1m30s, scrapeTimeout: 500ms}\n",
      "prometheusRule:\n  alerts:\n    controllerDown: {enabled: true, for: 1h30m, severity: critical}\n",
      "podMonitor: {interval: \"\"}\n",
    ]) {
      const values = mergedValues([writeTemp("good.yaml", text)]);
      assert.ok(validateValues(values), `${text}\n${JSON.stringify(validateValues.errors, null, 2)}`);
    }
  });

  const bad = [
    ["podMonitor.enabled as a string", "podMonitor:\n  enabled: \"true\"\n", "type", "/podMonitor/enabled"],
    ["an unknown podMonitor key", "podMonitor:\n  port: metrics\n", "additionalProperties", "/podMonitor"],
    ["prometheusRule.enabled as a string", "prometheusRule:\n  enabled: \"yes\"\n", "type", "/prometheusRule/enabled"],
    ["an unknown alert", "prometheusRule:\n  alerts:\n    thresholdFailed: {enabled: true, for: \"\", severity: warning}\n", "additionalProperties", "/prometheusRule/alerts"],
    ["an alert without severity", "prometheusRule:\n  alerts:\n    runFailed: {severity: \"\"}\n", "minLength", "/prometheusRule/alerts/runFailed/severity"],
    ["an alert's severity removed", "prometheusRule:\n  alerts:\n    runFailed: {severity: null}\n", "required", "/prometheusRule/alerts/runFailed"],
    ["a for in words", "prometheusRule:\n  alerts:\n    runFailed: {for: 10 minutes}\n", "pattern", "/prometheusRule/alerts/runFailed/for"],
    ["a for with its units out of order", "prometheusRule:\n  alerts:\n    controllerDown: {for: 30s5m}\n", "pattern", "/prometheusRule/alerts/controllerDown/for"],
    ["a scrape interval with a unit twice", "serviceMonitor:\n  interval: 1m1m\n", "pattern", "/serviceMonitor/interval"],
    ["severity among the common alert labels", "prometheusRule:\n  alertLabels: {severity: page}\n", "not", "/prometheusRule/alertLabels"],
    ["an alert label that is no Prometheus label name", "prometheusRule:\n  alertLabels: {team-name: perf}\n", "pattern", "/prometheusRule/alertLabels"],
    ["an alert label value as a number", "prometheusRule:\n  alertLabels: {tier: 1}\n", "type", "/prometheusRule/alertLabels/tier"],
    ["a selector with braces", "prometheusRule:\n  selector: '{job=\"x\"}'\n", "pattern", "/prometheusRule/selector"],
    ["an extra rule without expr", "prometheusRule:\n  extraRules: [{alert: X}]\n", "required", "/prometheusRule/extraRules/0"],
    ["an extra rule both alert and record", "prometheusRule:\n  extraRules: [{alert: X, record: x, expr: up}]\n", "not", "/prometheusRule/extraRules/0"],
    ["an extra rule neither alert nor record", "prometheusRule:\n  extraRules: [{expr: up}]\n", "required", "/prometheusRule/extraRules/0"],
    ["an extra rule with an unknown key", "prometheusRule:\n  extraRules: [{alert: X, expr: up, keep_firing: 5m}]\n", "additionalProperties", "/prometheusRule/extraRules/0"],
    ["a relabeling with an unknown action", "serviceMonitor:\n  relabelings: [{action: rename}]\n", "enum", "/serviceMonitor/relabelings/0/action"],
    ["a relabeling written as in prometheus.yml", "podMonitor:\n  metricRelabelings: [{source_labels: [__name__]}]\n", "additionalProperties", "/podMonitor/metricRelabelings/0"],
    ["an empty relabeling", "serviceMonitor:\n  relabelings: [{}]\n", "minProperties", "/serviceMonitor/relabelings/0"],
    ["honorLabels as a string", "serviceMonitor:\n  honorLabels: \"true\"\n", "type", "/serviceMonitor/honorLabels"],
    ["a jobLabel with a space", "serviceMonitor:\n  jobLabel: app name\n", "pattern", "/serviceMonitor/jobLabel"],
    ["a dashboard namespace in capitals", "dashboards:\n  namespace: Grafana\n", "pattern", "/dashboards/namespace"],
    ["a metrics token key with a slash", "controller:\n  metricsToken: {key: tokens/metrics}\n", "pattern", "/controller/metricsToken/key"],
    ["a metrics token Secret in capitals", "controller:\n  metricsToken: {secretName: Metrics}\n", "pattern", "/controller/metricsToken/secretName"],
    ["a removed monitoring section", "prometheusRule: null\n", "required", ""],
  ];
  for (const [what, text, keyword, instancePath] of bad) {
    it(`refuses ${what}`, () => assertSchemaRefuses(text, keyword, instancePath));
  }
});

describe("the monitoring example", () => {
  it("turns on the PrometheusRule, the PodMonitor and the metrics token with the ServiceMonitor", () => {
    const objects = render({ valueFiles: [path.join(chartDir, "examples/monitoring.yaml")], release: RELEASE, namespace: NAMESPACE }).map((d) => d.object);
    const monitor = find(objects, "ServiceMonitor");
    const rule = find(objects, "PrometheusRule");
    assert.ok(monitor && rule && find(objects, "PodMonitor"));
    assert.ok(monitor.spec.endpoints[0].authorization, "the example's ServiceMonitor sends no token");
    assert.equal(rule.metadata.labels.release, monitor.metadata.labels.release, "rules and scrapes for one Prometheus");
  });
});
