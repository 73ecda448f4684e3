// The optional KEDA ScaledObject of the chart helm/loads (worker.keda), rendered by
// tools/helm-render (not Helm; see lib.mjs; helm.test.mjs has real Helm render all-options.yaml,
// which has it, byte for byte the same and valid). It scales the standing workers' Deployment on
// the controller's own metrics, read from Prometheus: by default the workers in use
// (loads_workers{state="busy"}) plus one per run waiting for its workers
// (loads_runs{state="assigning"}), of this release's controller as its ServiceMonitor's targets
// carry them, and KEDA keeps ceil(that / threshold) workers. Checked here: nothing by default; each
// value in its field; the object against KEDA's CRD schema (npm @kubernetes-models/keda, KEDA
// 2.10.1) without unknown fields, its scaleTargetRef on the worker Deployment, which then has no
// replicas; the default query through promtool on example series (this release's controller
// only), and on the series a real loads-controller exports; the mutual exclusion with
// worker.autoscaling and the other values the templates and values.schema.json refuse; NOTES.txt
// and the PrometheusRule's standing pool; all-options.yaml covering every KEDA value (the HPA is
// examples/autoscaling.yaml's). No KEDA runs here: what KEDA does with the object is its
// documentation's word.
//
//   node --test tests/helm/keda.test.mjs   (LOADS_HELM_RENDER: a built renderer; LOADS_BIN_DIR: the
//                                          binaries, default build/bin; promtool on the PATH)

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { describe, it } from "node:test";

import yaml from "js-yaml";

import {
  assertSchemaRefuses,
  binDir,
  chartDir,
  CONTROLLER,
  controllerBin,
  examplesDir,
  mergedValues,
  modelOf,
  NAMESPACE,
  RELEASE,
  render,
  renderNotes,
  repoRoot,
  runRenderer,
  schema,
  scratchDir,
  unknownFields,
  validateValues,
  WORKERS,
  writeTemp,
} from "./lib.mjs";

const allOptions = path.join(repoRoot, "tests/helm/all-options.yaml");
const PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090";

// The smallest values that turn KEDA on.
const ON = `worker:\n  enabled: true\n  keda:\n    enabled: true\n    serverAddress: ${PROMETHEUS}\n`;

function objectsOf(files) {
  return render({ valueFiles: files, release: RELEASE, namespace: NAMESPACE }).map((d) => d.object);
}
const objects = (text) => objectsOf([writeTemp("values.yaml", text)]);
const find = (list, kind, name) => list.find((o) => o.kind === kind && (!name || o.metadata.name === name));

// What helm-render prints for these values, expected to fail: its stderr.
function renderFailure(text) {
  const file = writeTemp("values.yaml", text);
  const result = runRenderer(["--strict", "--release", RELEASE, "--namespace", NAMESPACE, "-f", file, chartDir]);
  assert.notEqual(result.status, 0, `rendered despite:\n${text}`);
  return result.stderr;
}

// The chart's default query for a controller Service in a namespace.
function defaultQuery(namespace = NAMESPACE, controller = CONTROLLER) {
  const selector = `namespace="${namespace}",service="${controller}"`;
  return `sum(loads_workers{${selector},state="busy"}) + sum(loads_runs{${selector},state="assigning"})`;
}

// Evaluates EXPR with promtool over SERIES ({series: "name{labels}", values: "..."}) at time 0;
// asserts it gives one sample without labels, of value EXPECTED.
function assertEvaluates(expr, series, expected) {
  const dir = mkdtempSync(path.join(scratchDir(), "promtool-"));
  const test = {
    rule_files: [],
    tests: [{ interval: "1m", input_series: series, promql_expr_test: [{ expr, eval_time: "0m", exp_samples: [{ labels: "{}", value: expected }] }] }],
  };
  writeFileSync(path.join(dir, "query.promtool.yaml"), yaml.dump(test));
  const result = spawnSync("promtool", ["test", "rules", "query.promtool.yaml"], { cwd: dir, encoding: "utf8" });
  if (result.error) throw result.error;
  assert.equal(result.status, 0, `${expr} is not ${expected}:\n${result.stdout}${result.stderr}`);
}

