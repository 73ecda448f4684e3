// A FAKE Kubernetes API server, for testing loads-controller's Kubernetes launcher where no real
// cluster can run. It is not Kubernetes: it serves only the pod calls the launcher makes
// (create, list by label selector, delete) over HTTPS with a bearer token, validates every
// posted pod with the npm package kubernetes-models (the schemas of the real API) plus a strict
// check of unknown fields, and plays the kubelet: a pod's image decides its life.
//
//   image containing "bad-image"  waiting: ErrImagePull (the image cannot be pulled)
//   image containing "crash"      Failed: the container exited with code 1
//   image containing "pending"    Pending for ever: unschedulable
//   image containing "refuse"     the API answers 403 Forbidden to the create call
//   image containing "second-fails"  every second create call of it is refused (403, a quota)
//   any other image               Running: a real loads-worker process is started with the
//                                 pod's args (paths under /tmp and /var/run/loads are mapped to
//                                 a scratch folder; the Secret volume's key is written there)
//
//   image containing "idle"       Running, with no process: a pod that never joins
//
// Like the real API server it keeps a resourceVersion (one counter for every change), serves
// lists in pages (limit, continue) and watches (watch=true from a resourceVersion, with
// BOOKMARK events when allowWatchBookmarks is set, ended after timeoutSeconds).
//
// Usage: node fake_apiserver.mjs --cert F --key F --token T --worker-bin PATH --scratch DIR
//        [--secret NAME:KEY=VALUE]... [FAULTS]
// FAULTS, to be the API server of a cluster under stress (each counts the API calls, not the
// /fake/ ones):
//   --throttle-every N     every Nth call is answered 429 with Retry-After: 1
//   --unavailable-every N  every Nth call is answered 503 (no Retry-After)
//   --conflict-every N     every Nth create is answered 409 Conflict
//   --lose-create-every N  every Nth create creates the pod but answers 504 (the answer lost)
//   --delay-ms MS          every call is answered MS later
//   --page-limit N         lists give at most N items per page, whatever the limit asked
//   --watch-drop-ms MS     watches are cut after MS (a load balancer's idle timeout)
//   --gone-every N         every Nth watch is answered 410 Gone, as when the history before its
//                          resourceVersion has been compacted
//   --bookmark-ms MS       bookmark period (default 1000)
// Prints {"port": N} on stdout when listening. GET /fake/log returns every call (with its
// User-Agent) and every validation verdict; GET /fake/pods the pods that exist now, /fake/secrets
// the Secrets (GET and merge-PATCHed, as the controller's CURVE public key is); GET
// /fake/stats the most calls that were in flight at once (log entries have their start and end
// times, `at` and `end`, in ms).

import { spawn } from "node:child_process";
import fs from "node:fs";
import https from "node:https";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

// kubernetes-models is installed once for the chart's tests (tests/helm/package.json).
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "helm", "package.json"));
const { Pod } = require("kubernetes-models/v1/Pod");

const args = process.argv.slice(2);
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const secrets = {};
args.forEach((a, i) => {
  if (a === "--secret") {
    const [name, rest] = args[i + 1].split(":");
    const eq = rest.indexOf("=");
    (secrets[name] ??= {})[rest.slice(0, eq)] = rest.slice(eq + 1);
  }
});
const numberOption = (name, fallback = 0) => Number(option(name) ?? fallback);
const faults = {
  throttleEvery: numberOption("--throttle-every"),
  unavailableEvery: numberOption("--unavailable-every"),
  conflictEvery: numberOption("--conflict-every"),
  loseCreateEvery: numberOption("--lose-create-every"),
  delayMs: numberOption("--delay-ms"),
  pageLimit: numberOption("--page-limit"),
  watchDropMs: numberOption("--watch-drop-ms"),
  goneEvery: numberOption("--gone-every"),
  bookmarkMs: numberOption("--bookmark-ms", 1000),
};
const token = option("--token");
const workerBin = option("--worker-bin");
const scratch = option("--scratch");

