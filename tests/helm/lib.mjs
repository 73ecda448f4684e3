// Helpers of chart.test.mjs and helm.test.mjs: render helm/loads with tools/helm-render, parse the
// output, and check objects against the Kubernetes schemas of kubernetes-models.
//
// tools/helm-render is NOT Helm: it is the template engine Helm uses (Go text/template + sprig)
// with the Helm objects and functions this chart needs, and it can emulate the cluster that
// `lookup` reads (upgrades), which Helm cannot without one. That Helm itself accepts the chart,
// and renders what helm-render renders, is helm.test.mjs's part, with a real Helm.

import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Ajv from "ajv";
import yaml from "js-yaml";

import { Deployment } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { Ingress, NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { Role, RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1";
import {
  ConfigMap,
  PersistentVolumeClaim,
  Pod,
  Secret,
  Service,
  ServiceAccount,
} from "kubernetes-models/v1";
import {
  PodMonitor,
  PrometheusRule,
  ServiceMonitor,
} from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { Certificate } from "@kubernetes-models/cert-manager/cert-manager.io/v1";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const chartDir = path.join(repoRoot, "helm/loads");
// The built binaries the checks run (LOADS_BIN_DIR, as ctest sets it; else build/bin).
export const binDir = process.env.LOADS_BIN_DIR || path.join(repoRoot, "build/bin");
export const examplesDir = path.join(chartDir, "examples");
export const controllerBin = path.join(binDir, "loads-controller");
// values.schema.json, and compiled as the checks apply it: strict, every error reported.
export const schema = JSON.parse(readFileSync(path.join(chartDir, "values.schema.json"), "utf8"));
export const validateValues = new Ajv({ strict: true, allErrors: true }).compile(schema);

// The cases the checks run on, each {name, files}: every example (examples/*.yaml), sorted;
// tests/helm/all-options.yaml, which sets every value; and values.yaml alone, every example and
// all-options.yaml together.
export const exampleCases = readdirSync(examplesDir)
  .filter((f) => f.endsWith(".yaml"))
  .sort()
  .map((f) => ({ name: `examples/${f}`, files: [path.join(examplesDir, f)] }));
export const allOptionsCase = {
  name: "tests/helm/all-options.yaml",
  files: [path.join(repoRoot, "tests/helm/all-options.yaml")],
};
export const chartCases = [{ name: "values.yaml", files: [] }, ...exampleCases, allOptionsCase];

// The release most checks render (`--release demo --namespace perf`), and the names of its
// controller and standing workers.
export const RELEASE = "demo";
export const NAMESPACE = "perf";
export const FULLNAME = "demo-loads";
export const CONTROLLER = `${FULLNAME}-controller`;
export const WORKERS = `${FULLNAME}-worker`;

// This test file's scratch folder (each file runs in a process of its own), removed at exit.
let scratch;
let temps = 0;
export function scratchDir() {
  if (!scratch) {
    scratch = mkdtempSync(path.join(tmpdir(), "loads-helm-"));
    process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));
  }
  return scratch;
}