describe("the KEDA ScaledObject by default", () => {
  it("is off: no ScaledObject, for values.yaml and every example but keda.yaml", () => {
    assert.equal(mergedValues().worker.keda.enabled, false);
    const files = readdirSync(examplesDir).filter((f) => f.endsWith(".yaml") && f !== "keda.yaml");
    for (const file of ["", ...files]) {
      const list = objectsOf(file ? [path.join(examplesDir, file)] : []);
      assert.equal(find(list, "ScaledObject"), undefined, file || "values.yaml");
    }
    // Standing workers without an autoscaler keep their replicas.
    const workers = find(objects("worker: {enabled: true, replicas: 4}\n"), "Deployment", WORKERS);
    assert.equal(workers.spec.replicas, 4);
  });

  it("is not rendered with KEDA's values set but enabled false", () => {
    const list = objects(`worker:\n  enabled: true\n  keda:\n    enabled: false\n    serverAddress: ${PROMETHEUS}\n    minReplicaCount: 5\n`);
    assert.equal(find(list, "ScaledObject"), undefined);
    assert.equal(find(list, "Deployment", WORKERS).spec.replicas, 2);
  });
});

describe("worker.keda.enabled", () => {
  const list = objects(ON);
  const scaled = find(list, "ScaledObject", WORKERS);
  const values = mergedValues([writeTemp("on.yaml", ON)]);

  it("passes values.schema.json", () => {
    assert.ok(validateValues(values), JSON.stringify(validateValues.errors, null, 2));
  });

  it("renders a keda.sh/v1alpha1 ScaledObject valid against KEDA's CRD schema, with no unknown field", () => {
    assert.ok(scaled, "no ScaledObject");
    assert.equal(scaled.apiVersion, "keda.sh/v1alpha1");
    assert.equal(scaled.kind, "ScaledObject");
    assert.equal(scaled.metadata.namespace, NAMESPACE);
    assert.equal(scaled.metadata.labels["app.kubernetes.io/component"], "standing-worker");
    const Model = modelOf(scaled);
    assert.ok(Model, "no model for ScaledObject");
    assert.doesNotThrow(() => new Model(scaled).validate());
    assert.deepEqual(unknownFields(scaled), []);
  });

  it("the schema check is not vacuous: KEDA's schema refuses a number as threshold, a missing target, a misspelt field", () => {
    const Model = modelOf(scaled);
    const broken = structuredClone(scaled);
    broken.spec.triggers[0].metadata.threshold = 0.8;
    assert.throws(() => new Model(broken).validate(), /threshold must be string/);
    const noTarget = structuredClone(scaled);
    delete noTarget.spec.scaleTargetRef.name;
    assert.throws(() => new Model(noTarget).validate(), /scaleTargetRef must have required property name/);
    const misspelt = structuredClone(scaled);
    misspelt.spec.minReplicas = 2;
    assert.deepEqual(unknownFields(misspelt), ["/spec/minReplicas"]);
  });

  it("scales the standing workers' Deployment, which leaves the replica count to it; no HPA of the chart", () => {
    const workers = find(list, "Deployment", WORKERS);
    assert.ok(workers, "no worker Deployment");
    assert.deepEqual(scaled.spec.scaleTargetRef, { apiVersion: "apps/v1", kind: "Deployment", name: workers.metadata.name });
    assert.equal(scaled.metadata.namespace, workers.metadata.namespace);
    assert.ok(!("replicas" in workers.spec), "replicas would fight the HPA KEDA makes");
    assert.equal(find(list, "HorizontalPodAutoscaler"), undefined);
  });

  it("puts each default value in its field", () => {
    const keda = values.worker.keda;
    assert.deepEqual(
      {
        minReplicaCount: scaled.spec.minReplicaCount,
        maxReplicaCount: scaled.spec.maxReplicaCount,
        pollingInterval: scaled.spec.pollingInterval,
        cooldownPeriod: scaled.spec.cooldownPeriod,
      },
      { minReplicaCount: 2, maxReplicaCount: 10, pollingInterval: 15, cooldownPeriod: 300 },
    );
    assert.deepEqual(scaled.spec.advanced, {
      horizontalPodAutoscalerConfig: { behavior: { scaleDown: { stabilizationWindowSeconds: keda.scaleDownStabilizationWindowSeconds } } },
    });
    assert.equal(keda.scaleDownStabilizationWindowSeconds, values.worker.autoscaling.scaleDownStabilizationWindowSeconds);
    assert.deepEqual(scaled.spec.triggers, [
      {
        type: "prometheus",
        metadata: { serverAddress: PROMETHEUS, query: defaultQuery(), threshold: "0.8", ignoreNullValues: "false" },
      },
    ]);
    // KEDA reads trigger metadata as strings only.
    for (const [key, value] of Object.entries(scaled.spec.triggers[0].metadata)) assert.equal(typeof value, "string", key);
  });

  it("puts every other value in its field: a query of yours, authentication, bounds and periods", () => {
    const text = [
      "worker:",
      "  enabled: true",
      "  keda:",
      "    enabled: true",
      "    serverAddress: https://thanos.example.com:10902",
      '    query: sum(loads_workers{job="loads"})',
      "    threshold: 3",
      "    minReplicaCount: 0",
      "    maxReplicaCount: 50",
      "    pollingInterval: 5",
      "    cooldownPeriod: 60",
      "    scaleDownStabilizationWindowSeconds: 0",
      "    authenticationRef: {name: prom-creds, kind: ClusterTriggerAuthentication}",
      "    authModes: basic,tls",
      "",
    ].join("\n");
    const object = find(objects(text), "ScaledObject", WORKERS);
    assert.doesNotThrow(() => new (modelOf(object))(object).validate());
    assert.deepEqual(unknownFields(object), []);
    assert.equal(object.spec.minReplicaCount, 0);
    assert.equal(object.spec.maxReplicaCount, 50);
    assert.equal(object.spec.pollingInterval, 5);
    assert.equal(object.spec.cooldownPeriod, 60);
    assert.equal(object.spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds, 0);
    assert.deepEqual(object.spec.triggers, [
      {
        type: "prometheus",
        metadata: {
          serverAddress: "https://thanos.example.com:10902",
          query: 'sum(loads_workers{job="loads"})',
          threshold: "3",
          ignoreNullValues: "false",
          authModes: "basic,tls",
        },
        authenticationRef: { name: "prom-creds", kind: "ClusterTriggerAuthentication" },
      },
    ]);
  });

  it("follows namespaceOverride and the release's names in its default query", () => {
    const object = find(
      objectsOf([writeTemp("ns.yaml", `${ON}namespaceOverride: load-testing\nfullnameOverride: perf-loadtest\n`)]),
      "ScaledObject",
      "perf-loadtest-worker",
    );
    assert.equal(object.metadata.namespace, "load-testing");
    assert.equal(object.spec.scaleTargetRef.name, "perf-loadtest-worker");
    assert.equal(object.spec.triggers[0].metadata.query, defaultQuery("load-testing", "perf-loadtest-controller"));
  });

  it("is said in NOTES.txt", () => {
    const notes = renderNotes({ valueFiles: [writeTemp("on.yaml", ON)], release: RELEASE, namespace: NAMESPACE });
    assert.ok(notes.includes(`Standing workers: the Deployment ${WORKERS}, 2 to 10 pods, scaled by KEDA`), notes);
    assert.ok(notes.includes(`queried from ${PROMETHEUS}:\nthe workers in use plus one per run waiting for workers, divided by 0.8.`), notes);
    assert.ok(notes.includes("(serviceMonitor.enabled is false: with a scrape job of yours)"), notes);
    assert.ok(!notes.includes("<no value>"), notes);
  });

  it("makes KEDA's minimum the standing pool LoadsWorkersMissing expects, and none at 0", () => {
    const expr = (text) =>
      find(objects(`prometheusRule: {enabled: true}\n${text}`), "PrometheusRule").spec.groups[0].rules.find((r) => r.alert === "LoadsWorkersMissing")?.expr;
    assert.match(expr(`${ON}    minReplicaCount: 3\n`), / < 3$/);
    assert.equal(expr(`${ON}    minReplicaCount: 0\n`), undefined);
  });
});

