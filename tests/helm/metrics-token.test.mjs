// The metrics token of the chart helm/loads, rendered by tools/helm-render (not Helm; see lib.mjs),
// and the listen flags of every controller and worker it renders (standing, and launched: the
// ConfigMap's pod template as the launcher fills it in), against the real binaries. loads-controller refuses --metrics beyond loopback without --metrics-token-file, and
// --publish beyond loopback without CurveZMQ; loads-worker refuses --metrics beyond loopback
// without its own --metrics-token-file. So the chart generates a metrics token by default (key
// metrics-token of <fullname>-tokens, kept on upgrades by `lookup`; auth.existingSecret must hold
// it; controller.metricsToken.secretName and key name another), mounts that key alone for all,
// sends it from the ServiceMonitor and the PodMonitor (copied into their namespace when it is
// another one), probes the workers' metrics port over TCP (an HTTP probe would get 401), and
// without CURVE publishes results on the pod's loopback only.
//
// For values.yaml, every example, tests/helm/all-options.yaml and a few more values, each rendered
// loads-controller and loads-worker (a launched one with the launcher's args and the template's)
// runs with its rendered arguments (files the kubelet would mount
// written under a temporary root, listen ports made 0, KUBERNETES_* removed from the environment)
// and must get past its option checks: the controller then listens, or stops at the Kubernetes API
// it needs (launcher, CURVE key writer); the worker serves /metrics with the token only.
//
//   node --test tests/helm/metrics-token.test.mjs   (LOADS_HELM_RENDER: a built renderer;
//                                                    LOADS_BIN_DIR: the binaries, default build/bin)

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { describe, it } from "node:test";

import yaml from "js-yaml";

import {
  assertSchemaRefuses,
  binDir,
  chartCases,
  chartDir,
  CONTROLLER,
  controllerBin,
  examplesDir,
  flagsOf,
  FULLNAME,
  launchedPodOf,
  mergedValues,
  NAMESPACE,
  podSpecs,
  RELEASE,
  render,
  renderNotes,
  renderText,
  repoRoot,
  runRenderer,
  schema,
  scratchDir,
  stop,
  validateValues,
  WORKERS,
  writeTemp,
} from "./lib.mjs";

const TOKEN_FILE = "/var/run/loads-metrics/token";
const workerBin = path.join(binDir, "loads-worker");
const haveBinaries = existsSync(controllerBin) && existsSync(workerBin);

// values.yaml, every example, all-options.yaml, and values that reach what none of them does: the
// controller listening for real (no launcher, no CURVE), monitors in other namespaces with a
// generated token, a Secret of yours for the token with monitors elsewhere, no TLS.
const cases = [
  ...chartCases,
  {
    name: "no CURVE, no launcher, standing workers, no TLS",
    files: [writeTemp("plain.yaml", "curve: {enabled: false}\nlauncher: {enabled: false}\ntls: {enabled: false}\nworker: {enabled: true, replicas: 1}\n")],
  },
  {
    name: "no CURVE with the launcher and a NetworkPolicy",
    files: [writeTemp("no-curve.yaml", "curve: {enabled: false}\nnetworkPolicy: {enabled: true, allowFrom: {api: [{ipBlock: {cidr: 10.0.0.0/8}}]}}\n")],
  },
  {
    name: "monitors in other namespaces, generated token, another key",
    files: [
      writeTemp(
        "elsewhere.yaml",
        [
          "worker: {enabled: true}",
          "controller: {metricsToken: {key: scrape.token}}",
          "serviceMonitor: {enabled: true, namespace: monitoring}",
          "podMonitor: {enabled: true, namespace: workers-monitoring}",
          "",
        ].join("\n"),
      ),
    ],
  },
  {
    name: "monitors in one other namespace, token in a Secret of yours",
    files: [
      writeTemp(
        "yours-elsewhere.yaml",
        [
          "worker: {enabled: true}",
          "controller: {metricsToken: {secretName: prom-scrape}}",
          "serviceMonitor: {enabled: true, namespace: monitoring}",
          "podMonitor: {enabled: true, namespace: monitoring}",
          "",
        ].join("\n"),
      ),
    ],
  },
];

function renderCase(testCase, lookups = []) {
  return render({ valueFiles: testCase.files, release: RELEASE, namespace: NAMESPACE, lookups });
}