// The fields a pod created by the launcher may use, by object path: Kubernetes accepts unknown
// fields with a warning only, and kubernetes-models ignores them, so a misspelt field would
// silently do nothing. Every key must be a real field of the API (names from the v1 Pod spec).
const known = {
  pod: ["apiVersion", "kind", "metadata", "spec"],
  metadata: ["name", "namespace", "labels", "annotations", "ownerReferences", "generateName"],
  ownerReference: ["apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"],
  spec: ["restartPolicy", "automountServiceAccountToken", "enableServiceLinks", "securityContext",
         "containers", "volumes", "serviceAccountName", "nodeSelector", "tolerations",
         "imagePullSecrets", "terminationGracePeriodSeconds", "activeDeadlineSeconds",
         "affinity", "topologySpreadConstraints", "priorityClassName", "runtimeClassName",
         "schedulerName", "initContainers", "dnsPolicy", "hostAliases"],
  podSecurityContext: ["runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile",
                       "supplementalGroups", "fsGroupChangePolicy", "sysctls"],
  container: ["name", "image", "imagePullPolicy", "args", "command", "env", "resources",
              "securityContext", "volumeMounts", "ports"],
  resources: ["requests", "limits"],
  containerSecurityContext: ["allowPrivilegeEscalation", "readOnlyRootFilesystem",
                             "capabilities", "runAsNonRoot", "runAsUser", "privileged"],
  volumeMount: ["name", "mountPath", "readOnly", "subPath"],
  volume: ["name", "emptyDir", "secret", "configMap", "projected"],
  secretVolume: ["secretName", "items", "defaultMode", "optional"],
};

function unknownFields(pod) {
  const errors = [];
  const check = (object, kind, where) => {
    if (object === undefined) return;
    if (typeof object !== "object" || object === null || Array.isArray(object)) {
      errors.push(`${where}: expected an object`);
      return;
    }
    for (const key of Object.keys(object)) {
      if (!known[kind].includes(key)) errors.push(`${where}.${key}: unknown field`);
    }
  };
  check(pod, "pod", "pod");
  check(pod.metadata, "metadata", "metadata");
  (pod.metadata?.ownerReferences ?? []).forEach((o, i) =>
    check(o, "ownerReference", `metadata.ownerReferences[${i}]`));
  check(pod.spec, "spec", "spec");
  check(pod.spec?.securityContext, "podSecurityContext", "spec.securityContext");
  (pod.spec?.containers ?? []).forEach((c, i) => {
    check(c, "container", `spec.containers[${i}]`);
    check(c.resources, "resources", `spec.containers[${i}].resources`);
    check(c.securityContext, "containerSecurityContext", `spec.containers[${i}].securityContext`);
    (c.volumeMounts ?? []).forEach((m, k) =>
      check(m, "volumeMount", `spec.containers[${i}].volumeMounts[${k}]`));
  });
  (pod.spec?.volumes ?? []).forEach((v, i) => {
    check(v, "volume", `spec.volumes[${i}]`);
    check(v.secret, "secretVolume", `spec.volumes[${i}].secret`);
  });
  return errors;
}

const pods = new Map();  // name -> {object, process}
const log = [];
let uid = 0;
let creates = 0;
let calls = 0;
let inFlight = 0;
let maxInFlight = 0;
let version = 1;          // the resourceVersion: one counter for every change
let watchCount = 0;
const history = [];       // {version, type, object} of every change
const watchers = new Set();

// Records a change of a pod (ADDED, MODIFIED, DELETED) and tells the watches.
function changed(type, pod) {
  pod.metadata.resourceVersion = String(++version);
  const event = { version, type, object: structuredClone(pod) };
  history.push(event);
  for (const watcher of watchers) watcher(event);
}

function status(res, code, reason, message, headers = {}) {
  res.writeHead(code, { "Content-Type": "application/json", ...headers });
  res.end(JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", message, reason,
                           code }));
}

function send(res, code, object) {
  res.writeHead(code, { "Content-Type": "application/json" });
  res.end(JSON.stringify(object));
}

// The container that runs loads-worker: the one named worker, else the first.
function workerOf(pod) {
  const containers = pod.spec?.containers ?? [];
  return containers.find((c) => c.name === "worker") ?? containers[0];
}