describe("the default query", () => {
  const series = (name, labels, value) => ({ series: `${name}{${labels}}`, values: String(value) });
  const ours = `namespace="${NAMESPACE}",service="${CONTROLLER}"`;
  const query = find(objects(ON), "ScaledObject").spec.triggers[0].metadata.query;

  it("is the busy workers plus the runs waiting for workers, of this release's controller only (promtool)", () => {
    assertEvaluates(
      query,
      [
        series("loads_workers", `${ours},state="busy"`, 3),
        series("loads_workers", `${ours},state="idle"`, 5),
        series("loads_runs", `${ours},state="assigning"`, 1),
        series("loads_runs", `${ours},state="running"`, 2),
        series("loads_runs", `${ours},state="done"`, 40),
        // Another release's controller, and another namespace's.
        series("loads_workers", `namespace="${NAMESPACE}",service="other-loads-controller",state="busy"`, 7),
        series("loads_runs", `namespace="elsewhere",service="${CONTROLLER}",state="assigning"`, 9),
      ],
      4,
    );
  });

  it("is 0, not empty, on the series a real idle loads-controller exports (KEDA errs on empty)", async (t) => {
    if (!existsSync(controllerBin)) return t.skip(`no loads-controller in ${binDir}`);
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("KUBERNETES_")));
    const child = spawn(
      controllerBin,
      ["--grpc", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*", "--metrics", "127.0.0.1:0", "--no-state", "--max-local-workers", "0"],
      { stdio: ["ignore", "pipe", "pipe"], env },
    );
    try {
      let output = "";
      const metricsUrl = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`loads-controller did not start:\n${output}`)), 15000);
        const read = (chunk) => {
          output += chunk;
          const line = /^loads-controller listening: .* metrics (\S+)/m.exec(output);
          if (line) {
            clearTimeout(timer);
            resolve(line[1]);
          }
        };
        child.stdout.on("data", read);
        child.stderr.on("data", read);
        child.on("exit", (code) => reject(new Error(`loads-controller exited (${code}):\n${output}`)));
      });
      const get = () =>
        new Promise((resolve, reject) => {
          http.get(metricsUrl, { timeout: 5000 }, (res) => {
            let body = "";
            res.on("data", (c) => (body += c));
            res.on("end", () => resolve(body));
          }).on("error", reject);
        });
      // The gauges are set every second.
      let body = "";
      for (let i = 0; i < 50 && !/^loads_runs\{/m.test(body); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        body = await get();
      }
      const lines = body.split("\n").filter((l) => /^loads_(workers|runs)\{/.test(l));
      for (const needed of ['loads_workers{state="busy"}', 'loads_workers{state="idle"}', 'loads_runs{state="assigning"}']) {
        assert.ok(lines.some((l) => l.startsWith(`${needed} `)), `the controller does not export ${needed}:\n${body}`);
      }
      // As Prometheus stores them through the ServiceMonitor: with the target's namespace and service.
      const input = lines.map((l) => {
        const [, name, labels, value] = /^(\w+)\{(.*)\} (\S+)$/.exec(l);
        return series(name, `${ours},${labels}`, Number(value));
      });
      assertEvaluates(query, input, 0);
    } finally {
      child.kill("SIGTERM");
      await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once("exit", resolve)));
    }
  });

  it("and the docs say what it counts, and what it cannot see", () => {
    const readme = readFileSync(path.join(chartDir, "README.md"), "utf8");
    assert.ok(readme.includes("## Autoscaling the standing workers"), "README.md section");
    assert.ok(readme.includes('sum(loads_workers{namespace="<namespace>",service="<fullname>-controller",state="busy"})'), "README.md query");
    assert.match(readme, /KEDA never sees the\s+workers a refused run asked for/);
    const metrics = readFileSync(path.join(repoRoot, "docs/metrics.md"), "utf8");
    for (const metric of ["loads_workers", "loads_runs"]) assert.ok(metrics.includes(`| \`${metric}\` |`), metric);
  });
});