const objectsOf = (docs) => docs.map((d) => d.object);
const find = (objects, kind, name, namespace) =>
  objects.find((o) => o.kind === kind && o.metadata.name === name && (!namespace || o.metadata.namespace === namespace));
const decode = (value) => Buffer.from(value, "base64").toString();

// The object names of the release: <fullname>-... (templates/_helpers.tpl's loads.fullname).
function namesOf(values) {
  const name = values.nameOverride || "loads";
  const fullname = values.fullnameOverride || (RELEASE.includes(name) ? RELEASE : `${RELEASE}-${name}`);
  return { fullname, controller: `${fullname}-controller`, workers: `${fullname}-worker`, tokens: `${fullname}-tokens`, copy: `${fullname}-metrics-token` };
}

// What the chart should do with these values (templates/_helpers.tpl decides the same).
function expectations(values) {
  const names = namesOf(values);
  const ns = values.namespaceOverride || NAMESPACE;
  const tokensSecret = values.auth.existingSecret || names.tokens;
  const secretName = values.controller.metricsToken.secretName || tokensSecret;
  const generated = !values.auth.existingSecret && secretName === names.tokens;
  // The Secret each enabled monitor reads, in its own namespace.
  const monitors = {};
  for (const [kind, monitor] of [["ServiceMonitor", values.serviceMonitor], ["PodMonitor", values.podMonitor]]) {
    if (!monitor.enabled) continue;
    const at = monitor.namespace || ns;
    monitors[kind] = { namespace: at, secret: generated && at !== ns ? names.copy : secretName };
  }
  return { names, ns, secretName, key: values.controller.metricsToken.key, generated, monitors, curve: values.curve.enabled };
}

// The containers that serve /metrics: the controller's, the standing workers' and the launched
// workers' (a pod of the launcher's, made of the rendered template).
function servers(objects, names = namesOf(mergedValues())) {
  const list = [];
  const controller = find(objects, "Deployment", names.controller);
  list.push({ what: "controller", spec: controller.spec.template.spec, container: controller.spec.template.spec.containers[0] });
  const workers = find(objects, "Deployment", names.workers);
  if (workers) list.push({ what: "worker", spec: workers.spec.template.spec, container: workers.spec.template.spec.containers[0] });
  const launched = launchedPodOf(objects);
  if (launched) list.push({ what: "launched worker", spec: launched.spec, container: launched.spec.containers.find((c) => c.name === "worker") });
  return list;
}

// The volume and item a file of a container comes from: the mount whose path is the file's
// folder (a mount above it would be another volume's file), and the item of that path.
function mountedFile(spec, container, file) {
  const mount = container.volumeMounts.find((m) => m.mountPath === path.posix.dirname(file));
  if (!mount) return undefined;
  const volume = spec.volumes.find((v) => v.name === mount.name);
  const source = volume.secret ?? volume.configMap;
  const item = source?.items?.find((i) => i.path === path.posix.basename(file));
  return { mount, volume, item };
}

describe("the metrics token by default", () => {
  const docs = renderCase({ files: [writeTemp("w.yaml", "worker: {enabled: true}\nserviceMonitor: {enabled: true}\npodMonitor: {enabled: true}\n")] });
  const objects = objectsOf(docs);
  const secret = find(objects, "Secret", `${FULLNAME}-tokens`);
  const tokens = Object.fromEntries(Object.entries(secret.data).map(([k, v]) => [k, decode(v)]));

  it("is generated into the tokens Secret: 32 letters and digits, a token of its own", () => {
    assert.deepEqual(mergedValues().controller.metricsToken, { secretName: "", key: "metrics-token" });
    assert.deepEqual(Object.keys(tokens).sort(), ["api-token", "metrics-token", "worker-token"]);
    assert.match(tokens["metrics-token"], /^[A-Za-z0-9]{32}$/);
    assert.notEqual(tokens["metrics-token"], tokens["api-token"]);
    assert.notEqual(tokens["metrics-token"], tokens["worker-token"]);
    // Random: another render (no cluster, as helm template) has another one.
    const again = find(objectsOf(renderCase({ files: [] })), "Secret", `${FULLNAME}-tokens`);
    assert.notEqual(decode(again.data["metrics-token"]), tokens["metrics-token"]);
  });

  it("is what the controller and both kinds of workers read, and what both monitors send", () => {
    const all = servers(objects);
    assert.deepEqual(all.map((s) => s.what), ["controller", "worker", "launched worker"]);
    for (const { what, spec, container } of all) {
      assert.equal(flagsOf(container.args)["--metrics-token-file"], TOKEN_FILE, what);
      const { volume, item } = mountedFile(spec, container, TOKEN_FILE);
      assert.equal(volume.secret.secretName, `${FULLNAME}-tokens`, what);
      assert.deepEqual(volume.secret.items, [{ key: "metrics-token", path: "token" }], what);
    }
    for (const monitor of [find(objects, "ServiceMonitor", CONTROLLER), find(objects, "PodMonitor", WORKERS)]) {
      const [endpoint] = monitor.spec.endpoints ?? monitor.spec.podMetricsEndpoints;
      assert.deepEqual(endpoint.authorization, { type: "Bearer", credentials: { name: `${FULLNAME}-tokens`, key: "metrics-token" } });
    }
  });

  it("restarts the pods when it changes (checksum/secret covers it)", () => {
    const annotations = find(objects, "Deployment", WORKERS).spec.template.metadata.annotations;
    assert.ok(annotations["checksum/secret"]);
    const other = objectsOf(renderCase({ files: [writeTemp("w.yaml", "worker: {enabled: true}\n")] }));
    assert.notEqual(find(other, "Deployment", WORKERS).spec.template.metadata.annotations["checksum/secret"], annotations["checksum/secret"]);
  });
});

