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
//   image containing "second-fails"  every second create call of it fails with a 500
//   any other image               Running: a real loads-worker process is started with the
//                                 pod's args (paths under /tmp and /var/run/loads are mapped to
//                                 a scratch folder; the Secret volume's key is written there)
//
// Usage: node fake_apiserver.mjs --cert F --key F --token T --worker-bin PATH --scratch DIR
//        [--secret NAME:KEY=VALUE]...
// Prints {"port": N} on stdout when listening. GET /fake/log returns every call and every
// validation verdict; GET /fake/pods the pods that exist now.

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
         "imagePullSecrets", "terminationGracePeriodSeconds", "activeDeadlineSeconds"],
  podSecurityContext: ["runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile"],
  container: ["name", "image", "imagePullPolicy", "args", "command", "env", "resources",
              "securityContext", "volumeMounts", "ports"],
  resources: ["requests", "limits"],
  containerSecurityContext: ["allowPrivilegeEscalation", "readOnlyRootFilesystem",
                             "capabilities", "runAsNonRoot", "runAsUser", "privileged"],
  volumeMount: ["name", "mountPath", "readOnly", "subPath"],
  volume: ["name", "emptyDir", "secret"],
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

function status(res, code, reason, message) {
  res.writeHead(code, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", message, reason,
                           code }));
}

function send(res, code, object) {
  res.writeHead(code, { "Content-Type": "application/json" });
  res.end(JSON.stringify(object));
}

// The kubelet's part: sets the pod's status from its image, and runs real workers.
function schedule(pod) {
  const image = pod.spec.containers[0].image;
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
  const argv = (pod.spec.containers[0].args ?? []).map((a) =>
    a.replace(/^\/tmp/, path.join(root, "tmp")).replace(/^\/var\/run\/loads/,
                                                        path.join(root, "run")));
  const child = spawn(workerBin, argv, { stdio: "ignore" });
  child.on("exit", (code) => {
    if (pods.has(name)) {
      pod.status = { phase: code === 0 ? "Succeeded" : "Failed", containerStatuses: [{
        name: "worker", ready: false, restartCount: 0, image, imageID: "",
        state: { terminated: { reason: code === 0 ? "Completed" : "Error", exitCode: code ?? 137 } } }] };
    }
  });
  pod.status = { phase: "Running", containerStatuses: [{ name: "worker", ready: true,
    restartCount: 0, image, imageID: "", state: { running: { startedAt: new Date().toISOString() } } }] };
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

const server = https.createServer(
  { cert: fs.readFileSync(option("--cert")), key: fs.readFileSync(option("--key")) },
  async (req, res) => {
    const url = new URL(req.url, "https://fake");
    const entry = { method: req.method, path: url.pathname, query: url.search };
    if (url.pathname === "/fake/log") return send(res, 200, log);
    if (url.pathname === "/fake/pods") return send(res, 200, [...pods.values()].map((p) => p.object));
    log.push(entry);
    if (req.headers.authorization !== `Bearer ${token}`) {
      entry.code = 401;
      return status(res, 401, "Unauthorized", "Unauthorized");
    }
    const m = url.pathname.match(/^\/api\/v1\/namespaces\/([a-z0-9-]+)\/pods(?:\/([^/]+))?$/);
    if (!m) {
      entry.code = 404;
      return status(res, 404, "NotFound", `the fake serves pods only, not ${url.pathname}`);
    }
    const [, namespace, name] = m;
    if (req.method === "POST" && !name) {
      let pod;
      try {
        pod = JSON.parse(await body(req));
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
      if (pod.spec.containers[0].image.includes("refuse")) {
        entry.code = 403;
        return status(res, 403, "Forbidden",
          `pods is forbidden: User "system:serviceaccount:${namespace}:loads" cannot create resource "pods"`);
      }
      if (pod.spec.containers[0].image.includes("second-fails") && ++creates % 2 === 0) {
        entry.code = 500;
        return status(res, 500, "InternalError", "etcdserver: request timed out");
      }
      if (pods.has(pod.metadata.name)) {
        entry.code = 409;
        return status(res, 409, "AlreadyExists", `pods "${pod.metadata.name}" already exists`);
      }
      pod.metadata.uid = `uid-${++uid}`;
      pod.metadata.creationTimestamp = new Date().toISOString();
      const child = schedule(pod);
      pods.set(pod.metadata.name, { object: pod, process: child });
      entry.code = 201;
      return send(res, 201, pod);
    }
    if (req.method === "GET" && !name) {
      const items = [...pods.values()].map((p) => p.object)
        .filter((p) => p.metadata.namespace === namespace)
        .filter((p) => matches(p, url.searchParams.get("labelSelector")));
      entry.code = 200;
      return send(res, 200, { kind: "PodList", apiVersion: "v1", metadata: {}, items });
    }
    if (req.method === "DELETE" && name) {
      const pod = pods.get(name);
      if (!pod) {
        entry.code = 404;
        return status(res, 404, "NotFound", `pods "${name}" not found`);
      }
      pods.delete(name);
      pod.process?.kill("SIGTERM");
      entry.code = 200;
      return send(res, 200, pod.object);
    }
    entry.code = 405;
    return status(res, 405, "MethodNotAllowed", `${req.method} is not served by the fake`);
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