// The kubelet's part: sets the pod's status from its image, and runs real workers.
function schedule(pod) {
  const image = workerOf(pod)?.image ?? "";
  const name = pod.metadata.name;
  if (image.includes("bad-image")) {
    pod.status = { phase: "Pending", containerStatuses: [{ name: "worker", ready: false,
      restartCount: 0, image, imageID: "", state: { waiting: { reason: "ErrImagePull",
        message: `rpc error: pull access denied for ${image}` } } }] };
    return null;
  }
  if (image.includes("crash")) {
    pod.status = { phase: "Failed", containerStatuses: [{ name: "worker", ready: false,
      restartCount: 0, image, imageID: "", state: { terminated: { reason: "Error",
        exitCode: 1 } } }] };
    return null;
  }
  if (image.includes("pending")) {
    pod.status = { phase: "Pending", conditions: [{ type: "PodScheduled", status: "False",
      reason: "Unschedulable", message: "0/3 nodes are available: 3 Insufficient cpu." }] };
    return null;
  }
  const running = { phase: "Running", containerStatuses: [{ name: "worker", ready: true,
    restartCount: 0, image, imageID: "", state: { running: { startedAt: new Date().toISOString() } } }] };
  if (image.includes("idle")) {
    pod.status = running;
    return null;
  }
  // Running: the pod's own args, with its volumes mapped into the scratch folder.
  const root = path.join(scratch, name);
  fs.mkdirSync(path.join(root, "tmp"), { recursive: true });
  fs.mkdirSync(path.join(root, "run"), { recursive: true });
  for (const volume of pod.spec.volumes ?? []) {
    if (!volume.secret) continue;
    for (const item of volume.secret.items ?? []) {
      const value = secrets[volume.secret.secretName]?.[item.key];
      if (value !== undefined) fs.writeFileSync(path.join(root, "run", item.path), value + "\n");
    }
  }
  const worker = workerOf(pod);
  const argv = (worker.args ?? []).map((a) =>
    a.replace(/^\/tmp/, path.join(root, "tmp")).replace(/^\/var\/run\/loads/,
                                                        path.join(root, "run")));
  const child = spawn(workerBin, argv, { stdio: "ignore" });
  child.on("exit", (code) => {
    if (pods.has(name)) {
      pod.status = { phase: code === 0 ? "Succeeded" : "Failed", containerStatuses: [{
        name: "worker", ready: false, restartCount: 0, image, imageID: "",
        state: { terminated: { reason: code === 0 ? "Completed" : "Error", exitCode: code ?? 137 } } }] };
      changed("MODIFIED", pod);
    }
  });
  pod.status = running;
  return child;
}

function matches(pod, selector) {
  if (!selector) return true;
  return selector.split(",").every((term) => {
    const [key, value] = term.split("=");
    return (pod.metadata.labels ?? {})[key] === value;
  });
}

function body(req) {
  return new Promise((resolve) => {
    let data = "";
    req.on("data", (chunk) => (data += chunk));
    req.on("end", () => resolve(data));
  });
}

// A list, in pages: the continue token remembers where the next page starts and the version
// the list was taken at.
function list(res, namespace, params) {
  let start = 0;
  let at = version;
  const token = params.get("continue");
  if (token) {
    try {
      ({ start, at } = JSON.parse(Buffer.from(token, "base64").toString()));
    } catch {
      return status(res, 400, "BadRequest", "invalid continue token");
    }
  }
  const items = [...pods.values()].map((p) => p.object)
    .filter((p) => p.metadata.namespace === namespace)
    .filter((p) => matches(p, params.get("labelSelector")))
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  let limit = Number(params.get("limit") ?? 0) || items.length;
  if (faults.pageLimit) limit = Math.min(limit, faults.pageLimit);
  const page = items.slice(start, start + limit);
  const metadata = { resourceVersion: String(at) };
  if (start + limit < items.length) {
    metadata.continue = Buffer.from(JSON.stringify({ start: start + limit, at })).toString("base64");
  }
  return send(res, 200, { kind: "PodList", apiVersion: "v1", metadata, items: page });
}