// Writes TEXT to a new file NAME, in a folder of its own (so that names never collide), and
// returns its path.
export function writeTemp(name, text) {
  const dir = path.join(scratchDir(), `file-${temps++}`);
  mkdirSync(dir);
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

// The models of every kind the chart may render; any other kind is a test failure.
export const models = {
  "apps/v1/Deployment": Deployment,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "networking.k8s.io/v1/Ingress": Ingress,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "rbac.authorization.k8s.io/v1/Role": Role,
  "rbac.authorization.k8s.io/v1/RoleBinding": RoleBinding,
  "v1/ConfigMap": ConfigMap,
  "v1/PersistentVolumeClaim": PersistentVolumeClaim,
  "v1/Pod": Pod,
  "v1/Secret": Secret,
  "v1/Service": Service,
  "v1/ServiceAccount": ServiceAccount,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
  "monitoring.coreos.com/v1/PodMonitor": PodMonitor,
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
  "cert-manager.io/v1/Certificate": Certificate,
  // KEDA's CRD schema (v2.10.1) as @kubernetes-models/keda ships it.
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
};

let rendererPath = process.env.LOADS_HELM_RENDER;

// The renderer binary: LOADS_HELM_RENDER (ctest builds it into the build tree), else built once
// into a temporary folder, so that `node --test` works on its own too.
export function renderer() {
  if (!rendererPath) {
    const out = mkdtempSync(path.join(tmpdir(), "loads-helm-render-"));
    execFileSync(path.join(repoRoot, "tools/helm-render/build.sh"), [out], { stdio: "inherit" });
    rendererPath = path.join(out, "helm-render");
  }
  if (!existsSync(rendererPath)) throw new Error(`no renderer at ${rendererPath}`);
  return rendererPath;
}

// Runs the renderer; returns {status, stdout, stderr} without throwing.
export function runRenderer(args) {
  const result = spawnSync(renderer(), args, { encoding: "utf8" });
  if (result.error) throw result.error;
  return result;
}

// Renders the chart (strict: a misspelt .Values path is an error) and returns its output exactly
// as printed. lookups: files of objects that `lookup` finds, as in a cluster (an upgrade);
// without them lookup finds nothing, as under `helm template`.
export function renderText({ valueFiles = [], lookups = [], release = "loads", namespace = "loads-test" } = {}) {
  const args = ["--strict", "--release", release, "--namespace", namespace];
  for (const file of valueFiles) args.push("-f", file);
  for (const file of lookups) args.push("--lookup", file);
  args.push(chartDir);
  const result = runRenderer(args);
  if (result.status !== 0) {
    throw new Error(`helm-render ${args.join(" ")} failed:\n${result.stderr}`);
  }
  return result.stdout;
}

// renderText's documents as {source, text, object}: text is the document exactly as printed,
// after its Source line.
export function render(options = {}) {
  return parseManifests(renderText(options));
}

export function renderNotes({ valueFiles = [], release = "loads", namespace = "loads-test" } = {}) {
  const args = ["--strict", "--notes", "--release", release, "--namespace", namespace];
  for (const file of valueFiles) args.push("-f", file);
  args.push(chartDir);
  const result = runRenderer(args);
  if (result.status !== 0) throw new Error(`helm-render --notes failed:\n${result.stderr}`);
  return result.stdout;
}

// values.yaml with the files merged over it, as Helm merges them before checking the schema.
export function mergedValues(valueFiles = []) {
  const args = ["--values-json"];
  for (const file of valueFiles) args.push("-f", file);
  args.push(chartDir);
  const result = runRenderer(args);
  if (result.status !== 0) throw new Error(`helm-render --values-json failed:\n${result.stderr}`);
  return JSON.parse(result.stdout);
}

// Stops a child process the checks started: SIGTERM, SIGKILL after 10 s; resolves once it exited.
export async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
  await exited;
  clearTimeout(timer);
}

// Asserts that values.schema.json refuses values.yaml with TEXT (YAML) merged over it, and that
// among the errors it reports is one of KEYWORD at INSTANCEPATH.
export function assertSchemaRefuses(text, keyword, instancePath) {
  const values = mergedValues([writeTemp("bad.yaml", text)]);
  assert.equal(validateValues(values), false, `accepted: ${text}`);
  assert.ok(
    validateValues.errors.some((e) => e.keyword === keyword && e.instancePath === instancePath),
    `expected ${keyword} at "${instancePath}", got ${JSON.stringify(validateValues.errors, null, 2)}`,
  );
}

export function parseManifests(output) {
  const docs = [];
  for (const chunk of output.split(/^---\n/m)) {
    if (chunk === "") continue;
    const match = /^# Source: (\S+)\n([\s\S]*)$/.exec(chunk);
    if (!match) throw new Error(`a document without its Source line:\n${chunk.slice(0, 200)}`);
    const text = match[2].replace(/\n$/, "");
    // js-yaml refuses duplicate keys, which Kubernetes would silently collapse.
    const object = yaml.load(text);
    docs.push({ source: match[1], text, object });
  }
  return docs;
}

export function modelOf(object) {
  return models[`${object.apiVersion}/${object.kind}`];
}