describe("the metrics token across upgrades (lookup)", () => {
  const options = { release: RELEASE, namespace: NAMESPACE };
  const install = render(options);
  const tokensDoc = install.find((d) => d.object.kind === "Secret" && d.object.metadata.name === `${FULLNAME}-tokens`);
  const others = install.filter((d) => d.object.kind === "Secret" && d !== tokensDoc).map((d) => d.text);

  it("keeps it: upgrades render the Secret and the pods as the install did", () => {
    const cluster = writeTemp("cluster.yaml", [tokensDoc.text, ...others].join("\n---\n"));
    const upgraded = render({ ...options, lookups: [cluster] });
    for (const [kind, name] of [["Secret", `${FULLNAME}-tokens`], ["Deployment", CONTROLLER]]) {
      const before = install.find((d) => d.object.kind === kind && d.object.metadata.name === name);
      const now = upgraded.find((d) => d.object.kind === kind && d.object.metadata.name === name);
      assert.equal(now.text, before.text, `${kind} ${name}`);
    }
  });

  it("adds one to the Secret of an older chart, keeping the API and worker tokens", () => {
    const old = structuredClone(tokensDoc.object);
    delete old.data["metrics-token"];
    const cluster = writeTemp("old.yaml", [yaml.dump(old), ...others].join("\n---\n"));
    const upgraded = find(objectsOf(render({ ...options, lookups: [cluster] })), "Secret", `${FULLNAME}-tokens`);
    assert.equal(upgraded.data["api-token"], old.data["api-token"]);
    assert.equal(upgraded.data["worker-token"], old.data["worker-token"]);
    assert.match(decode(upgraded.data["metrics-token"]), /^[A-Za-z0-9]{32}$/);
  });

  it("keeps the copies of the monitors' namespaces equal to it", () => {
    const files = [writeTemp("mon.yaml", "serviceMonitor: {enabled: true, namespace: monitoring}\n")];
    const first = render({ ...options, valueFiles: files });
    const secrets = first.filter((d) => d.object.kind === "Secret");
    const cluster = writeTemp("mon-cluster.yaml", secrets.map((d) => d.text).join("\n---\n"));
    const again = objectsOf(render({ ...options, valueFiles: files, lookups: [cluster] }));
    const installed = find(objectsOf(first), "Secret", `${FULLNAME}-tokens`).data["metrics-token"];
    assert.equal(find(objectsOf(first), "Secret", `${FULLNAME}-metrics-token`, "monitoring").data["metrics-token"], installed);
    assert.equal(find(again, "Secret", `${FULLNAME}-tokens`).data["metrics-token"], installed);
    assert.equal(find(again, "Secret", `${FULLNAME}-metrics-token`, "monitoring").data["metrics-token"], installed);
  });
});