// A watch: the changes after resourceVersion, then every new one, one JSON event per line.
function watch(req, res, namespace, params, entry) {
  const from = Number(params.get("resourceVersion") ?? 0);
  const selector = params.get("labelSelector");
  res.writeHead(200, { "Content-Type": "application/json", "Transfer-Encoding": "chunked" });
  const write = (type, object) => res.write(JSON.stringify({ type, object }) + "\n");
  if (faults.goneEvery && ++watchCount % faults.goneEvery === 0) {
    entry.gone = true;
    write("ERROR", { kind: "Status", apiVersion: "v1", status: "Failure", code: 410,
                     reason: "Expired", message: `too old resource version: ${from} (${version})` });
    return res.end();
  }
  const relevant = (event) => event.version > from && event.object.metadata.namespace === namespace &&
    matches(event.object, selector);
  for (const event of history.filter(relevant)) write(event.type, event.object);
  const watcher = (event) => relevant(event) && write(event.type, event.object);
  watchers.add(watcher);
  const timers = [];
  const end = () => {
    watchers.delete(watcher);
    timers.forEach(clearTimeout);
    timers.forEach(clearInterval);
    res.end();
  };
  if (params.get("allowWatchBookmarks") === "true") {
    timers.push(setInterval(() => write("BOOKMARK", { kind: "Pod", apiVersion: "v1",
      metadata: { resourceVersion: String(version) } }), faults.bookmarkMs));
  }
  const seconds = Number(params.get("timeoutSeconds") ?? 0);
  if (seconds) timers.push(setTimeout(end, seconds * 1000));
  if (faults.watchDropMs) {
    timers.push(setTimeout(() => {
      entry.dropped = true;
      watchers.delete(watcher);
      timers.forEach(clearTimeout);
      timers.forEach(clearInterval);
      res.destroy();  // cut, as an idle timeout in between would
    }, faults.watchDropMs));
  }
  req.on("close", end);
}

// Secrets, for the controller's CURVE public key: GET and a JSON merge patch of data, on the
// Secrets given with --secret (created by Helm in a cluster; the fake's are in no namespace).
async function serveSecret(req, res, namespace, name, entry) {
  const object = () => ({ kind: "Secret", apiVersion: "v1", metadata: { name, namespace },
    data: Object.fromEntries(Object.entries(secrets[name]).map(([k, v]) =>
      [k, Buffer.from(v).toString("base64")])) });
  if (!secrets[name]) {
    entry.code = 404;
    return status(res, 404, "NotFound", `secrets "${name}" not found`);
  }
  if (req.method === "GET") {
    entry.code = 200;
    return send(res, 200, object());
  }
  if (req.method === "PATCH") {
    entry.contentType = req.headers["content-type"];
    let patch;
    try {
      patch = JSON.parse(await body(req));
    } catch (e) {
      entry.code = 400;
      return status(res, 400, "BadRequest", `not JSON: ${e.message}`);
    }
    if (entry.contentType !== "application/merge-patch+json") {
      entry.code = 415;
      return status(res, 415, "UnsupportedMediaType", `the fake takes merge patches only`);
    }
    for (const [k, v] of Object.entries(patch.data ?? {})) {
      secrets[name][k] = Buffer.from(v, "base64").toString();
    }
    entry.code = 200;
    return send(res, 200, object());
  }
  entry.code = 405;
  return status(res, 405, "MethodNotAllowed", `${req.method} is not served by the fake`);
}