// Fields that the Kubernetes schema does not define, as JSON pointers.
//
// kubernetes-models validates types and required fields but lets unknown fields through (its
// schemas have no additionalProperties: false), while the API server drops them silently (or
// rejects them with strict field validation), so a misspelt field would pass. Its validators
// are generated code, not JSON schemas we could read, but they look up every property their
// schema defines: running one on proxies that record those look-ups gives, for each object, the
// keys the schema knows. A key never looked up is unknown. A map-typed field (labels, data,
// resource lists) is enumerated by its validator instead, and all its keys are allowed.
export function unknownFields(object) {
  const Model = modelOf(object);
  if (!Model) throw new Error(`no model for ${object.apiVersion} ${object.kind}`);
  const records = [];
  const wrap = (value, pointer) => {
    if (value === null || typeof value !== "object") return value;
    const record = { pointer, value, looked: new Set(), enumerated: false };
    if (!Array.isArray(value)) records.push(record);
    const target = Array.isArray(value)
      ? value.map((item, i) => wrap(item, `${pointer}/${i}`))
      : Object.fromEntries(Object.entries(value).map(([k, v]) => [k, wrap(v, `${pointer}/${k}`)]));
    return new Proxy(target, {
      get(t, key, receiver) {
        if (typeof key === "string") record.looked.add(key);
        return Reflect.get(t, key, receiver);
      },
      has(t, key) {
        if (typeof key === "string") record.looked.add(key);
        return Reflect.has(t, key);
      },
      ownKeys(t) {
        record.enumerated = true;
        return Reflect.ownKeys(t);
      },
    });
  };
  // A model's validate() checks `this`: given the proxy, it runs the schema on it.
  Model.prototype.validate.call(wrap(object, ""));
  const unknown = [];
  for (const record of records) {
    if (record.enumerated) continue;
    for (const key of Object.keys(record.value)) {
      if (!record.looked.has(key)) unknown.push(`${record.pointer}/${key}`);
    }
  }
  return unknown;
}

// The core/v1 LabelSelector semantics: does selector select these labels?
export function selects(selector, labels = {}) {
  if (!selector) return false;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, key);
    if (operator === "In" && !(has && values.includes(labels[key]))) return false;
    if (operator === "NotIn" && has && values.includes(labels[key])) return false;
    if (operator === "Exists" && !has) return false;
    if (operator === "DoesNotExist" && has) return false;
  }
  return true;
}

// Every pod spec of the documents, with where it is: Deployment templates and bare Pods.
export function podSpecs(docs) {
  const specs = [];
  for (const { object } of docs) {
    if (object.kind === "Deployment") {
      specs.push({ owner: object, metadata: object.spec.template.metadata, spec: object.spec.template.spec });
    } else if (object.kind === "Pod") {
      specs.push({ owner: object, metadata: object.metadata, spec: object.spec });
    }
  }
  return specs;
}

// Flags of the chart's binaries that take no value (true in flagsOf's answer).
export const SWITCHES = ["--curve-any-worker"];

// Flags that may be given more than once (a list in flagsOf's answer).
export const REPEATABLE = ["--image-pull-secret", "--allow-target"];

// A container's args as {flag: value} (a switch: true, a repeatable flag: the list of its values);
// a flag given twice is an error otherwise.
export function flagsOf(args, repeatable = REPEATABLE, switches = SWITCHES) {
  const flags = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) throw new Error(`argument ${arg} is not a flag`);
    if (switches.includes(arg)) {
      if (arg in flags) throw new Error(`flag ${arg} given twice`);
      flags[arg] = true;
      continue;
    }
    if (repeatable.includes(arg)) {
      (flags[arg] ??= []).push(args[i + 1]);
    } else {
      if (arg in flags) throw new Error(`flag ${arg} given twice`);
      flags[arg] = args[i + 1];
    }
    i++;
  }
  return flags;
}

// The long options a binary's --help lists, or null without the binary.
export function helpFlags(binDir, binary) {
  const file = path.join(binDir, binary);
  if (!existsSync(file)) return null;
  const result = spawnSync(file, ["--help"], { encoding: "utf8" });
  return new Set((result.stdout + result.stderr).match(/--[a-z][a-z-]*/g));
}

export function subsetOf(small, big) {
  return Object.entries(small).every(([k, v]) => big?.[k] === v);
}

// ---- The worker pods the Kubernetes launcher creates ----------------------------------------

// The engine threads a launched worker announces for its CPU request (ThreadsForCpu,
// controller/src/kubernetes_launcher.cc): the CPUs asked for, rounded up, 1 to 1024.
export function threadsForCpu(cpu) {
  const cpus = String(cpu).endsWith("m") ? Number(String(cpu).slice(0, -1)) / 1000 : Number(cpu);
  return Math.min(Math.max(Math.ceil(cpus - 1e-9), 1), 1024);
}