for (const testCase of cases) {
  describe(`the metrics token and listen flags with ${testCase.name}`, () => {
    const docs = renderCase(testCase);
    const objects = objectsOf(docs);
    const values = mergedValues(testCase.files);
    const expected = expectations(values);

    it("passes values.schema.json", () => {
      assert.ok(validateValues(values), JSON.stringify(validateValues.errors, null, 2));
    });

    it("mounts the token the monitors send, that key alone and read-only, where --metrics-token-file reads it", () => {
      for (const { what, spec, container } of servers(objects, expected.names)) {
        const flags = flagsOf(container.args);
        assert.equal(flags["--metrics-token-file"], TOKEN_FILE, what);
        assert.ok(!("--insecure" in flags), `${what}: --insecure`);
        const file = mountedFile(spec, container, TOKEN_FILE);
        assert.ok(file?.item, `${what}: ${TOKEN_FILE} is no item of the volume mounted at its folder`);
        assert.deepEqual(file.mount, { name: "metrics-token", mountPath: path.posix.dirname(TOKEN_FILE), readOnly: true }, what);
        assert.deepEqual(
          file.volume,
          { name: "metrics-token", secret: { secretName: expected.secretName, items: [{ key: expected.key, path: "token" }], defaultMode: 0o440 } },
          what,
        );
        // No mount of the container lies inside another (the kubelet would shadow one by the other).
        const paths = container.volumeMounts.map((m) => m.mountPath);
        for (const a of paths) {
          for (const b of paths) {
            if (a !== b) assert.ok(!b.startsWith(`${a}/`), `${what}: ${b} is mounted inside ${a}`);
          }
        }
      }
      // Each monitor sends that Secret's key: the same Secret, or its copy in the monitor's namespace.
      for (const [kind, { namespace, secret }] of Object.entries(expected.monitors)) {
        const monitor = objects.find((o) => o.kind === kind);
        assert.equal(monitor.metadata.namespace, namespace, kind);
        const endpoints = monitor.spec.endpoints ?? monitor.spec.podMetricsEndpoints;
        assert.equal(endpoints.length, 1);
        assert.deepEqual(endpoints[0].authorization, { type: "Bearer", credentials: { name: secret, key: expected.key } }, kind);
      }
    });

    it("generates the token only when no Secret of yours holds it, and copies it where a monitor reads it", () => {
      const tokens = find(objects, "Secret", expected.names.tokens);
      if (expected.generated) {
        assert.match(decode(tokens.data[expected.key]), /^[A-Za-z0-9]{32}$/);
      } else if (tokens) {
        assert.ok(!("metrics-token" in tokens.data) && !(expected.key in tokens.data), "a generated token nobody reads");
      }
      const copies = objects.filter((o) => o.kind === "Secret" && o.metadata.name === expected.names.copy);
      const wanted = [...new Set(Object.values(expected.monitors).filter((m) => m.secret === expected.names.copy).map((m) => m.namespace))];
      assert.deepEqual(copies.map((c) => c.metadata.namespace).sort(), wanted.sort());
      for (const copy of copies) {
        assert.deepEqual(Object.keys(copy.data), [expected.key]);
        assert.equal(copy.data[expected.key], tokens.data[expected.key], "a copy of another token");
      }
      // NOTES.txt names the Secret, and says what to create where a monitor reads one of yours.
      const notes = renderNotes({ valueFiles: testCase.files, release: RELEASE, namespace: NAMESPACE });
      assert.ok(notes.includes(`the key ${expected.key} of the Secret ${expected.secretName}`), notes);
      for (const [kind, { namespace, secret }] of Object.entries(expected.monitors)) {
        const elsewhere = namespace !== expected.ns;
        assert.equal(notes.includes(`WARNING: the Prometheus Operator reads the ${kind}'s token in its own namespace, ${namespace}`), elsewhere && !expected.generated, notes);
        assert.equal(notes.includes(`into the Secret ${secret}`), elsewhere && expected.generated, notes);
      }
    });

    it("publishes results beyond the pod with CURVE only, Service and NetworkPolicy alike", () => {
      const container = find(objects, "Deployment", expected.names.controller).spec.template.spec.containers[0];
      const publish = flagsOf(container.args)["--publish"];
      const service = find(objects, "Service", expected.names.controller);
      const policy = objects.find((o) => o.kind === "NetworkPolicy");
      const policyPorts = (policy?.spec.ingress ?? []).flatMap((r) => r.ports.map((p) => p.port));
      if (expected.curve) {
        assert.equal(publish, "tcp://0.0.0.0:5556");
        assert.ok(container.ports.some((p) => p.name === "publish" && p.containerPort === 5556));
        assert.ok(service.spec.ports.some((p) => p.name === "publish" && p.port === 5556));
        if (policy) assert.ok(policyPorts.includes(5556));
      } else {
        assert.equal(publish, "tcp://127.0.0.1:5556");
        assert.ok(!container.ports.some((p) => p.name === "publish" || p.containerPort === 5556), "a container port nothing listens on");
        assert.ok(!service.spec.ports.some((p) => p.name === "publish" || p.port === 5556), "a Service port nothing listens on");
        assert.ok(!policyPorts.includes(5556), "the NetworkPolicy opens 5556");
      }
    });

    it("probes no /metrics over HTTP (it answers 401 without the token): standing workers over TCP", () => {
      for (const { owner, spec } of podSpecs(docs)) {
        for (const container of spec.containers) {
          for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
            const get = container[probe]?.httpGet;
            assert.ok(!get || !/metrics/.test(`${get.path} ${get.port}`), `${owner.metadata.name}/${container.name} ${probe}: ${JSON.stringify(get)}`);
          }
        }
      }
      const workers = find(objects, "Deployment", expected.names.workers);
      if (!workers) return;
      const [container] = workers.spec.template.spec.containers;
      assert.deepEqual(container.livenessProbe.tcpSocket, { port: "metrics" });
      const port = container.ports.find((p) => p.name === "metrics");
      assert.equal(flagsOf(container.args)["--metrics"], `0.0.0.0:${port.containerPort}`);
    });
  });
}