describe("KEDA values the chart refuses", () => {
  it("fails with KEDA and the chart's HorizontalPodAutoscaler both on", () => {
    const stderr = renderFailure(`${ON}  autoscaling: {enabled: true}\n`);
    assert.match(
      stderr,
      /execution error at \(loads\/templates\/worker-keda\.yaml:\d+:\d+\): worker\.keda\.enabled and worker\.autoscaling\.enabled are both true: KEDA's ScaledObject and the chart's HorizontalPodAutoscaler would both own the standing workers' replica count; choose one/,
    );
  });

  const failures = [
    ["without standing workers", `worker:\n  keda: {enabled: true, serverAddress: ${PROMETHEUS}}\n`, /worker\.keda\.enabled scales the standing workers, but worker\.enabled is false/],
    ["without a Prometheus to ask", "worker:\n  enabled: true\n  keda: {enabled: true}\n", /worker\.keda\.enabled needs worker\.keda\.serverAddress/],
    ["with its minimum above its maximum", `${ON}    minReplicaCount: 5\n    maxReplicaCount: 2\n`, /worker\.keda\.minReplicaCount \(5\) is above worker\.keda\.maxReplicaCount \(2\)/],
    ["scaling to 0 without the launcher", `${ON}    minReplicaCount: 0\nlauncher: {enabled: false}\n`, /worker\.keda\.minReplicaCount is 0 and launcher\.enabled is false/],
    ["with a TriggerAuthentication but no authModes", `${ON}    authenticationRef: {name: prom-creds}\n`, /worker\.keda\.authenticationRef\.name \(prom-creds\) needs worker\.keda\.authModes/],
  ];
  for (const [what, text, message] of failures) {
    it(`fails ${what}`, () => {
      assert.match(renderFailure(text), message);
    });
  }

  it("renders scaling to 0 with the launcher", () => {
    assert.equal(find(objects(`${ON}    minReplicaCount: 0\n`), "ScaledObject").spec.minReplicaCount, 0);
  });

  const schemaBad = [
    ["enabled without serverAddress", "worker:\n  keda: {enabled: true}\n", "minLength", "/worker/keda/serverAddress"],
    ["a serverAddress without http:// or https://", "worker:\n  keda: {serverAddress: prometheus:9090}\n", "pattern", "/worker/keda/serverAddress"],
    ["a threshold of 0", "worker:\n  keda: {threshold: 0}\n", "exclusiveMinimum", "/worker/keda/threshold"],
    ["a threshold as a string", 'worker:\n  keda: {threshold: "1"}\n', "type", "/worker/keda/threshold"],
    ["a negative minReplicaCount", "worker:\n  keda: {minReplicaCount: -1}\n", "minimum", "/worker/keda/minReplicaCount"],
    ["a maxReplicaCount of 0", "worker:\n  keda: {maxReplicaCount: 0}\n", "minimum", "/worker/keda/maxReplicaCount"],
    ["a pollingInterval of 0", "worker:\n  keda: {pollingInterval: 0}\n", "minimum", "/worker/keda/pollingInterval"],
    ["a fraction of a second as cooldownPeriod", "worker:\n  keda: {cooldownPeriod: 1.5}\n", "type", "/worker/keda/cooldownPeriod"],
    ["a scale-down window above an hour", "worker:\n  keda: {scaleDownStabilizationWindowSeconds: 4000}\n", "maximum", "/worker/keda/scaleDownStabilizationWindowSeconds"],
    ["another kind of authentication", "worker:\n  keda: {authenticationRef: {name: x, kind: Secret}}\n", "enum", "/worker/keda/authenticationRef/kind"],
    ["an unknown authMode", "worker:\n  keda: {authModes: oauth}\n", "pattern", "/worker/keda/authModes"],
    ["the HPA's key name", "worker:\n  keda: {minReplicas: 2}\n", "additionalProperties", "/worker/keda"],
  ];
  for (const [what, text, keyword, instancePath] of schemaBad) {
    it(`values.schema.json refuses ${what}`, () => assertSchemaRefuses(text, keyword, instancePath));
  }
});