// The pod the launcher makes of a --worker-pod-template: a mirror of PodManifest
// (controller/src/kubernetes_launcher.cc), to be kept alike. Its defaults, the template's labels,
// annotations and spec over them, then what it owns; its own args come before the template's.
// launcher: what the controller's flags tell it (launchedPodOf reads them from a render).
export function launchedPod(template, launcher) {
  const {
    name = "loads-w-0123456789ab-0",
    namespace,
    instance = "loads",
    endpoint,
    image = "localhost/loads-worker:0.1.0",
    imagePullPolicy = "IfNotPresent",
    cpu = "1",
    memory = "512Mi",
    tokenSecret = "",
    imagePullSecrets = [],
    curveServerKey = "",
    runId = "run-1",
  } = launcher;
  const spec = {
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    securityContext: { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001, seccompProfile: { type: "RuntimeDefault" } },
    ...structuredClone(template.spec ?? {}),
  };
  const metadata = {
    name,
    namespace,
    labels: {
      ...(template.metadata?.labels ?? {}),
      "app.kubernetes.io/name": "loads",
      "app.kubernetes.io/instance": instance,
      "app.kubernetes.io/component": "worker",
      "app.kubernetes.io/managed-by": "loads-controller",
      "loads/run-hash": "0123456789ab",
    },
    annotations: { ...(template.metadata?.annotations ?? {}), "loads/run-id": runId },
  };
  const args = ["--controller", endpoint, "--id", name, "--work-dir", "/tmp/loads", "--threads", String(threadsForCpu(cpu))];
  if (curveServerKey) args.push("--curve-server-key", curveServerKey);
  const mounts = [{ name: "tmp", mountPath: "/tmp" }];
  const volumes = [...(spec.volumes ?? []), { name: "tmp", emptyDir: {} }];
  if (tokenSecret) {
    args.push("--token-file", "/var/run/loads/worker-token");
    mounts.push({ name: "tokens", mountPath: "/var/run/loads", readOnly: true });
    volumes.push({ name: "tokens", secret: { secretName: tokenSecret, items: [{ key: "worker-token", path: "worker-token" }] } });
  }
  const containers = spec.containers ?? [];
  let worker = containers.find((c) => c.name === "worker");
  if (!worker) {
    worker = { name: "worker" };
    containers.unshift(worker);
  }
  worker.image = image;
  worker.imagePullPolicy ??= imagePullPolicy;
  worker.args = [...args, ...(worker.args ?? [])];
  const resources = worker.resources ?? {};
  worker.resources = {
    ...resources,
    requests: { ...(resources.requests ?? {}), cpu, memory },
    limits: { ...(resources.limits ?? {}), memory },
  };
  worker.securityContext ??= { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } };
  worker.volumeMounts = [...(worker.volumeMounts ?? []), ...mounts];
  spec.restartPolicy = "Never";
  spec.containers = containers;
  spec.volumes = volumes;
  spec.imagePullSecrets = [...(spec.imagePullSecrets ?? []), ...imagePullSecrets.map((s) => ({ name: s }))];
  return { apiVersion: "v1", kind: "Pod", metadata, spec };
}

// Every value following FLAG in args.
function flagValues(args, flag) {
  return args.flatMap((arg, i) => (arg === flag ? [args[i + 1]] : []));
}

// The launched worker pod of a render (objects: the rendered objects), or undefined without the
// launcher: the ConfigMap's template filled in as the launcher would, with what the rendered
// controller's flags tell it (--advertise, --instance, --worker-token-secret, ...) in the
// controller's namespace (the launcher's, from its service account). curveServerKey: the
// controller's public key, which the launcher passes with CURVE (the controller's
// --curve-key-file); a stand-in by default.
export function launchedPodOf(objects, { curveServerKey, name } = {}) {
  const controller = objects.find((o) => o.kind === "Deployment" && o.metadata.labels["app.kubernetes.io/component"] === "controller");
  const { args } = controller.spec.template.spec.containers.find((c) => c.name === "controller");
  if (!args.includes("--worker-pod-template")) return undefined;
  const configMap = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name.endsWith("-worker-pod"));
  const one = (flag) => flagValues(args, flag)[0];
  return launchedPod(JSON.parse(configMap.data["pod.json"]), {
    ...(name ? { name } : {}),
    namespace: controller.metadata.namespace,
    instance: one("--instance"),
    endpoint: one("--advertise"),
    image: one("--worker-image"),
    imagePullPolicy: one("--image-pull-policy"),
    cpu: one("--worker-cpu"),
    memory: one("--worker-memory"),
    tokenSecret: one("--worker-token-secret"),
    imagePullSecrets: flagValues(args, "--image-pull-secret"),
    curveServerKey: args.includes("--curve-key-file") ? curveServerKey ?? "loads".repeat(8) : "",
  });
}