describe("the GitOps mode and the metrics token", () => {
  const options = (files) => ({ valueFiles: files, release: RELEASE, namespace: NAMESPACE });

  it("renders examples/gitops.yaml and all-options.yaml identically twice, reading the token from your Secret", () => {
    for (const file of [path.join(examplesDir, "gitops.yaml"), path.join(repoRoot, "tests/helm/all-options.yaml")]) {
      const first = renderText(options([file]));
      assert.equal(first, renderText(options([file])), file);
      assert.ok(!/^kind: Secret$/m.test(first), `${file}: a generated Secret`);
    }
    const docs = objectsOf(render(options([path.join(examplesDir, "gitops.yaml")])));
    const volume = find(docs, "Deployment", CONTROLLER).spec.template.spec.volumes.find((v) => v.name === "metrics-token");
    assert.equal(volume.secret.secretName, "loads-tokens");
    assert.deepEqual(volume.secret.items, [{ key: "metrics-token", path: "token" }]);
    // The example tells how to create that key.
    assert.match(readFileSync(path.join(examplesDir, "gitops.yaml"), "utf8"), /--from-literal=metrics-token=/);
  });

  it("names metrics-token among the keys of auth.existingSecret when it is missing", () => {
    const result = runRenderer(["--strict", "--release", RELEASE, "-f", writeTemp("g.yaml", "auth: {generate: false}\ntls: {enabled: false}\ncurve: {enabled: false}\n"), chartDir]);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /create a Secret with the keys api-token, worker-token and metrics-token/);
  });
});

