// The chart helm/loads through a real Helm (v4, from the npm package that tests/helm/install-helm.sh
// extracts it from), for what tools/helm-render cannot prove: that Helm itself lints the chart
// strictly, validates values with values.schema.json, installs it (client-side dry run), uses it
// as a subchart, and renders exactly what tools/helm-render renders, so that chart.test.mjs, which
// renders with tools/helm-render, checks the objects Helm would install.
//
// tools/helm-render stays: Helm's `lookup` needs a live cluster, so `helm template` and
// `helm install --dry-run=client` always render a first install; the upgrade checks of
// chart.test.mjs (tokens and certificates kept, byte-identical upgrades) need helm-render
// --lookup, which stands for the Secrets of a cluster. Here, helm-render is given the Secrets that
// Helm generated, and must then render Helm's output to the byte. And helm-render --strict fails
// on a misspelt value path, which Helm renders as empty even under lint --strict (the last test).
//
//   node --test tests/helm/helm.test.mjs   (LOADS_HELM: the helm binary, else install-helm.sh
//                                           extracts it into a temporary folder)

import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import yaml from "js-yaml";

import {
  chartCases,
  chartDir,
  mergedValues,
  modelOf,
  NAMESPACE,
  parseManifests,
  RELEASE,
  render,
  renderNotes,
  repoRoot,
  runRenderer,
  unknownFields,
} from "./lib.mjs";

const here = path.join(repoRoot, "tests/helm");
const scratch = mkdtempSync(path.join(tmpdir(), "loads-helm-test-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

function writeScratch(name, text) {
  const file = path.join(scratch, name);
  writeFileSync(file, text);
  return file;
}

// The binary: LOADS_HELM (run.sh extracts it into the build tree), else extracted once here.
function helmBinary() {
  if (process.env.LOADS_HELM) return process.env.LOADS_HELM;
  const out = execFileSync(path.join(here, "install-helm.sh"), [path.join(scratch, "bin")], { encoding: "utf8" });
  return out.trim();
}
const helm = helmBinary();

// Helm reads its repositories, plugins and registry logins from HELM_*_HOME and a cluster from
// KUBECONFIG: all are pointed into the scratch folder, so that nothing of the user's changes
// what these tests see and no cluster of the user's is ever asked anything.
const helmEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(HELM_|KUBE)/.test(k)));
Object.assign(helmEnv, {
  HELM_CACHE_HOME: path.join(scratch, "helm/cache"),
  HELM_CONFIG_HOME: path.join(scratch, "helm/config"),
  HELM_DATA_HOME: path.join(scratch, "helm/data"),
  KUBECONFIG: path.join(scratch, "no-cluster.kubeconfig"),
});

// Runs helm; returns {status, stdout, stderr} without throwing.
function runHelm(args) {
  const result = spawnSync(helm, args, { encoding: "utf8", env: helmEnv, maxBuffer: 64 << 20 });
  if (result.error) throw result.error;
  return result;
}