describe("tests/helm/all-options.yaml and KEDA", () => {
  const values = mergedValues([allOptions]);
  const defaults = mergedValues().worker.keda;

  it("sets every KEDA value away from its default, and renders the ScaledObject, valid", () => {
    const keda = values.worker.keda;
    assert.equal(keda.enabled, true);
    for (const key of Object.keys(defaults)) {
      if (key === "authenticationRef") {
        for (const sub of Object.keys(defaults.authenticationRef)) assert.notDeepEqual(keda.authenticationRef[sub], defaults.authenticationRef[sub], `authenticationRef.${sub}`);
      } else {
        assert.notDeepEqual(keda[key], defaults[key], key);
      }
    }
    const list = objectsOf([allOptions]);
    const fullname = values.fullnameOverride;
    const object = find(list, "ScaledObject", `${fullname}-worker`);
    assert.ok(object, "no ScaledObject");
    assert.doesNotThrow(() => new (modelOf(object))(object).validate());
    assert.deepEqual(unknownFields(object), []);
    assert.equal(object.spec.scaleTargetRef.name, find(list, "Deployment", `${fullname}-worker`).metadata.name);
    assert.equal(object.spec.triggers[0].metadata.query, keda.query);
    // The chart's HPA is off there (the two are exclusive) ...
    assert.equal(values.worker.autoscaling.enabled, false);
    assert.equal(find(list, "HorizontalPodAutoscaler"), undefined);
  });

  it("leaves the chart's HorizontalPodAutoscaler to examples/autoscaling.yaml, which renders it and no ScaledObject", () => {
    const list = objectsOf([path.join(examplesDir, "autoscaling.yaml")]);
    assert.ok(find(list, "HorizontalPodAutoscaler"), "no HPA");
    assert.equal(find(list, "ScaledObject"), undefined);
  });

  it("examples/keda.yaml renders the ScaledObject with the ServiceMonitor that feeds its Prometheus", () => {
    const list = objectsOf([path.join(examplesDir, "keda.yaml")]);
    const object = find(list, "ScaledObject", WORKERS);
    assert.ok(object, "no ScaledObject");
    assert.ok(find(list, "ServiceMonitor"), "no ServiceMonitor");
    assert.equal(object.spec.triggers[0].metadata.query, defaultQuery());
  });
});