describe("metrics token values the chart refuses", () => {
  const renderFails = (text, lookups = []) => {
    const args = ["--strict", "--release", RELEASE, "--namespace", NAMESPACE, "-f", writeTemp("v.yaml", text)];
    for (const l of lookups) args.push("--lookup", writeTemp("cluster.yaml", l));
    return runRenderer([...args, chartDir]);
  };

  it("refuses the key of the API or the worker token (schema and render)", () => {
    for (const key of ["api-token", "worker-token"]) {
      const text = `controller:\n  metricsToken: {key: ${key}}\n`;
      assertSchemaRefuses(text, "not", "/controller/metricsToken/key");
      const result = renderFails(text);
      assert.notEqual(result.status, 0);
      assert.match(result.stderr, new RegExp(`controller\\.metricsToken\\.key is "${key}": the metrics token must be a token of its own`));
    }
  });

  it("fails an upgrade whose Secret of yours has no such key, and says what to do; renders when it has one", () => {
    const secret = (name, keys) =>
      yaml.dump({ apiVersion: "v1", kind: "Secret", metadata: { name, namespace: NAMESPACE }, data: Object.fromEntries(keys.map((k) => [k, "eA=="])) });
    const existing = "auth: {existingSecret: loads-tokens}\n";
    const missing = renderFails(existing, [secret("loads-tokens", ["api-token", "worker-token"])]);
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /the Secret loads-tokens \(auth\.existingSecret\) has no key metrics-token: .*add it to the Secret/);
    assert.equal(renderFails(existing, [secret("loads-tokens", ["api-token", "worker-token", "metrics-token"])]).status, 0);
    // helm template: no cluster, nothing to check.
    assert.equal(renderFails(existing).status, 0);
    const own = "controller: {metricsToken: {secretName: prom, key: scrape}}\n";
    const wrongKey = renderFails(own, [secret("prom", ["metrics-token"])]);
    assert.match(wrongKey.stderr, /the Secret prom \(controller\.metricsToken\.secretName\) has no key scrape/);
    assert.equal(renderFails(own, [secret("prom", ["scrape"])]).status, 0);
  });

  it("refuses an extra worker volume named metrics-token", () => {
    const result = renderFails("worker:\n  enabled: true\n  extraVolumes:\n    - name: metrics-token\n      emptyDir: {}\n");
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /worker\.extraVolumes: the name "metrics-token" is one of the chart's volumes \(tokens, tmp, metrics-token, curve\)/);
  });

  it("documents where the token comes from in README.md and values.yaml", () => {
    const readme = readFileSync(path.join(chartDir, "README.md"), "utf8");
    const row = (name) => readme.split("\n").find((l) => l.startsWith(`| \`${name}\` |`)) ?? "";
    assert.match(row("auth.existingSecret"), /metrics-token/);
    assert.match(row("controller.metricsToken.secretName"), /generated/);
    assert.match(row("controller.metricsToken.key"), /api-token/);
    assert.match(row("curve.enabled"), /127\.0\.0\.1/);
    const values = readFileSync(path.join(chartDir, "values.yaml"), "utf8");
    assert.match(values, /metrics-token/);
    assert.match(values, /--publish tcp:\/\/127\.0\.0\.1:5556/);
  });
});

// ---- The rendered flags with the real binaries ---------------------------------------------

// The environment of a process outside any pod: without the Kubernetes service variables.
function envOutsideKubernetes() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("KUBERNETES_")));
}

const alnum = (n) => {
  const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  return [...randomBytes(n)].map((b) => chars[b % chars.length]).join("");
};

// A certificate and key pair, and a CA, for the TLS flags: those the chart generates by default.
const tlsFiles = (() => {
  const secret = find(objectsOf(render({ release: RELEASE, namespace: NAMESPACE })), "Secret", `${FULLNAME}-tls`);
  return { "tls.crt": decode(secret.data["tls.crt"]), "tls.key": decode(secret.data["tls.key"]), "ca.crt": decode(secret.data["ca.crt"]) };
})();

// What a file of a pod holds when the kubelet mounts it: a key of a Secret or ConfigMap the chart
// rendered, else (a Secret of yours, the public key the controller writes) a stand-in by flag.
function fileContent(objects, spec, container, flag, file) {
  const mounted = mountedFile(spec, container, file);
  if (mounted?.item) {
    const { volume, item } = mounted;
    const source = volume.secret
      ? find(objects, "Secret", volume.secret.secretName)
      : find(objects, "ConfigMap", volume.configMap.name);
    if (source?.data?.[item.key] !== undefined) return volume.secret ? decode(source.data[item.key]) : source.data[item.key];
  }
  const standIns = {
    "--token-file": () => `worker-${alnum(24)}\n`,
    "--api-token-file": () => `api-${alnum(24)}\n`,
    "--read-token-file": () => `read-${alnum(24)}\n`,
    "--metrics-token-file": () => `metrics-${alnum(24)}\n`,
    "--curve-key-file": () => `secret: ${alnum(40)}\n`,
    "--curve-server-key-file": () => `${alnum(40)}\n`,
    "--tls-cert": () => tlsFiles["tls.crt"],
    "--tls-key": () => tlsFiles["tls.key"],
    "--client-ca": () => tlsFiles["ca.crt"],
  };
  assert.ok(standIns[flag], `${flag} ${file}: a file the test has no content for`);
  return standIns[flag]();
}

const LISTEN = ["--grpc", "--metrics", "--health", "--web"];
const ZMQ_LISTEN = ["--zmq", "--publish"];
const DIRECTORIES = ["--state-dir", "--work-dir"];