function helmOk(args) {
  const result = runHelm(args);
  assert.equal(result.status, 0, `helm ${args.join(" ")} failed:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

function valueArgs(files) {
  return files.flatMap((f) => ["-f", f]);
}

function helmTemplate(files, { chart = chartDir, release = RELEASE, namespace = NAMESPACE, extra = [] } = {}) {
  return helmOk(["template", release, chart, "--namespace", namespace, ...valueArgs(files), ...extra]);
}

// Documents keyed by what identifies an object in a cluster.
function byObject(docs) {
  const map = new Map();
  for (const doc of docs) {
    const { apiVersion, kind, metadata } = doc.object;
    const key = `${apiVersion} ${kind} ${metadata.namespace ?? ""}/${metadata.name}`;
    assert.ok(!map.has(key), `${key} rendered twice`);
    map.set(key, doc);
  }
  return map;
}

// values.yaml alone, each example, and every value set at once.
const cases = chartCases;

// Whether the chart generates nothing random for these values: no tokens (auth.existingSecret),
// no certificate (TLS off, or from a Secret or cert-manager) and no CURVE key (CURVE off, or from
// a Secret), as templates/_helpers.tpl decides.
function generatesNothing(values) {
  const { auth, tls, curve } = values;
  return (
    Boolean(auth.existingSecret) &&
    (!tls.enabled || Boolean(tls.existingSecret) || tls.certManager.enabled) &&
    (!curve.enabled || Boolean(curve.existingSecret))
  );
}

describe("helm lint --strict", () => {
  for (const { name, files } of cases) {
    it(`finds nothing to report with ${name}`, () => {
      const out = helmOk(["lint", "--strict", chartDir, ...valueArgs(files)]);
      assert.match(out, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      // Not even an [INFO]: the chart has every recommended field.
      assert.doesNotMatch(out, /^\[(INFO|WARNING|ERROR)\]/m, out);
    });
  }
});

describe("helm template renders what tools/helm-render renders", () => {
  for (const { name, files } of cases) {
    it(`the same objects, byte for byte, with ${name}`, () => {
      const helmDocs = parseManifests(helmTemplate(files));
      // The Secrets Helm generated (tokens, certificate, CURVE key), given to helm-render as the cluster's
      // lookup finds them: helm-render then keeps them, and the checksums over them agree.
      const secrets = helmDocs.filter((d) => d.object.kind === "Secret");
      const lookups = secrets.length ? [writeScratch("generated.yaml", secrets.map((d) => `---\n${d.text}\n`).join(""))] : [];
      const ours = byObject(render({ valueFiles: files, lookups, release: RELEASE, namespace: NAMESPACE }));
      const theirs = byObject(helmDocs);
      assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort());
      for (const [key, doc] of theirs) {
        assert.equal(ours.get(key).source, doc.source, `${key}: another template`);
        assert.equal(ours.get(key).text, doc.text, `${key}: another content`);
      }
    });
  }

  it("and every object Helm renders is valid against the Kubernetes schemas, with no unknown field", () => {
    for (const { name, files } of cases) {
      for (const { source, object } of parseManifests(helmTemplate(files))) {
        const where = `${name}: ${source} ${object.kind} ${object.metadata.name}`;
        const Model = modelOf(object);
        assert.ok(Model, `${where}: no model for ${object.apiVersion} ${object.kind}`);
        assert.doesNotThrow(() => new Model(object).validate(), where);
        assert.deepEqual(unknownFields(object), [], where);
      }
    }
  });

  // chart.test.mjs checks these errors through helm-render: they must be Helm's own. Where a
  // message appears may differ (helm-render executes the templates in name order, Helm deepest
  // first), so only the message is compared.
  const failing = [
    ["a required value", 'image:\n  repository: ""\n'],
    ["a fail of the templates", "worker:\n  enabled: true\n  autoscaling: {enabled: true, minReplicas: 5, maxReplicas: 2}\n"],
    ["contradictory TLS values", "tls:\n  existingSecret: mine\n  certManager: {enabled: true, issuerRef: {name: ca}}\n"],
    ["a CURVE key to generate in the GitOps mode", "auth: {existingSecret: t, generate: false}\ntls: {existingSecret: my-tls}\n"],
    ["the API token's key as the metrics token's", "controller:\n  metricsToken: {key: api-token}\n"],
    ["a target list that refuses the `helm test` pod's run", "controller:\n  allowTargets: [api.example.com]\n"],
    [
      "KEDA and the chart's HorizontalPodAutoscaler both on",
      "worker:\n  enabled: true\n  autoscaling: {enabled: true}\n  keda: {enabled: true, serverAddress: http://prometheus:9090}\n",
    ],
  ];
  for (const [what, text] of failing) {
    it(`and fails with the same message on ${what} (schema skipped)`, () => {
      const file = writeScratch("failing.yaml", text);
      const result = runHelm(["template", RELEASE, chartDir, "--namespace", NAMESPACE, "--skip-schema-validation", "-f", file]);
      assert.notEqual(result.status, 0, "Helm rendered it");
      const message = (stderr) => /execution error at \([^)]*\): (.*)/.exec(stderr)?.[1];
      const theirs = message(result.stderr);
      assert.ok(theirs, result.stderr);
      let ours;
      try {
        render({ valueFiles: [file], release: RELEASE, namespace: NAMESPACE });
      } catch (err) {
        ours = err.message;
      }
      assert.ok(ours, "helm-render rendered it");
      assert.equal(message(ours), theirs);
    });
  }
});

describe("two helm template renders of the same values (GitOps: no drift)", () => {
  // Without a cluster, `lookup` finds nothing: the chart generates new tokens, a new certificate
  // and a new CURVE key on every render unless values make it generate nothing
  // (auth.generate=false enforces that). Everything else must be stable.
  // What may change: the data of a generated Secret, and the checksums over it.
  const secretData = /^ {2}[-._a-zA-Z0-9]+: "[A-Za-z0-9+/=]*"$/;
  const checksum = /^ +checksum\/[-a-z]+: [0-9a-f]{64}$/;
  const stable = [];
  for (const { name, files } of cases) {
    it(`are byte-identical, or differ only in what the chart generates, with ${name}`, () => {
      const first = helmTemplate(files);
      const second = helmTemplate(files);
      if (generatesNothing(mergedValues(files))) {
        stable.push(name);
        assert.equal(first, second);
        // No checksum of a generated Secret (checksum/worker-pod, of the launched pods'
        // template, is stable).
        assert.doesNotMatch(first, /checksum\/secret/);
        return;
      }
      assert.notEqual(first, second, "generated tokens and certificates repeat across renders");
      const again = byObject(parseManifests(second));
      const docs = byObject(parseManifests(first));
      assert.deepEqual([...again.keys()], [...docs.keys()]);
      for (const [key, doc] of docs) {
        const a = doc.text.split("\n");
        const b = again.get(key).text.split("\n");
        assert.equal(a.length, b.length, key);
        const changing = doc.object.kind === "Secret" ? secretData : checksum;
        for (let i = 0; i < a.length; i++) {
          if (a[i] !== b[i]) assert.match(a[i], changing, `${key}: line ${i + 1} changes between renders`);
        }
      }
    });
  }
  it("are byte-identical for the GitOps example and all-options.yaml", () => {
    assert.ok(stable.includes("examples/gitops.yaml"), stable.join(", "));
    assert.ok(stable.includes("tests/helm/all-options.yaml"), stable.join(", "));
  });
});

describe("as a subchart of tests/helm/umbrella", () => {
  const umbrellaValues = yaml.load(readFileSync(path.join(here, "umbrella/values.yaml"), "utf8"));
  let umbrella;
  before(() => {
    // Chart.yaml names the chart by a path relative to tests/helm/umbrella: the copy sits at the
    // same depth under the scratch folder, whose helm/ leads to this tree's.
    const root = path.join(scratch, "umbrella-tree");
    umbrella = path.join(root, "tests/helm/umbrella");
    mkdirSync(path.dirname(umbrella), { recursive: true });
    cpSync(path.join(here, "umbrella"), umbrella, { recursive: true });
    symlinkSync(path.join(repoRoot, "helm"), path.join(root, "helm"));
    helmOk(["dependency", "build", umbrella]);
  });

  it("lints strictly, the packaged subchart too", () => {
    const out = helmOk(["lint", "--strict", "--with-subcharts", umbrella]);
    assert.match(out, /2 chart\(s\) linted, 0 chart\(s\) failed/);
    assert.doesNotMatch(out, /^\[(WARNING|ERROR)\]/m, out);
  });

  it("renders the chart as it renders alone with the values under loads: and the parent's global", () => {
    const docs = parseManifests(helmTemplate([], { chart: umbrella }));
    const parentOwn = docs.filter((d) => d.source.startsWith("platform/templates/"));
    assert.deepEqual(parentOwn.map((d) => d.object.kind), ["ConfigMap"]);
    const sub = docs.filter((d) => d.source.startsWith("platform/charts/loads/templates/"));
    assert.equal(sub.length + parentOwn.length, docs.length);

    const { global, loads } = umbrellaValues;
    const alone = parseManifests(helmTemplate([writeScratch("as-subchart.yaml", yaml.dump({ ...loads, global }))]));
    const theirs = byObject(alone);
    const ours = byObject(sub);
    assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort());
    for (const [key, doc] of theirs) {
      assert.equal(ours.get(key).source, `platform/charts/${doc.source}`);
      assert.equal(ours.get(key).text, doc.text, `${key}: another content as a subchart`);
    }

    // The parent's global reached the pods: its registry, and its pull Secret before the chart's.
    const pods = sub.flatMap(({ object }) => {
      if (object.kind === "Pod") return [object.spec];
      return object.kind === "Deployment" ? [object.spec.template.spec] : [];
    });
    assert.ok(pods.length >= 3, "controller, workers and the test pod");
    for (const spec of pods) {
      for (const c of spec.containers) assert.match(c.image, new RegExp(`^${global.imageRegistry}/`));
      assert.deepEqual(spec.imagePullSecrets.map((s) => s.name), ["mirror-creds", "loads-creds"]);
    }
  });

  it("leaves the chart out with the parent's condition loads.enabled=false", () => {
    const docs = parseManifests(helmTemplate([], { chart: umbrella, extra: ["--set", "loads.enabled=false"] }));
    assert.deepEqual(docs.map((d) => d.source), ["platform/templates/endpoints-configmap.yaml"]);
  });

  it("is refused by the subchart's schema with a bad value under loads:", () => {
    const result = runHelm(["template", RELEASE, umbrella, "--set", "loads.worker.replicas=two"]);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /loads:\n- at '\/worker\/replicas': got string, want integer/);
  });
});

describe("helm install --dry-run=client", () => {
  // Helm prints the hooks (the `helm test` pod and the Service of its target), the manifest and
  // the notes in sections.
  const sections = (out) => {
    const match = /\nHOOKS:\n([\s\S]*)\nMANIFEST:\n([\s\S]*)\nNOTES:\n([\s\S]*)$/.exec(out);
    assert.ok(match, out.slice(0, 500));
    // A section ends with a blank line, which helm template does not print.
    const docs = (text) => parseManifests(`${text.replace(/\n+$/, "")}\n`);
    return { hooks: docs(match[1]), manifest: docs(match[2]), notes: match[3] };
  };

  for (const { name, files } of cases.filter((c) => ["values.yaml", "examples/gitops.yaml"].includes(c.name))) {
    it(`installs with ${name}: the objects of helm template, and the notes of helm-render --notes`, () => {
      const out = helmOk(["install", RELEASE, chartDir, "--namespace", NAMESPACE, "--dry-run=client", ...valueArgs(files)]);
      assert.match(out, /^STATUS: pending-install$/m);
      const { hooks, manifest, notes } = sections(out);
      // In the order Helm creates them: the Service first, so that its name exists for the pod's run.
      assert.deepEqual(hooks.map((d) => d.object.kind), ["Service", "Pod"]);
      for (const hook of hooks) assert.equal(hook.object.metadata.annotations["helm.sh/hook"], "test");
      const installed = [...hooks, ...manifest];
      const templated = parseManifests(helmTemplate(files));
      assert.deepEqual([...byObject(installed).keys()].sort(), [...byObject(templated).keys()].sort());
      if (generatesNothing(mergedValues(files))) {
        for (const [key, doc] of byObject(templated)) assert.equal(byObject(installed).get(key).text, doc.text, key);
      }
      const expected = renderNotes({ valueFiles: files, release: RELEASE, namespace: NAMESPACE });
      assert.equal(notes.trim(), expected.trim());
    });
  }
});

describe("what Helm refuses", () => {
  const bad = [
    ["a misspelt key", "controller:\n  workerTimout: 5\n", /at '\/controller': additional properties 'workerTimout' not allowed/],
    ["a string for an integer", "worker:\n  replicas: two\n", /at '\/worker\/replicas': got string, want integer/],
    ["the GitOps mode without a Secret", "auth:\n  generate: false\n", /at '\/auth\/existingSecret': minLength/],
    [
      "the GitOps mode with a generated CURVE key",
      "auth:\n  existingSecret: t\n  generate: false\ntls:\n  existingSecret: my-tls\n",
      /at '\/curve\/existingSecret': minLength/,
    ],
    ["curve.enabled as a string", "curve:\n  enabled: \"yes\"\n", /at '\/curve\/enabled': got string, want boolean/],
    ["launcher.kubernetesApiParallelism above 64", "launcher:\n  kubernetesApiParallelism: 65\n", /at '\/launcher\/kubernetesApiParallelism': maximum/],
    ["launcher.tolerations not a list", "launcher:\n  tolerations: {key: a}\n", /at '\/launcher\/tolerations': got object, want array/],
    ["a target pattern with a space", 'controller:\n  allowTargets: ["example.com 8080"]\n', /at '\/controller\/allowTargets\/0': 'example\.com 8080' does not match pattern/],
    ["KEDA without a Prometheus address", "worker:\n  keda: {enabled: true}\n", /at '\/worker\/keda\/serverAddress': minLength/],
  ];
  for (const [what, text, message] of bad) {
    it(`lint --strict and template refuse ${what} through values.schema.json`, () => {
      const file = writeScratch("bad.yaml", text);
      const lint = runHelm(["lint", "--strict", chartDir, "-f", file]);
      assert.notEqual(lint.status, 0, lint.stdout);
      assert.match(lint.stdout, message);
      const template = runHelm(["template", RELEASE, chartDir, "-f", file]);
      assert.notEqual(template.status, 0);
      assert.match(template.stderr, /values don't meet the specifications of the schema/);
      assert.match(template.stderr, message);
    });
  }

  it("refuses a cluster older than Chart.yaml's kubeVersion", () => {
    const result = runHelm(["template", RELEASE, chartDir, "--kube-version", "1.23.0"]);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /chart requires kubeVersion: >=1\.24\.0-0/);
  });
});

describe("a misspelt value path in a template", () => {
  // Why chart.test.mjs renders with helm-render --strict: Helm renders a missing key as empty,
  // even under `helm lint --strict`, so only helm-render fails on the misspelling.
  it("passes helm lint --strict, and fails helm-render --strict", () => {
    const copy = path.join(scratch, "misspelt/loads");
    cpSync(chartDir, copy, { recursive: true });
    writeFileSync(
      path.join(copy, "templates/zz-misspelt.yaml"),
      [
        "{{- $controller := .Values.controller }}",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: misspelt",
        "data:",
        "  limit: {{ $controller.revisionHistoryLimt | quote }}",
        "",
      ].join("\n"),
    );
    const lint = runHelm(["lint", "--strict", copy]);
    assert.equal(lint.status, 0, `Helm now refuses a missing key: helm-render --strict is no longer the only guard\n${lint.stdout}`);
    const ours = runRenderer(["--strict", copy]);
    assert.notEqual(ours.status, 0);
    assert.match(ours.stderr, /map has no entry for key "revisionHistoryLimt"/);
  });
});