async function serve(req, res, url, entry) {
  if (req.headers.authorization !== `Bearer ${token}`) {
    entry.code = 401;
    return status(res, 401, "Unauthorized", "Unauthorized");
  }
  const secret = url.pathname.match(/^\/api\/v1\/namespaces\/([a-z0-9-]+)\/secrets\/([^/]+)$/);
  if (secret) return serveSecret(req, res, secret[1], secret[2], entry);
  const m = url.pathname.match(/^\/api\/v1\/namespaces\/([a-z0-9-]+)\/pods(?:\/([^/]+))?$/);
  if (!m) {
    entry.code = 404;
    return status(res, 404, "NotFound", `the fake serves pods only, not ${url.pathname}`);
  }
  // A create's pod is read first, so that the log shows which pod a refused call was for.
  let posted;
  if (req.method === "POST") posted = await body(req);
  const call = ++calls;
  if (req.method === "POST") {
    try {
      entry.object = JSON.parse(posted);
    } catch {
      // answered below
    }
  }
  if (faults.throttleEvery && call % faults.throttleEvery === 0) {
    entry.code = 429;
    return status(res, 429, "TooManyRequests", "the server has received too many requests",
                  { "Retry-After": "1" });
  }
  if (faults.unavailableEvery && call % faults.unavailableEvery === 0) {
    entry.code = 503;
    return status(res, 503, "ServiceUnavailable", "the server is currently unable to handle the request");
  }
  const [, namespace, name] = m;
  if (req.method === "POST" && !name) {
    let pod;
    try {
      pod = JSON.parse(posted);
    } catch (e) {
      entry.code = 400;
      return status(res, 400, "BadRequest", `not JSON: ${e.message}`);
    }
    entry.object = pod;
    const errors = unknownFields(pod);
    try {
      new Pod(pod).validate();
    } catch (e) {
      errors.push(String(e.message ?? e));
    }
    if (pod.metadata?.namespace && pod.metadata.namespace !== namespace) {
      errors.push("metadata.namespace does not match the request path");
    }
    entry.errors = errors;
    if (errors.length) {
      entry.code = 422;
      return status(res, 422, "Invalid", `Pod is invalid: ${errors.join("; ")}`);
    }
    const image = workerOf(pod)?.image ?? "";
    if (image.includes("refuse")) {
      entry.code = 403;
      return status(res, 403, "Forbidden",
        `pods is forbidden: User "system:serviceaccount:${namespace}:loads" cannot create resource "pods"`);
    }
    const create = ++creates;
    if (image.includes("second-fails") && create % 2 === 0) {
      entry.code = 403;
      return status(res, 403, "Forbidden",
        `pods "${pod.metadata.name}" is forbidden: exceeded quota: compute-resources, requested: pods=1, used: pods=1, limited: pods=1`);
    }
    if (faults.conflictEvery && create % faults.conflictEvery === 0) {
      entry.code = 409;
      return status(res, 409, "Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again");
    }
    if (pods.has(pod.metadata.name)) {
      entry.code = 409;
      return status(res, 409, "AlreadyExists", `pods "${pod.metadata.name}" already exists`);
    }
    pod.metadata.uid = `uid-${++uid}`;
    pod.metadata.creationTimestamp = new Date().toISOString();
    const child = schedule(pod);
    pods.set(pod.metadata.name, { object: pod, process: child });
    changed("ADDED", pod);
    if (faults.loseCreateEvery && create % faults.loseCreateEvery === 0) {
      entry.code = 504;
      entry.lost = true;
      return status(res, 504, "Timeout", "the answer was lost (the pod was created)");
    }
    entry.code = 201;
    return send(res, 201, pod);
  }
  if (req.method === "GET" && !name) {
    entry.code = 200;
    if (url.searchParams.get("watch") === "true" || url.searchParams.get("watch") === "1") {
      entry.watch = true;
      return watch(req, res, namespace, url.searchParams, entry);
    }
    return list(res, namespace, url.searchParams);
  }
  if (req.method === "DELETE" && name) {
    const pod = pods.get(name);
    if (!pod) {
      entry.code = 404;
      return status(res, 404, "NotFound", `pods "${name}" not found`);
    }
    pods.delete(name);
    pod.process?.kill("SIGTERM");
    changed("DELETED", pod.object);
    entry.code = 200;
    return send(res, 200, pod.object);
  }
  entry.code = 405;
  return status(res, 405, "MethodNotAllowed", `${req.method} is not served by the fake`);
}

const server = https.createServer(
  { cert: fs.readFileSync(option("--cert")), key: fs.readFileSync(option("--key")) },
  async (req, res) => {
    const url = new URL(req.url, "https://fake");
    if (url.pathname === "/fake/log") return send(res, 200, log);
    if (url.pathname === "/fake/pods") return send(res, 200, [...pods.values()].map((p) => p.object));
    if (url.pathname === "/fake/stats") return send(res, 200, { maxInFlight, calls, version });
    if (url.pathname === "/fake/secrets") return send(res, 200, secrets);
    const entry = { method: req.method, path: url.pathname, query: url.search,
                    userAgent: req.headers["user-agent"] ?? "", at: Date.now() };
    log.push(entry);
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    let counted = true;
    const done = () => {
      if (counted) inFlight--;
      counted = false;
      entry.end ??= Date.now();
    };
    // The end is when the answer is handed over, not when the socket has flushed it: the
    // client may have its answer and sent the next call before "finish".
    const end = res.end.bind(res);
    res.end = (...chunks) => {
      entry.end ??= Date.now();
      return end(...chunks);
    };
    res.on("finish", done);
    res.on("close", done);
    if (faults.delayMs) await new Promise((resolve) => setTimeout(resolve, faults.delayMs));
    return serve(req, res, url, entry);
  });

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
const stop = () => {
  for (const pod of pods.values()) pod.process?.kill("SIGKILL");
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