// The rendered args made runnable here: $(VAR)s expanded as the kubelet would, every file under
// a temporary root with what the pod would see, listen ports 0 (hosts as rendered: the point),
// folders made. Returns {args, files: {flag: {path, content}}}.
function runnable(objects, spec, container, env) {
  const root = mkdtempSync(path.join(scratchDir(), "root-"));
  const args = container.args.map((arg) => arg.replace(/\$\(([A-Z_]+)\)/g, (_, name) => {
    assert.ok(name in env, `$(${name}) is not known`);
    return env[name];
  }));
  const files = {};
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    if (!flag.startsWith("--")) continue;
    const value = args[i + 1];
    if (value === undefined || value.startsWith("--")) continue;
    if (LISTEN.includes(flag)) {
      args[i + 1] = value.replace(/:\d+$/, ":0");
    } else if (ZMQ_LISTEN.includes(flag)) {
      args[i + 1] = value.replace(/:\d+$/, ":*");
    } else if (DIRECTORIES.includes(flag)) {
      args[i + 1] = path.join(root, value);
      mkdirSync(args[i + 1], { recursive: true });
    } else if (value.startsWith("/")) {
      const content = fileContent(objects, spec, container, flag, value);
      const file = path.join(root, value);
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, content, { mode: 0o440 });
      args[i + 1] = file;
      files[flag] = { path: file, content };
    }
    i++;
  }
  return { args, files };
}

// Starts a binary; resolves {code, output, match} when `ready` matches its output (the process
// still running) or when it exits, whichever comes first (15 s at most).
function start(binary, args) {
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"], env: envOutsideKubernetes() });
  let output = "";
  const settled = (ready) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const match = ready.exec(output);
        if (match) done({ running: true, match });
      };
      const timer = setTimeout(() => done({ running: child.exitCode === null, timeout: true }), 15000);
      const done = (result) => {
        clearTimeout(timer);
        resolve({ ...result, output });
      };
      child.stdout.on("data", (c) => ((output += c), check()));
      child.stderr.on("data", (c) => ((output += c), check()));
      child.on("error", reject);
      child.on("exit", (code) => setImmediate(() => done({ running: false, code })));
    });
  return { child, settled, output: () => output };
}

// GET /metrics at 127.0.0.1:PORT, with an Authorization header or none: {status, body}.
function getMetrics(port, authorization) {
  return new Promise((resolve, reject) => {
    const headers = authorization ? { authorization } : {};
    http
      .get({ host: "127.0.0.1", port, path: "/metrics", headers, timeout: 5000 }, (res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode, body }));
      })
      .on("error", reject);
  });
}

// What the kubelet's tcpSocket probe does: connect, then close.
function tcpProbe(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.setTimeout(5000, () => (socket.destroy(), resolve(false)));
    socket.on("connect", () => (socket.end(), resolve(true)));
    socket.on("error", () => resolve(false));
  });
}

// /metrics with the token only: 401 without it or with another, 200 with it.
async function checkMetricsToken(port, token, what) {
  assert.equal((await getMetrics(port)).status, 401, `${what}: /metrics without the token`);
  assert.equal((await getMetrics(port, "Bearer not-the-token")).status, 401, `${what}: /metrics with another token`);
  const ok = await getMetrics(port, `Bearer ${token}`);
  assert.equal(ok.status, 200, `${what}: /metrics with the token`);
  return ok.body;
}

const REFUSED = /refusing|invalid value|unknown option|needs a value|cannot read/;

// Runs the worker of a pod spec with its args, as runnable() makes them, and no controller: it
// must get past its option checks, serve /metrics (with the token only) where the chart asked,
// accept the liveness probe's connection and keep running.
async function runWorker(objects, names, spec, container, env) {
  const { args, files } = runnable(objects, spec, container, env);
  // No controller here: a port where nothing answers (the worker keeps trying).
  const controller = args.indexOf("--controller");
  assert.match(args[controller + 1], new RegExp(`^tcp://${names.controller}(\\.[a-z0-9.-]+)?:5555$`));
  args[controller + 1] = "tcp://127.0.0.1:1";
  const began = Date.now();
  const run = start(workerBin, args);
  try {
    const result = await run.settled(/^loads-worker: metrics on http:\/\/0\.0\.0\.0:(\d+)\/metrics \(with a token\)$/m);
    assert.doesNotMatch(result.output, REFUSED, `refused:\n${args.join(" ")}\n${result.output}`);
    assert.ok(result.running, `exited (${result.code}):\n${args.join(" ")}\n${result.output}`);
    const port = Number(result.match[1]);
    // The liveness probe (tcpSocket on the metrics port) succeeds, and /metrics wants the
    // token of the mounted file, which is the one the PodMonitor sends.
    assert.ok(await tcpProbe(port), "the liveness probe's connection failed");
    const body = await checkMetricsToken(port, files["--metrics-token-file"].content.split("\n")[0], "worker");
    assert.match(body, /^loads_worker_registered 0$/m);
    // Still running a second on: trying to reach its controller, not stopped by an option.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 1000 - (Date.now() - began))));
    assert.equal(run.child.exitCode, null, `exited:\n${run.output()}`);
    assert.doesNotMatch(run.output(), REFUSED);
  } finally {
    await stop(run.child);
  }
}

describe("the rendered listen flags with the real binaries", { concurrency: true }, () => {
  for (const testCase of cases) {
    const objects = objectsOf(renderCase(testCase));
    const values = mergedValues(testCase.files);
    const names = namesOf(values);

    it(`loads-controller gets past its option checks with ${testCase.name}`, async (t) => {
      if (!haveBinaries) return t.skip(`no binaries in ${binDir}`);
      const deployment = find(objects, "Deployment", names.controller);
      const spec = deployment.spec.template.spec;
      const [container] = spec.containers;
      const { args, files } = runnable(objects, spec, container, {});
      const run = start(controllerBin, args);
      try {
        const result = await run.settled(/^loads-controller listening: (.*)$/m);
        assert.doesNotMatch(result.output, REFUSED, `refused:\n${args.join(" ")}\n${result.output}`);
        if (!result.running) {
          // Past the option checks, it needs the Kubernetes API: the launcher, or the CURVE key
          // writer. Nothing else may stop it.
          assert.ok(values.launcher.enabled || values.curve.enabled, `exited (${result.code}):\n${result.output}`);
          assert.match(result.output, /not in a Kubernetes pod/, `exited (${result.code}) otherwise:\n${result.output}`);
          return;
        }
        assert.ok(!values.launcher.enabled && !values.curve.enabled, "listening despite the Kubernetes API it needs");
        const addresses = Object.fromEntries([...result.match[1].matchAll(/(\w+) (\S+)/g)].map(([, k, v]) => [k, v]));
        // Where the chart asked: metrics beyond loopback with the token, publish on loopback.
        assert.match(addresses.metrics, /^http:\/\/0\.0\.0\.0:\d+\/metrics$/);
        assert.match(addresses.publish, /^tcp:\/\/127\.0\.0\.1:\d+$/);
        const body = await checkMetricsToken(Number(/:(\d+)\//.exec(addresses.metrics)[1]), files["--metrics-token-file"].content.split("\n")[0], "controller");
        assert.match(body, /^loads_messages_dropped_total/m);
      } finally {
        await stop(run.child);
      }
    });

    const workers = find(objects, "Deployment", names.workers);
    if (workers) {
      it(`loads-worker serves /metrics with the token only with ${testCase.name}`, async (t) => {
        if (!haveBinaries) return t.skip(`no binaries in ${binDir}`);
        const spec = workers.spec.template.spec;
        const [container] = spec.containers;
        // The kubelet's expansions: the pod's name, the CPU limit in whole cores (rounded up).
        const cpu = String(container.resources.limits.cpu);
        const cores = Math.ceil(cpu.endsWith("m") ? Number(cpu.slice(0, -1)) / 1000 : Number(cpu));
        await runWorker(objects, names, spec, container, { LOADS_POD_NAME: `${names.workers}-0`, LOADS_CPU_LIMIT: String(cores) });
      });
    }

    const launched = launchedPodOf(objects);
    if (launched) {
      it(`a launched loads-worker (the launcher's args, then the template's) serves /metrics with the token only with ${testCase.name}`, async (t) => {
        if (!haveBinaries) return t.skip(`no binaries in ${binDir}`);
        const container = launched.spec.containers.find((c) => c.name === "worker");
        assert.ok(container.args.includes("--metrics-token-file"), "the template gives no --metrics-token-file");
        await runWorker(objects, names, launched.spec, container, {});
      });
    }
  }
});
