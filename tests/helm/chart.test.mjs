// Tests of the Helm chart helm/loads, without Helm or a cluster: the chart is rendered by
// tools/helm-render (NOT Helm: Helm's template engine, Go text/template + sprig, with the Helm
// objects this chart uses), for values.yaml alone and with each examples/*.yaml, and every object
// is checked against the Kubernetes schemas (kubernetes-models), for unknown fields, and for what
// this chart promises: labels, selectors, probes, security contexts, resources, token checksums,
// RBAC and the ServiceAccount, the autoscaler, the dashboard, the ServiceMonitor, the live page
// (port, --web, Ingress), PodDisruptionBudgets, the NetworkPolicy, the extra env/args/volumes,
// image digests and `global` values, and the `helm test` pod; and that two renders of the same
// values are byte-identical when the tokens Secret is in the cluster (`lookup`) or named by
// auth.existingSecret. The values are checked against values.schema.json, and bad values must be
// refused.
//
//   node --test tests/helm/   (LOADS_HELM_RENDER: a built renderer; LOADS_BIN_DIR: the binaries
//                              whose --help lists the flags the chart passes, default build/bin)

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { before, describe, it } from "node:test";
import Ajv from "ajv";
import yaml from "js-yaml";

import {
  chartDir,
  flagsOf,
  helpFlags,
  mergedValues,
  modelOf,
  parseManifests,
  podSpecs,
  render,
  renderNotes,
  renderText,
  repoRoot,
  runRenderer,
  selects,
  subsetOf,
  unknownFields,
} from "./lib.mjs";

const RELEASE = "demo";
const NAMESPACE = "perf";
const FULLNAME = "demo-loads";
const CONTROLLER = `${FULLNAME}-controller`;
const chart = yaml.load(readFileSync(path.join(chartDir, "Chart.yaml"), "utf8"));
const dashboardFile = path.join(chartDir, "dashboards/loads.json");
const schema = JSON.parse(readFileSync(path.join(chartDir, "values.schema.json"), "utf8"));
const binDir = process.env.LOADS_BIN_DIR || path.join(repoRoot, "build/bin");
const examplesDir = path.join(chartDir, "examples");

// The flags of the Kubernetes launcher, added to loads-controller with it. Until its --help
// lists --launcher, they cannot be checked against the binary (the test says so).
const LAUNCHER_FLAGS = [
  "--launcher",
  "--advertise",
  "--worker-image",
  "--worker-cpu",
  "--worker-memory",
  "--worker-token-secret",
  "--worker-pending-timeout",
  "--max-launched-workers",
  "--instance",
];

function newAjv() {
  return new Ajv({ strict: true, allErrors: true });
}
const validateValues = newAjv().compile(schema);

// values.yaml alone, with each example, and with values no example sets (the whole battery runs
// on each).
const cases = [
  { name: "values.yaml", files: [] },
  ...readdirSync(examplesDir)
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f) => ({ name: `examples/${f}`, files: [path.join(examplesDir, f)] })),
  { name: "web.enabled=false", files: [writeTemp("no-web.yaml", "web:\n  enabled: false\n")] },
  {
    // An Ingress without host nor TLS, on another port and class: the rule matches every host.
    name: "web.ingress without host or TLS",
    files: [
      writeTemp(
        "web-ingress-plain.yaml",
        "web:\n  port: 8080\n  ingress:\n    enabled: true\n    pathType: ImplementationSpecific\n",
      ),
    ],
  },
  {
    // As a subchart: Helm passes the parent's `global`, with keys of other charts; the chart
    // is installed in another namespace than the release's, and one image is pinned by digest.
    name: "a subchart's global values and namespaceOverride",
    files: [
      writeTemp(
        "subchart.yaml",
        [
          "global:",
          "  imageRegistry: mirror.example.com:5000",
          "  imagePullSecrets: [mirror-creds, {name: shared-creds}]",
          "  storageClass: fast",
          "  postgresql: {auth: {database: app}}",
          "image:",
          "  registry: ignored.example.com",
          "  digests:",
          `    worker: sha256:${"ab".repeat(32)}`,
          "imagePullSecrets: [{name: shared-creds}, {name: own-creds}]",
          "namespaceOverride: load-testing",
          "worker: {enabled: true, replicas: 1}",
          "",
        ].join("\n"),
      ),
    ],
  },
  {
    // An existing ServiceAccount (create: false), a NetworkPolicy with no extra peer (NOTES.txt
    // warns for the ServiceMonitor and the Ingress), a controller budget given as maxUnavailable,
    // and a workers' budget without standing workers (not rendered).
    name: "an existing ServiceAccount and a bare NetworkPolicy",
    files: [
      writeTemp(
        "existing-account.yaml",
        [
          "serviceAccount: {create: false, name: loads-launcher}",
          "networkPolicy: {enabled: true}",
          "controller: {podDisruptionBudget: {enabled: true, maxUnavailable: 0}}",
          "worker: {podDisruptionBudget: {enabled: true}}",
          "serviceMonitor: {enabled: true}",
          "web: {ingress: {enabled: true, host: loads.example.com}}",
          "",
        ].join("\n"),
      ),
    ],
  },
  {
    // No account at all: without the launcher nothing needs one.
    name: "no ServiceAccount and no launcher",
    files: [writeTemp("no-account.yaml", "serviceAccount: {create: false}\nlauncher: {enabled: false}\n")],
  },
];

// The registry every image comes from: an umbrella chart's global.imageRegistry wins.
function registryOf(values) {
  return values.global?.imageRegistry || values.image.registry;
}

// key: controller, worker or runner.
function imageRef(values, key) {
  const { repository, tag, names, digests } = values.image;
  const registry = registryOf(values);
  const path = `${registry ? `${registry}/` : ""}${repository}/${names[key]}`;
  return digests[key] ? `${path}@${digests[key]}` : `${path}:${tag || chart.appVersion}`;
}

// global.imagePullSecrets (names or {name}) then imagePullSecrets, each once.
function pullSecretNames(values) {
  const names = [
    ...(values.global?.imagePullSecrets ?? []).map((s) => (typeof s === "string" ? s : s.name)),
    ...values.imagePullSecrets.map((s) => s.name),
  ];
  return [...new Set(names)];
}

function namespaceOf(values) {
  return values.namespaceOverride || NAMESPACE;
}

function serviceAccountOf(values) {
  const { create, name } = values.serviceAccount;
  return create ? name || CONTROLLER : name || undefined;
}

// The labels the launcher (controller/src/kubernetes_launcher.cc) gives the worker pods it creates.
function launchedWorkerLabels() {
  return {
    "app.kubernetes.io/name": "loads",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "worker",
    "app.kubernetes.io/managed-by": "loads-controller",
    "loads/run-hash": "0123456789ab",
  };
}

// A container's args without its extraArgs, which must be the last ones.
function splitArgs(args, extra) {
  const chartArgs = args.slice(0, args.length - extra.length);
  assert.deepEqual(args.slice(args.length - extra.length), extra, "extraArgs are not the last arguments");
  return chartArgs;
}

function tokensSecretName(values) {
  return values.auth.existingSecret || `${FULLNAME}-tokens`;
}

function sha256(text) {
  return createHash("sha256").update(text).digest("hex");
}

function writeTemp(name, text) {
  const dir = mkdtempSync(path.join(tmpdir(), "loads-helm-values-"));
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

it("has the examples the documentation names", () => {
  const names = cases.map((c) => c.name);
  for (const name of [
    "minimal",
    "standing-workers",
    "autoscaling",
    "monitoring",
    "web-ingress",
    "gitops",
    "openshift",
    "hardened",
  ]) {
    assert.ok(names.includes(`examples/${name}.yaml`), `examples/${name}.yaml is missing`);
  }
});

for (const testCase of cases) {
  describe(`chart rendered with ${testCase.name}`, () => {
    let docs;
    let values;
    const find = (kind, name) =>
      docs.map((d) => d.object).find((o) => o.kind === kind && (!name || o.metadata.name === name));
    const all = (kind) => docs.map((d) => d.object).filter((o) => o.kind === kind);
    const controller = () => find("Deployment", CONTROLLER);
    const workers = () => find("Deployment", `${FULLNAME}-worker`);
    const testPod = () => find("Pod", `${FULLNAME}-test-run`);

    before(() => {
      docs = render({ valueFiles: testCase.files, release: RELEASE, namespace: NAMESPACE });
      values = mergedValues(testCase.files);
    });

    it("merged values pass values.schema.json", () => {
      const ok = validateValues(values);
      assert.ok(ok, JSON.stringify(validateValues.errors, null, 2));
    });

    it("renders only valid objects of known kinds, without unknown fields", () => {
      assert.ok(docs.length >= 4, `only ${docs.length} documents`);
      const seen = new Set();
      for (const { source, object } of docs) {
        const where = `${source}: ${object.kind} ${object.metadata?.name}`;
        const Model = modelOf(object);
        assert.ok(Model, `${where}: unexpected apiVersion/kind ${object.apiVersion}/${object.kind}`);
        assert.doesNotThrow(() => new Model(object).validate(), where);
        assert.deepEqual(unknownFields(object), [], `${where}: fields the schema does not know`);
        const key = `${object.kind}/${object.metadata.name}`;
        assert.ok(!seen.has(key), `${where}: rendered twice`);
        seen.add(key);
        const namespace =
          object.kind === "ServiceMonitor" && values.serviceMonitor.namespace
            ? values.serviceMonitor.namespace
            : namespaceOf(values);
        assert.equal(object.metadata.namespace, namespace, `${where}: namespace`);
        assert.match(object.metadata.name, /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/, `${where}: name`);
      }
    });

    it("labels every object with the app.kubernetes.io set", () => {
      for (const { source, object } of docs) {
        const labels = object.metadata.labels ?? {};
        const expected = {
          "app.kubernetes.io/name": "loads",
          "app.kubernetes.io/instance": RELEASE,
          "app.kubernetes.io/version": chart.appVersion,
          "app.kubernetes.io/managed-by": "Helm",
          "app.kubernetes.io/part-of": "loads",
          "helm.sh/chart": `loads-${chart.version}`,
          ...values.commonLabels,
        };
        assert.ok(subsetOf(expected, labels), `${source}: labels ${JSON.stringify(labels)}`);
        if (object.kind !== "Secret") {
          assert.ok(labels["app.kubernetes.io/component"], `${source}: no component label`);
        }
        if (object.kind === "Deployment") {
          // No Deployment's selector may select the pods the launcher creates.
          assert.ok(!selects(object.spec.selector, launchedWorkerLabels()), `${source}: adopts launched pods`);
        }
        for (const [key, value] of Object.entries(labels)) {
          assert.match(String(value), /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/, `${source}: ${key}`);
          assert.ok(String(value).length <= 63, `${source}: ${key} too long`);
        }
      }
    });

    it("selects each workload's own pods with immutable labels only", () => {
      const deployments = all("Deployment");
      const pods = podSpecs(docs);
      for (const deployment of deployments) {
        const selector = deployment.spec.selector.matchLabels;
        assert.ok(subsetOf(selector, deployment.spec.template.metadata.labels), deployment.metadata.name);
        for (const key of ["app.kubernetes.io/version", "helm.sh/chart"]) {
          assert.ok(!(key in selector), `${deployment.metadata.name}: ${key} in the selector`);
        }
        assert.ok(selector["app.kubernetes.io/component"], `${deployment.metadata.name}: no component`);
        for (const pod of pods) {
          if (pod.owner === deployment) continue;
          assert.ok(
            !subsetOf(selector, pod.metadata.labels),
            `${deployment.metadata.name} also selects the pods of ${pod.owner.metadata.name}`,
          );
        }
      }
      const controllerSelector = controller().spec.selector.matchLabels;
      assert.equal(controllerSelector["app.kubernetes.io/component"], "controller");
      if (workers()) {
        // The launcher's worker pods are "worker"s; a standing pool must not adopt them.
        assert.equal(workers().spec.selector.matchLabels["app.kubernetes.io/component"], "standing-worker");
      }
    });

    it("exposes the controller's named ports through a ClusterIP Service", () => {
      const service = find("Service", CONTROLLER);
      assert.ok(service, "no controller Service");
      assert.equal(service.spec.type, "ClusterIP");
      const podLabels = controller().spec.template.metadata.labels;
      assert.ok(subsetOf(service.spec.selector, podLabels), "the Service does not select the controller");
      for (const pod of podSpecs(docs)) {
        if (pod.owner === controller()) continue;
        assert.ok(!subsetOf(service.spec.selector, pod.metadata.labels), `selects ${pod.owner.metadata.name}`);
      }
      const byName = Object.fromEntries(service.spec.ports.map((p) => [p.name, p]));
      assert.deepEqual(
        Object.fromEntries(Object.entries(byName).map(([n, p]) => [n, p.port])),
        {
          grpc: 50051,
          zmq: 5555,
          publish: 5556,
          metrics: 9464,
          ...(values.web.enabled ? { web: values.web.port } : {}),
        },
      );
      const containerPorts = Object.fromEntries(
        controller().spec.template.spec.containers[0].ports.map((p) => [p.name, p.containerPort]),
      );
      for (const port of service.spec.ports) {
        assert.equal(containerPorts[port.targetPort], port.port, `targetPort ${port.targetPort}`);
      }
    });

    it("runs loads-controller with the flags the values ask for", () => {
      const deployment = controller();
      assert.equal(deployment.spec.replicas, 1);
      assert.equal(deployment.spec.strategy.type, "Recreate");
      const container = deployment.spec.template.spec.containers[0];
      assert.deepEqual(container.command, ["loads-controller"]);
      const flags = flagsOf(splitArgs(container.args, values.controller.extraArgs));
      const expected = {
        "--grpc": "0.0.0.0:50051",
        "--zmq": "tcp://0.0.0.0:5555",
        "--publish": "tcp://0.0.0.0:5556",
        "--metrics": "0.0.0.0:9464",
        "--token-file": "/var/run/loads/worker-token",
        "--api-token-file": "/var/run/loads/api-token",
        "--worker-timeout": String(values.controller.workerTimeout),
        "--metrics-retention": String(values.controller.metricsRetention),
        "--state-dir": "/var/lib/loads/state",
        "--restart-grace": String(values.controller.restartGrace),
      };
      if (values.web.enabled) expected["--web"] = `0.0.0.0:${values.web.port}`;
      // The state folder is a mounted volume (the root filesystem is read-only): a claim when
      // persistence is on, an emptyDir otherwise.
      const state = deployment.spec.template.spec.volumes.find((v) => v.name === "state");
      assert.ok(
        container.volumeMounts.some((m) => m.name === "state" && m.mountPath === "/var/lib/loads"),
      );
      if (values.controller.persistence.enabled) {
        assert.equal(state.persistentVolumeClaim.claimName, `${CONTROLLER}-state`);
        const claim = find("PersistentVolumeClaim", `${CONTROLLER}-state`);
        assert.ok(claim, "no PersistentVolumeClaim for the state folder");
        assert.equal(claim.spec.resources.requests.storage, values.controller.persistence.size);
      } else {
        assert.deepEqual(state.emptyDir, {});
        assert.equal(all("PersistentVolumeClaim").length, 0);
      }
      if (values.launcher.enabled) {
        Object.assign(expected, {
          "--launcher": "kubernetes",
          "--advertise": `tcp://${CONTROLLER}.${namespaceOf(values)}.svc:5555`,
          "--worker-image": imageRef(values, "worker"),
          "--worker-cpu": String(values.launcher.workerCpu),
          "--worker-memory": String(values.launcher.workerMemory),
          "--worker-token-secret": tokensSecretName(values),
          "--worker-pending-timeout": String(values.launcher.workerPendingTimeout),
          "--max-launched-workers": String(values.launcher.maxLaunchedWorkers),
          "--instance": RELEASE,
          "--image-pull-policy": values.image.pullPolicy,
        });
        // Launched worker pods pull with the same Secrets as the chart's pods.
        if (pullSecretNames(values).length) {
          expected["--image-pull-secret"] = pullSecretNames(values);
        }
        const chartEnv = container.env.slice(0, 2);
        const env = Object.fromEntries(chartEnv.map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]));
        assert.deepEqual(env, { LOADS_POD_NAME: "metadata.name", LOADS_POD_UID: "metadata.uid" });
        assert.deepEqual(container.env.slice(2), values.controller.extraEnv);
      } else {
        // No launcher: the controller must not fork workers inside its own container.
        expected["--max-local-workers"] = "0";
        assert.deepEqual(container.env ?? [], values.controller.extraEnv);
      }
      assert.deepEqual(flags, expected);
    });

    it("passes only flags the binaries know", (t) => {
      const controllerHelp = helpFlags(binDir, "loads-controller");
      const workerHelp = helpFlags(binDir, "loads-worker");
      if (!controllerHelp || !workerHelp) {
        t.skip(`no loads-controller or loads-worker in ${binDir}`);
        return;
      }
      const launcherLanded = controllerHelp.has("--launcher");
      // The extra arguments too: they are flags and their values, in pairs in these tests.
      for (const flag of Object.keys(flagsOf(controller().spec.template.spec.containers[0].args))) {
        if (LAUNCHER_FLAGS.includes(flag) && !launcherLanded) continue;
        assert.ok(controllerHelp.has(flag), `loads-controller --help does not list ${flag}`);
      }
      if (values.launcher.enabled && !launcherLanded) {
        t.diagnostic(`loads-controller in ${binDir} has no --launcher yet: launcher flags not checked`);
      }
      if (workers()) {
        for (const flag of Object.keys(flagsOf(workers().spec.template.spec.containers[0].args))) {
          assert.ok(workerHelp.has(flag), `loads-worker --help does not list ${flag}`);
        }
      }
    });

    it("serves the live page on its port, behind an Ingress only when asked", () => {
      const container = controller().spec.template.spec.containers[0];
      const webPorts = container.ports.filter((p) => p.name === "web");
      const service = find("Service", CONTROLLER);
      const servicePort = service.spec.ports.find((p) => p.name === "web");
      const ingresses = all("Ingress");
      const flags = flagsOf(container.args);
      if (!values.web.enabled) {
        assert.deepEqual(webPorts, []);
        assert.equal(servicePort, undefined);
        assert.ok(!("--web" in flags), "--web without web.enabled");
        assert.deepEqual(ingresses, []);
        return;
      }
      assert.deepEqual(webPorts, [{ name: "web", containerPort: values.web.port, protocol: "TCP" }]);
      assert.deepEqual(servicePort, { name: "web", port: values.web.port, targetPort: "web", protocol: "TCP" });
      // Beyond loopback the controller serves the page only with the API token: the page is
      // never open to whoever reaches the port.
      assert.equal(flags["--web"], `0.0.0.0:${values.web.port}`);
      assert.equal(flags["--api-token-file"], "/var/run/loads/api-token");
      assert.ok(!("--insecure" in flags), "--insecure would open the page without a token");
      // No other port of the container or the Service shares the page's number.
      const numbers = container.ports.map((p) => p.containerPort);
      assert.equal(new Set(numbers).size, numbers.length, `container ports ${numbers}`);
      const serviceNumbers = service.spec.ports.map((p) => p.port);
      assert.equal(new Set(serviceNumbers).size, serviceNumbers.length, `Service ports ${serviceNumbers}`);

      const ingress = values.web.ingress;
      if (!ingress.enabled) {
        assert.deepEqual(ingresses, []);
        return;
      }
      assert.equal(ingresses.length, 1);
      const [object] = ingresses;
      assert.equal(object.metadata.name, `${FULLNAME}-web`);
      assert.deepEqual(object.metadata.annotations ?? {}, ingress.annotations);
      assert.equal(object.spec.ingressClassName, ingress.className || undefined);
      assert.deepEqual(object.spec.tls ?? [], ingress.tls);
      assert.equal(object.spec.defaultBackend, undefined);
      assert.equal(object.spec.rules.length, 1);
      const [rule] = object.spec.rules;
      assert.equal(rule.host, ingress.host || undefined);
      assert.deepEqual(rule.http.paths, [
        {
          path: ingress.path,
          pathType: ingress.pathType,
          backend: { service: { name: CONTROLLER, port: { name: "web" } } },
        },
      ]);
      // The backend is the Service's web port, which targets the container's web port.
      assert.equal(service.metadata.name, rule.http.paths[0].backend.service.name);
      assert.ok(servicePort, "the Ingress routes to a port the Service does not have");
      for (const tls of ingress.tls) {
        for (const host of tls.hosts ?? []) assert.equal(host, ingress.host, `TLS for ${host}, a host of no rule`);
      }
    });

    it("probes the controller with gRPC health checks on 50051", () => {
      const container = controller().spec.template.spec.containers[0];
      for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
        assert.deepEqual(container[probe]?.grpc, { port: 50051 }, probe);
      }
    });

    it("secures every pod and container (restricted Pod Security), from the values", () => {
      const pods = podSpecs(docs);
      assert.ok(pods.length >= 2);
      for (const { owner, spec } of pods) {
        const where = `${owner.kind} ${owner.metadata.name}`;
        assert.deepEqual(spec.securityContext, values.podSecurityContext, where);
        // What the "restricted" Pod Security Standard asks of a pod, whatever the values unset.
        assert.equal(spec.securityContext.runAsNonRoot, true, where);
        assert.equal(spec.securityContext.seccompProfile?.type, "RuntimeDefault", where);
        assert.notEqual(spec.securityContext.runAsUser, 0, where);
        assert.equal(spec.hostNetwork, undefined, where);
        const tmp = spec.volumes.find((v) => v.name === "tmp");
        assert.deepEqual(tmp, { name: "tmp", emptyDir: {} }, `${where}: /tmp volume`);
        for (const container of [...spec.containers, ...(spec.initContainers ?? [])]) {
          const cwhere = `${where} container ${container.name}`;
          const sc = container.securityContext ?? {};
          assert.deepEqual(sc, values.containerSecurityContext, cwhere);
          assert.equal(sc.readOnlyRootFilesystem, true, cwhere);
          assert.equal(sc.allowPrivilegeEscalation, false, cwhere);
          assert.deepEqual(sc.capabilities, { drop: ["ALL"] }, cwhere);
          assert.notEqual(sc.privileged, true, cwhere);
          assert.notEqual(sc.runAsNonRoot, false, cwhere);
          assert.ok(
            container.volumeMounts.some((m) => m.name === "tmp" && m.mountPath === "/tmp"),
            `${cwhere}: /tmp not mounted`,
          );
        }
      }
    });

    it("sets requests and limits on every container, from the values", () => {
      const fromValues = new Map([
        [controller(), values.controller.resources],
        [workers(), values.worker.resources],
        [testPod(), values.tests.resources],
      ]);
      for (const { owner, spec } of podSpecs(docs)) {
        for (const container of spec.containers) {
          const where = `${owner.metadata.name}/${container.name}`;
          for (const kind of ["requests", "limits"]) {
            for (const resource of ["cpu", "memory"]) {
              assert.ok(container.resources?.[kind]?.[resource] !== undefined, `${where}: no ${kind}.${resource}`);
            }
          }
          assert.ok(fromValues.has(owner), `${where}: a pod the test does not know`);
          assert.deepEqual(container.resources, fromValues.get(owner), where);
        }
      }
    });

    it("uses the images of the values (global registry, digests, pull Secrets)", () => {
      const expected = new Map([
        [controller(), "controller"],
        [workers(), "worker"],
        [testPod(), "runner"],
      ]);
      for (const { owner, spec } of podSpecs(docs)) {
        assert.deepEqual(
          spec.imagePullSecrets ?? [],
          pullSecretNames(values).map((name) => ({ name })),
          `${owner.metadata.name}: imagePullSecrets`,
        );
        for (const container of spec.containers) {
          const key = expected.get(owner);
          assert.equal(container.image, imageRef(values, key), owner.metadata.name);
          assert.equal(container.imagePullPolicy, values.image.pullPolicy, owner.metadata.name);
          // A digest replaces the tag: name@sha256:..., never name:tag@sha256:...
          if (values.image.digests[key]) {
            assert.match(container.image, /^[^:@]+(:[0-9]+)?\/[^:@]+@sha256:[0-9a-f]{64}$/, owner.metadata.name);
          } else {
            assert.ok(!container.image.includes("@"), owner.metadata.name);
          }
        }
      }
    });

    it("mounts the tokens each pod needs and no more", () => {
      const secretName = tokensSecretName(values);
      const expectedKeys = new Map([
        [controller(), ["api-token", "worker-token"]],
        [workers(), ["worker-token"]],
        [testPod(), ["api-token"]],
      ]);
      for (const { owner, spec } of podSpecs(docs)) {
        const volume = spec.volumes.find((v) => v.name === "tokens");
        assert.equal(volume.secret.secretName, secretName, owner.metadata.name);
        assert.deepEqual(
          volume.secret.items.map((i) => `${i.key}=${i.path}`),
          expectedKeys.get(owner).map((k) => `${k}=${k}`),
          owner.metadata.name,
        );
        for (const container of spec.containers) {
          const mount = container.volumeMounts.find((m) => m.name === "tokens");
          assert.deepEqual(mount, { name: "tokens", mountPath: "/var/run/loads", readOnly: true });
        }
      }
    });

    it("generates the tokens Secret, and pods carry its checksum", () => {
      const secretDoc = docs.find((d) => d.object.kind === "Secret");
      const deployments = all("Deployment");
      if (values.auth.existingSecret) {
        assert.equal(secretDoc, undefined, "a Secret is rendered despite auth.existingSecret");
        for (const deployment of deployments) {
          const annotations = deployment.spec.template.metadata.annotations ?? {};
          assert.ok(!("checksum/secret" in annotations), `${deployment.metadata.name}: checksum of no Secret`);
        }
        return;
      }
      assert.ok(secretDoc, "no Secret");
      const secret = secretDoc.object;
      assert.equal(secret.metadata.name, `${FULLNAME}-tokens`);
      assert.equal(secret.type, "Opaque");
      assert.deepEqual(Object.keys(secret.data).sort(), ["api-token", "worker-token"]);
      const tokens = Object.values(secret.data).map((v) => Buffer.from(v, "base64").toString());
      for (const token of tokens) assert.match(token, /^[A-Za-z0-9]{32}$/);
      assert.notEqual(tokens[0], tokens[1], "one token for both roles");
      // Helm's `include ... | sha256sum` hashes the template's output, which ends with a newline
      // that the printed document is trimmed of.
      const checksum = sha256(`${secretDoc.text}\n`);
      for (const deployment of deployments) {
        assert.equal(
          deployment.spec.template.metadata.annotations?.["checksum/secret"],
          checksum,
          `${deployment.metadata.name}: checksum/secret is not the Secret's`,
        );
      }
    });

    it("gives Kubernetes API access to the launcher only, limited to pods", () => {
      const controllerPod = controller().spec.template.spec;
      const roles = all("Role");
      const bindings = all("RoleBinding");
      const accounts = all("ServiceAccount");
      const accountName = serviceAccountOf(values);
      assert.equal(all("ClusterRole").length + all("ClusterRoleBinding").length, 0);
      for (const { owner, spec } of podSpecs(docs)) {
        if (owner === controller()) continue;
        assert.equal(spec.automountServiceAccountToken, false, `${owner.metadata.name} gets API credentials`);
        assert.equal(spec.serviceAccountName, undefined, owner.metadata.name);
      }
      // The account: created with its annotations (workload identity), or an existing one.
      assert.equal(controllerPod.serviceAccountName, accountName);
      if (values.serviceAccount.create) {
        assert.equal(accounts.length, 1);
        assert.equal(accounts[0].metadata.name, accountName);
        assert.deepEqual(accounts[0].metadata.annotations ?? {}, values.serviceAccount.annotations);
        assert.equal(accounts[0].automountServiceAccountToken, values.launcher.enabled);
      } else {
        assert.equal(accounts.length, 0, "a ServiceAccount despite serviceAccount.create=false");
      }
      if (!values.launcher.enabled) {
        assert.equal(roles.length + bindings.length, 0, "RBAC objects without the launcher");
        assert.equal(controllerPod.automountServiceAccountToken, false);
        return;
      }
      assert.ok(accountName, "the launcher without a ServiceAccount");
      assert.notEqual(accountName, "default");
      assert.equal(roles.length, 1);
      assert.equal(bindings.length, 1);
      assert.equal(controllerPod.automountServiceAccountToken, true);
      assert.deepEqual(roles[0].rules, [
        { apiGroups: [""], resources: ["pods"], verbs: ["create", "list", "delete"] },
      ]);
      assert.deepEqual(bindings[0].roleRef, {
        apiGroup: "rbac.authorization.k8s.io",
        kind: "Role",
        name: roles[0].metadata.name,
      });
      assert.deepEqual(bindings[0].subjects, [
        { kind: "ServiceAccount", name: accountName, namespace: namespaceOf(values) },
      ]);
    });

    it("runs standing workers only when asked, replicas or autoscaler", () => {
      const deployment = workers();
      const hpa = find("HorizontalPodAutoscaler");
      if (!values.worker.enabled) {
        assert.equal(deployment, undefined);
        assert.equal(hpa, undefined);
        return;
      }
      assert.ok(deployment, "no worker Deployment");
      if (values.worker.autoscaling.enabled) {
        assert.ok(!("replicas" in deployment.spec), "replicas fight the autoscaler");
        assert.ok(hpa, "no HorizontalPodAutoscaler");
        assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: "apps/v1", kind: "Deployment", name: deployment.metadata.name });
        assert.equal(hpa.spec.minReplicas, values.worker.autoscaling.minReplicas);
        assert.equal(hpa.spec.maxReplicas, values.worker.autoscaling.maxReplicas);
        assert.deepEqual(hpa.spec.metrics, [
          {
            type: "Resource",
            resource: {
              name: "cpu",
              target: { type: "Utilization", averageUtilization: values.worker.autoscaling.targetCPUUtilizationPercentage },
            },
          },
        ]);
        assert.deepEqual(hpa.spec.behavior, {
          scaleDown: { stabilizationWindowSeconds: values.worker.autoscaling.scaleDownStabilizationWindowSeconds },
        });
      } else {
        assert.equal(deployment.spec.replicas, values.worker.replicas);
        assert.equal(hpa, undefined);
      }
      const container = deployment.spec.template.spec.containers[0];
      assert.deepEqual(container.command, ["loads-worker"]);
      const flags = flagsOf(splitArgs(container.args, values.worker.extraArgs));
      assert.deepEqual(flags, {
        "--controller": `tcp://${CONTROLLER}:5555`,
        "--id": "$(LOADS_POD_NAME)",
        "--token-file": "/var/run/loads/worker-token",
        "--work-dir": "/tmp/loads",
        "--metrics": "0.0.0.0:9465",
        "--threads": values.worker.threads ? String(values.worker.threads) : "$(LOADS_CPU_LIMIT)",
        "--controller-timeout": String(values.worker.controllerTimeout),
      });
      // Every $(VAR) the kubelet must expand is defined.
      const env = Object.fromEntries(container.env.map((e) => [e.name, e.valueFrom]));
      for (const arg of container.args) {
        for (const [, name] of arg.matchAll(/\$\(([A-Z_]+)\)/g)) assert.ok(env[name], `${name} is not defined`);
      }
      assert.deepEqual(env.LOADS_POD_NAME, { fieldRef: { fieldPath: "metadata.name" } });
      assert.deepEqual(env.LOADS_CPU_LIMIT, {
        resourceFieldRef: { containerName: "worker", resource: "limits.cpu", divisor: "1" },
      });
      assert.deepEqual(container.env.slice(2), values.worker.extraEnv);
      assert.ok(find("Service", CONTROLLER), "workers connect to a Service that is not rendered");
      // A worker has no server but its metrics: the liveness probe reads them.
      assert.deepEqual(container.ports, [{ name: "metrics", containerPort: 9465, protocol: "TCP" }]);
      assert.deepEqual(container.livenessProbe.httpGet, { path: "/metrics", port: "metrics" });
      assert.equal(container.readinessProbe, undefined);
    });

    it("ships the Grafana dashboard in a labelled ConfigMap", () => {
      const configMap = find("ConfigMap", `${FULLNAME}-dashboards`);
      if (!values.dashboards.enabled) {
        assert.equal(configMap, undefined);
        return;
      }
      assert.ok(configMap, "no dashboard ConfigMap");
      assert.equal(configMap.metadata.labels[values.dashboards.label], values.dashboards.labelValue);
      assert.deepEqual(configMap.metadata.annotations ?? {}, values.dashboards.annotations);
      assert.deepEqual(Object.keys(configMap.data), ["loads.json"]);
      assert.deepEqual(JSON.parse(configMap.data["loads.json"]), JSON.parse(readFileSync(dashboardFile, "utf8")));
    });

    it("adds a ServiceMonitor that finds the controller's metrics port", () => {
      const monitor = find("ServiceMonitor");
      if (!values.serviceMonitor.enabled) {
        assert.equal(monitor, undefined);
        return;
      }
      assert.ok(monitor, "no ServiceMonitor");
      const service = find("Service", CONTROLLER);
      assert.ok(subsetOf(monitor.spec.selector.matchLabels, service.metadata.labels), "selects no Service");
      assert.deepEqual(monitor.spec.namespaceSelector, { matchNames: [namespaceOf(values)] });
      const servicePorts = service.spec.ports.map((p) => p.name);
      assert.equal(monitor.spec.endpoints.length, 1);
      const [endpoint] = monitor.spec.endpoints;
      assert.ok(servicePorts.includes(endpoint.port), `no Service port named ${endpoint.port}`);
      assert.equal(endpoint.port, "metrics");
      assert.equal(endpoint.path, "/metrics");
      assert.equal(endpoint.interval, values.serviceMonitor.interval || undefined);
      assert.equal(endpoint.scrapeTimeout, values.serviceMonitor.scrapeTimeout || undefined);
      assert.ok(subsetOf(values.serviceMonitor.labels, monitor.metadata.labels), "labels for Prometheus");
    });

    it("has a helm test pod that runs a small run through the controller", () => {
      const pod = testPod();
      assert.ok(pod, "no test pod");
      assert.equal(pod.metadata.annotations["helm.sh/hook"], "test");
      assert.equal(pod.spec.restartPolicy, "Never");
      assert.equal(pod.spec.containers.length, 1);
      const [container] = pod.spec.containers;
      assert.deepEqual(container.command.slice(0, 2), ["sh", "-c"]);
      assert.equal(container.command.length, 3);
      const script = container.command[2];
      // Continuation lines joined, as sh reads them.
      const runner = /^exec loads-runner (.*)$/m.exec(script.replace(/\\\n\s*/g, " "))?.[1];
      assert.ok(runner, "the script does not exec loads-runner");
      const words = runner.trim().split(/\s+/);
      assert.deepEqual(words, [
        "--controller",
        `${CONTROLLER}:50051`,
        "--token-file",
        "/var/run/loads/api-token",
        "--url",
        '"http://${POD_IP}:8080/"',
        "-u",
        "2",
        "--hits",
        "5",
        "--workers",
        "1",
      ]);
      assert.match(script, /^loads-demo-target --address 0\.0\.0\.0 --port 8080 /m);
      assert.deepEqual(container.env, [{ name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } }]);
      const runnerHelp = helpFlags(binDir, "loads-runner");
      const targetHelp = helpFlags(binDir, "loads-demo-target");
      if (runnerHelp && targetHelp) {
        for (const flag of words.filter((w) => w.startsWith("--"))) assert.ok(runnerHelp.has(flag), flag);
        for (const flag of ["--address", "--port"]) assert.ok(targetHelp.has(flag), flag);
      }
    });

    it("renders byte-identical twice once its tokens are in the cluster (or in existingSecret)", () => {
      const options = { valueFiles: testCase.files, release: RELEASE, namespace: NAMESPACE };
      if (values.auth.existingSecret) {
        // Nothing random is rendered: no lookup needed, as under `helm template` (GitOps).
        assert.equal(renderText(options), renderText(options));
        return;
      }
      // The install; then two upgrades, with the Secret the install created in the cluster.
      const install = render(options);
      const secret = install.find((d) => d.object.kind === "Secret");
      const cluster = writeTemp("cluster.yaml", `${secret.text}\n`);
      const first = renderText({ ...options, lookups: [cluster] });
      const second = renderText({ ...options, lookups: [cluster] });
      assert.equal(first, second, "two upgrades with the same values differ");
      const upgraded = parseManifests(first);
      // The upgrade keeps the tokens, so its checksum too: pods are not restarted.
      const upgradedSecret = upgraded.find((d) => d.object.kind === "Secret");
      assert.deepEqual(upgradedSecret.object.data, secret.object.data, "the upgrade changed the tokens");
      assert.equal(upgradedSecret.text, secret.text);
      const checksums = (ds) =>
        ds.filter((d) => d.object.kind === "Deployment").map((d) => d.object.spec.template.metadata.annotations["checksum/secret"]);
      assert.deepEqual(checksums(upgraded), checksums(install));
    });

    it("sets the Deployments' revisionHistoryLimit and terminationGracePeriodSeconds", () => {
      const pairs = [[controller(), values.controller]];
      if (workers()) pairs.push([workers(), values.worker]);
      for (const [deployment, component] of pairs) {
        const where = deployment.metadata.name;
        assert.equal(deployment.spec.revisionHistoryLimit, component.revisionHistoryLimit, where);
        assert.equal(deployment.spec.template.spec.terminationGracePeriodSeconds, component.terminationGracePeriodSeconds, where);
      }
    });

    it("adds the extra env, args, volumes and mounts of the values, after the chart's", () => {
      const pairs = [[controller(), values.controller, ["tokens", "tmp", "state"]]];
      if (workers()) pairs.push([workers(), values.worker, ["tokens", "tmp"]]);
      for (const [deployment, component, own] of pairs) {
        const where = deployment.metadata.name;
        const spec = deployment.spec.template.spec;
        const [container] = spec.containers;
        assert.deepEqual(spec.volumes.map((v) => v.name), [...own, ...component.extraVolumes.map((v) => v.name)], where);
        assert.deepEqual(spec.volumes.slice(own.length), component.extraVolumes, where);
        const mounts = container.volumeMounts;
        assert.deepEqual(mounts.slice(mounts.length - component.extraVolumeMounts.length), component.extraVolumeMounts, where);
        assert.deepEqual(
          mounts.slice(0, mounts.length - component.extraVolumeMounts.length).map((m) => m.name),
          own,
          `${where}: the chart's mounts`,
        );
        // Every argument is a string in the manifest (a number would be refused by the API).
        for (const arg of container.args) assert.equal(typeof arg, "string", `${where}: ${arg}`);
        assert.deepEqual(container.args.slice(container.args.length - component.extraArgs.length), component.extraArgs);
        const env = container.env ?? [];
        assert.deepEqual(env.slice(env.length - component.extraEnv.length), component.extraEnv, where);
      }
    });

    it("mounts only volumes its pod has, each name once", () => {
      for (const { owner, spec } of podSpecs(docs)) {
        const names = spec.volumes.map((v) => v.name);
        assert.equal(new Set(names).size, names.length, `${owner.metadata.name}: volumes ${names}`);
        for (const container of spec.containers) {
          const paths = container.volumeMounts.map((m) => m.mountPath);
          assert.equal(new Set(paths).size, paths.length, `${owner.metadata.name}: mount paths ${paths}`);
          for (const mount of container.volumeMounts) {
            assert.ok(names.includes(mount.name), `${owner.metadata.name}: mounts the missing volume ${mount.name}`);
          }
        }
      }
    });

    it("adds PodDisruptionBudgets only when asked, each selecting its own pods", () => {
      const budgets = all("PodDisruptionBudget");
      const expected = [];
      if (values.controller.podDisruptionBudget.enabled) {
        expected.push([CONTROLLER, controller(), values.controller.podDisruptionBudget, { minAvailable: 1 }]);
      }
      if (values.worker.enabled && values.worker.podDisruptionBudget.enabled) {
        expected.push([`${FULLNAME}-worker`, workers(), values.worker.podDisruptionBudget, { maxUnavailable: 1 }]);
      }
      assert.deepEqual(budgets.map((b) => b.metadata.name).sort(), expected.map(([name]) => name).sort());
      for (const [name, owner, pdb, fallback] of expected) {
        const budget = budgets.find((b) => b.metadata.name === name);
        const { selector, ...rest } = budget.spec;
        const given = Object.fromEntries(
          ["minAvailable", "maxUnavailable"].filter((k) => pdb[k] !== "").map((k) => [k, pdb[k]]),
        );
        assert.deepEqual(rest, Object.keys(given).length ? given : fallback, name);
        assert.deepEqual(selector.matchLabels, owner.spec.selector.matchLabels, name);
        for (const pod of podSpecs(docs)) {
          assert.equal(selects(selector, pod.metadata.labels), pod.owner === owner, `${name} and ${pod.owner.metadata.name}`);
        }
        assert.ok(!selects(selector, launchedWorkerLabels()), `${name} selects launched worker pods`);
      }
    });

    it("restricts who reaches the controller with a NetworkPolicy only when asked", () => {
      const policies = all("NetworkPolicy");
      const np = values.networkPolicy;
      if (!np.enabled) {
        assert.deepEqual(policies, []);
        return;
      }
      assert.equal(policies.length, 1);
      const [policy] = policies;
      assert.equal(policy.metadata.name, CONTROLLER);
      assert.deepEqual(policy.spec.policyTypes, ["Ingress"]);
      // It applies to the controller's pods, and to no other pod of the chart.
      for (const pod of podSpecs(docs)) {
        assert.equal(selects(policy.spec.podSelector, pod.metadata.labels), pod.owner === controller(), pod.owner.metadata.name);
      }
      const service = find("Service", CONTROLLER);
      const servicePorts = new Map(service.spec.ports.map((p) => [p.port, p.name]));
      // Who may reach each port: {port name: [peers]}. An empty or missing "from" would let
      // everyone in.
      const allowed = {};
      for (const rule of policy.spec.ingress) {
        assert.ok(Array.isArray(rule.from) && rule.from.length > 0, `a rule open to everyone: ${JSON.stringify(rule)}`);
        for (const peer of rule.from) assert.ok(Object.keys(peer).length > 0, "an empty peer (everyone)");
        assert.ok(rule.ports?.length > 0, "a rule for every port");
        for (const port of rule.ports) {
          assert.equal(port.protocol, "TCP");
          assert.ok(servicePorts.has(port.port), `port ${port.port} is not one of the Service's`);
          (allowed[servicePorts.get(port.port)] ??= []).push(...rule.from);
        }
      }
      const podAllowed = (portName, labels) => (allowed[portName] ?? []).some((peer) => peer.podSelector && !peer.namespaceSelector && selects(peer.podSelector, labels));
      // The chart's own pods keep working: workers reach zmq, the test pod the API.
      if (workers()) assert.ok(podAllowed("zmq", workers().spec.template.metadata.labels), "standing workers cut off");
      assert.equal(podAllowed("zmq", launchedWorkerLabels()), values.launcher.enabled, "launched worker pods");
      assert.ok(podAllowed("grpc", testPod().metadata.labels), "the helm test pod cut off from the API");
      assert.ok(!podAllowed("zmq", testPod().metadata.labels), "the test pod may act as a worker");
      // Exactly: the chart's own peers, then those of the values, each list on its own ports.
      const pick = (labels) =>
        Object.fromEntries(["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"].map((k) => [k, labels[k]]));
      const testPeer = { podSelector: { matchLabels: pick(testPod().metadata.labels) } };
      const workerPeers = [
        ...(workers() ? [{ podSelector: { matchLabels: workers().spec.selector.matchLabels } }] : []),
        ...(values.launcher.enabled
          ? [
              {
                podSelector: {
                  matchLabels: {
                    "app.kubernetes.io/instance": RELEASE,
                    "app.kubernetes.io/component": "worker",
                    "app.kubernetes.io/managed-by": "loads-controller",
                  },
                },
              },
            ]
          : []),
      ];
      const expected = {
        grpc: [testPeer, ...np.allowFrom.api],
        publish: [testPeer, ...np.allowFrom.api],
        zmq: [...workerPeers, ...np.allowFrom.workers],
        metrics: np.allowFrom.metrics,
        ...(values.web.enabled ? { web: np.allowFrom.web } : {}),
      };
      for (const name of servicePorts.values()) {
        // No rule at all for a port nobody may reach (a rule without peers is everyone).
        assert.deepEqual(allowed[name] ?? [], expected[name], `who reaches ${name}`);
      }
    });

    it("renders NOTES.txt with the commands of a first run", () => {
      const notes = renderNotes({ valueFiles: testCase.files, release: RELEASE, namespace: NAMESPACE });
      assert.ok(notes.includes(`port-forward service/${CONTROLLER} 50051:50051`), notes);
      assert.ok(notes.includes(`get secret ${tokensSecretName(values)}`), notes);
      assert.ok(notes.includes("loads-runner --controller 127.0.0.1:50051 --token-file loads-api-token"), notes);
      assert.ok(notes.includes("grpcurl -plaintext"), notes);
      assert.ok(notes.includes(`helm test ${RELEASE}`), notes);
      assert.ok(!notes.includes("<no value>"), notes);
      const port = values.web.port;
      const pageForward = `port-forward service/${CONTROLLER} ${port}:${port}`;
      const pageAddress = `http://127.0.0.1:${port}/?token=$(cat loads-api-token)`;
      if (values.web.enabled) {
        assert.ok(notes.includes(pageForward), notes);
        assert.ok(notes.includes(pageAddress), notes);
        assert.ok(notes.includes(`the live page on ${port} (HTTP)`), notes);
      } else {
        assert.ok(!notes.includes("?token="), notes);
        assert.ok(!notes.includes("live page"), notes);
      }
      const ingress = values.web.enabled && values.web.ingress.enabled ? values.web.ingress : null;
      if (ingress) {
        const scheme = ingress.tls.length ? "https" : "http";
        const host = ingress.host || "ADDRESS-OF-YOUR-INGRESS";
        assert.ok(notes.includes(`Ingress ${FULLNAME}-web: ${scheme}://${host}/?token=TOKEN`), notes);
      } else {
        assert.ok(!notes.includes("Through the Ingress"), notes);
      }
      // Without TLS on the Ingress, NOTES.txt warns that the token crosses the network in clear.
      assert.equal(notes.includes("WARNING: web.ingress.tls is empty"), Boolean(ingress && !ingress.tls.length), notes);
      assert.ok(notes.includes(`--namespace ${namespaceOf(values)} `), notes);
      // Generated tokens: the GitOps mode is pointed at.
      assert.equal(notes.includes("auth.generate=false"), !values.auth.existingSecret, notes);
      const np = values.networkPolicy;
      assert.equal(notes.includes(`NetworkPolicy ${CONTROLLER}`), np.enabled, notes);
      assert.equal(
        notes.includes("WARNING: serviceMonitor.enabled but networkPolicy.allowFrom.metrics is empty"),
        np.enabled && values.serviceMonitor.enabled && !np.allowFrom.metrics.length,
        notes,
      );
      assert.equal(
        notes.includes("WARNING: web.ingress.enabled but networkPolicy.allowFrom.web is empty"),
        Boolean(np.enabled && ingress && !np.allowFrom.web.length),
        notes,
      );
    });
  });
}

describe("values.schema.json", () => {
  it("is a valid draft-07 schema, strict everywhere", () => {
    const ajv = newAjv();
    assert.ok(ajv.validateSchema(schema), JSON.stringify(ajv.errors));
    // Every object schema closes its keys, except maps whose values it types, and two that must
    // stay open: `global` (an umbrella chart's globals hold keys of every subchart) and the
    // content of a volume source (a deep Kubernetes type, left to the API server; the tests
    // check the rendered volumes against kubernetes-models).
    const open = new Set(["#/properties/global", "#/definitions/volumeSource"]);
    const walk = (node, pointer) => {
      if (Array.isArray(node)) return node.forEach((n, i) => walk(n, `${pointer}/${i}`));
      if (node === null || typeof node !== "object") return;
      if (open.has(pointer)) {
        assert.equal(node.additionalProperties, true, `${pointer}: meant to be open`);
      } else if (node.type === "object" && node.properties) {
        assert.equal(node.additionalProperties, false, `${pointer}: additionalProperties`);
      } else if (node.type === "object" && !node.properties) {
        const open = node.additionalProperties;
        const closedMap = typeof open === "object" || pointer.includes("/affinity/");
        assert.ok(closedMap, `${pointer}: an object with neither properties nor typed values`);
      }
      for (const [key, child] of Object.entries(node)) walk(child, `${pointer}/${key}`);
    };
    walk(schema, "#");
    for (const pointer of open) {
      assert.ok(pointer.split("/").slice(1).reduce((n, k) => n?.[k], schema), `${pointer} is gone`);
    }
  });

  it("accepts a parent chart's global values (as a subchart)", () => {
    const values = mergedValues([
      writeTemp("parent.yaml", "global:\n  imageRegistry: r.example.com\n  storageClass: fast\n  postgresql: {auth: {}}\n"),
    ]);
    assert.ok(validateValues(values), JSON.stringify(validateValues.errors, null, 2));
    // Helm passes an empty global too.
    const bare = mergedValues([writeTemp("bare.yaml", "global: {}\n")]);
    assert.ok(validateValues(bare), JSON.stringify(validateValues.errors, null, 2));
  });

  it("documents every value in README.md and values.yaml", () => {
    const readme = readFileSync(path.join(chartDir, "README.md"), "utf8");
    const defaults = mergedValues();
    // Leaves: values of a shared shape (resources, labels, ...: a $ref) or without properties.
    const leaves = [];
    const walk = (node, prefix) => {
      for (const [key, child] of Object.entries(node.properties)) {
        const name = prefix ? `${prefix}.${key}` : key;
        if (!child.$ref && child.properties) walk(child, name);
        else leaves.push(name);
      }
    };
    walk(schema, "");
    assert.ok(leaves.length > 40, `only ${leaves.length} values`);
    for (const name of leaves) {
      assert.ok(readme.includes(`| \`${name}\` |`), `README.md has no row for ${name}`);
      const value = name.split(".").reduce((v, k) => v?.[k], defaults);
      assert.notEqual(value, undefined, `values.yaml has no default for ${name}`);
    }
  });

  const bad = [
    ["an unknown top-level key", "replicas: 3\n", "additionalProperties", ""],
    ["a misspelt nested key", "controller:\n  workerTimout: 5\n", "additionalProperties", "/controller"],
    ["a string for an integer", "worker:\n  replicas: two\n", "type", "/worker/replicas"],
    ["a fraction for an integer", "launcher:\n  maxLaunchedWorkers: 2.5\n", "type", "/launcher/maxLaunchedWorkers"],
    ["a value out of range", "controller:\n  workerTimeout: 0\n", "minimum", "/controller/workerTimeout"],
    ["an unknown pull policy", "image:\n  pullPolicy: Sometimes\n", "enum", "/image/pullPolicy"],
    ["a boolean as a string", "launcher:\n  enabled: \"yes\"\n", "type", "/launcher/enabled"],
    ["a malformed quantity", "launcher:\n  workerMemory: lots\n", "oneOf", "/launcher/workerMemory"],
    ["a chart label in commonLabels", "commonLabels:\n  app.kubernetes.io/name: x\n", "not", "/commonLabels"],
    ["an unknown resource field", "worker:\n  resources:\n    request:\n      cpu: 1\n", "additionalProperties", "/worker/resources"],
    ["a removed required section", "dashboards: null\n", "required", ""],
    ["a malformed scrape interval", "serviceMonitor:\n  interval: often\n", "pattern", "/serviceMonitor/interval"],
    ["web port 0", "web:\n  port: 0\n", "minimum", "/web/port"],
    ["a web port above 65535", "web:\n  port: 70000\n", "maximum", "/web/port"],
    ["a web port that is not a number", "web:\n  port: x\n", "type", "/web/port"],
    ["a web port as a string of digits", "web:\n  port: \"8089\"\n", "type", "/web/port"],
    ["a web port the metrics use", "web:\n  port: 9464\n", "not", "/web/port"],
    ["a web port the gRPC API uses", "web:\n  port: 50051\n", "not", "/web/port"],
    ["an unknown key under web", "web:\n  tls: true\n", "additionalProperties", "/web"],
    ["web.enabled as a string", "web:\n  enabled: \"false\"\n", "type", "/web/enabled"],
    ["an unknown key under web.ingress", "web:\n  ingress:\n    hosts: []\n", "additionalProperties", "/web/ingress"],
    ["an unknown Ingress path type", "web:\n  ingress:\n    pathType: Regex\n", "enum", "/web/ingress/pathType"],
    ["an Ingress path without its slash", "web:\n  ingress:\n    path: runs\n", "pattern", "/web/ingress/path"],
    ["an Ingress host with a scheme", "web:\n  ingress:\n    host: https://loads.example.com\n", "pattern", "/web/ingress/host"],
    ["an unknown key in an Ingress TLS entry", "web:\n  ingress:\n    tls:\n      - secret: x\n", "additionalProperties", "/web/ingress/tls/0"],
    ["a removed web section", "web: null\n", "required", ""],
    ["global that is not an object", "global: [a]\n", "type", "/global"],
    ["a global registry with a scheme", "global:\n  imageRegistry: https://r.example.com\n", "pattern", "/global/imageRegistry"],
    ["a global pull Secret of no name", "global:\n  imagePullSecrets: [{secret: x}]\n", "oneOf", "/global/imagePullSecrets/0"],
    ["a digest that is not sha256", "image:\n  digests:\n    worker: sha256:abc\n", "pattern", "/image/digests/worker"],
    ["a digest of an unknown image", "image:\n  digests:\n    web: \"\"\n", "additionalProperties", "/image/digests"],
    ["a namespaceOverride in capitals", "namespaceOverride: Perf\n", "pattern", "/namespaceOverride"],
    ["auth.generate=false without existingSecret", "auth:\n  generate: false\n", "minLength", "/auth/existingSecret"],
    ["auth.generate as a string", "auth:\n  generate: \"no\"\n", "type", "/auth/generate"],
    ["an existing ServiceAccount named default", "serviceAccount:\n  create: false\n  name: default\n", "not", "/serviceAccount/name"],
    ["a ServiceAccount name in capitals", "serviceAccount:\n  name: Loads\n", "pattern", "/serviceAccount/name"],
    ["an unknown key under serviceAccount", "serviceAccount:\n  automount: true\n", "additionalProperties", "/serviceAccount"],
    ["a negative runAsUser", "podSecurityContext:\n  runAsUser: -1\n", "minimum", "/podSecurityContext/runAsUser"],
    ["a misspelt pod security key", "podSecurityContext:\n  runAsNonroot: true\n", "additionalProperties", "/podSecurityContext"],
    ["capabilities to drop as a string", "containerSecurityContext:\n  capabilities:\n    drop: ALL\n", "type", "/containerSecurityContext/capabilities/drop"],
    ["an unknown seccomp profile type", "podSecurityContext:\n  seccompProfile:\n    type: Default\n", "enum", "/podSecurityContext/seccompProfile/type"],
    ["a negative revisionHistoryLimit", "controller:\n  revisionHistoryLimit: -1\n", "minimum", "/controller/revisionHistoryLimit"],
    ["a grace period as a string", "worker:\n  terminationGracePeriodSeconds: \"30\"\n", "type", "/worker/terminationGracePeriodSeconds"],
    ["a grace period above an hour", "controller:\n  terminationGracePeriodSeconds: 7200\n", "maximum", "/controller/terminationGracePeriodSeconds"],
    ["a budget that is no number nor percentage", "controller:\n  podDisruptionBudget:\n    minAvailable: half\n", "oneOf", "/controller/podDisruptionBudget/minAvailable"],
    ["a negative budget", "worker:\n  podDisruptionBudget:\n    maxUnavailable: -1\n", "oneOf", "/worker/podDisruptionBudget/maxUnavailable"],
    ["an unknown budget key", "worker:\n  podDisruptionBudget:\n    min: 1\n", "additionalProperties", "/worker/podDisruptionBudget"],
    ["an extra env var without a name", "controller:\n  extraEnv:\n    - value: x\n", "required", "/controller/extraEnv/0"],
    ["an extra env var with value and valueFrom", "worker:\n  extraEnv:\n    - name: A\n      value: x\n      valueFrom:\n        fieldRef:\n          fieldPath: metadata.name\n", "maxProperties", "/worker/extraEnv/0"],
    ["an extra env value as a number", "controller:\n  extraEnv:\n    - name: A\n      value: 1\n", "type", "/controller/extraEnv/0/value"],
    ["an extra argument as a number", "controller:\n  extraArgs: [--max-runs, 100]\n", "type", "/controller/extraArgs/1"],
    ["an extra volume of an unknown source", "worker:\n  extraVolumes:\n    - name: a\n      configmap: {name: x}\n", "additionalProperties", "/worker/extraVolumes/0"],
    ["an extra volume without a source", "worker:\n  extraVolumes:\n    - name: a\n", "minProperties", "/worker/extraVolumes/0"],
    ["an extra volume with two sources", "worker:\n  extraVolumes:\n    - name: a\n      emptyDir: {}\n      secret: {secretName: s}\n", "maxProperties", "/worker/extraVolumes/0"],
    ["a relative extra mount path", "controller:\n  extraVolumeMounts:\n    - name: a\n      mountPath: etc/a\n", "pattern", "/controller/extraVolumeMounts/0/mountPath"],
    ["a scale-down window above an hour", "worker:\n  autoscaling:\n    scaleDownStabilizationWindowSeconds: 4000\n", "maximum", "/worker/autoscaling/scaleDownStabilizationWindowSeconds"],
    ["networkPolicy.enabled as a string", "networkPolicy:\n  enabled: \"true\"\n", "type", "/networkPolicy/enabled"],
    ["an unknown networkPolicy.allowFrom list", "networkPolicy:\n  allowFrom:\n    grpc: []\n", "additionalProperties", "/networkPolicy/allowFrom"],
    ["an unknown key in a NetworkPolicy peer", "networkPolicy:\n  allowFrom:\n    api:\n      - namespace: ci\n", "additionalProperties", "/networkPolicy/allowFrom/api/0"],
    ["an empty NetworkPolicy peer (everyone)", "networkPolicy:\n  allowFrom:\n    web:\n      - {}\n", "minProperties", "/networkPolicy/allowFrom/web/0"],
    ["an unknown selector operator", "networkPolicy:\n  allowFrom:\n    metrics:\n      - podSelector:\n          matchExpressions:\n            - {key: app, operator: Is}\n", "enum", "/networkPolicy/allowFrom/metrics/0/podSelector/matchExpressions/0/operator"],
    ["an ipBlock without cidr", "networkPolicy:\n  allowFrom:\n    workers:\n      - ipBlock: {except: [10.0.0.0/8]}\n", "required", "/networkPolicy/allowFrom/workers/0/ipBlock"],
    ["an ipBlock with a selector", "networkPolicy:\n  allowFrom:\n    workers:\n      - ipBlock: {cidr: 10.0.0.0/8}\n        podSelector: {}\n", "maxProperties", "/networkPolicy/allowFrom/workers/0"],
  ];
  for (const [what, text, keyword, instancePath] of bad) {
    it(`refuses ${what}`, () => {
      const values = mergedValues([writeTemp("bad.yaml", text)]);
      assert.equal(validateValues(values), false, `accepted: ${text}`);
      const errors = validateValues.errors;
      assert.ok(
        errors.some((e) => e.keyword === keyword && e.instancePath === instancePath),
        `expected ${keyword} at "${instancePath}", got ${JSON.stringify(errors, null, 2)}`,
      );
    });
  }
});

describe("rendering errors", () => {
  const renderWith = (text) =>
    runRenderer(["--strict", "-f", writeTemp("values.yaml", text), "--release", RELEASE, chartDir]);

  it("fails with a clear message without image.repository (required)", () => {
    const result = renderWith('image:\n  repository: ""\n');
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /execution error at \(loads\/templates\/[^)]+\): image\.repository is required/);
  });

  it("fails when the autoscaler's minimum is above its maximum (fail)", () => {
    const result = renderWith(
      "worker:\n  enabled: true\n  autoscaling:\n    enabled: true\n    minReplicas: 5\n    maxReplicas: 2\n",
    );
    assert.notEqual(result.status, 0);
    assert.match(
      result.stderr,
      /execution error at \(loads\/templates\/worker-hpa\.yaml:\d+:\d+\): worker\.autoscaling\.minReplicas \(5\) is above worker\.autoscaling\.maxReplicas \(2\)/,
    );
  });

  it("fails when the Ingress is asked for without the live page (fail)", () => {
    const result = renderWith("web:\n  enabled: false\n  ingress:\n    enabled: true\n");
    assert.notEqual(result.status, 0);
    assert.match(
      result.stderr,
      /execution error at \(loads\/templates\/web-ingress\.yaml:\d+:\d+\): web\.ingress\.enabled is true but web\.enabled is false/,
    );
  });

  it("fails in the GitOps mode without a Secret to use (auth.generate=false)", () => {
    const result = renderWith("auth:\n  generate: false\n");
    assert.notEqual(result.status, 0);
    assert.match(
      result.stderr,
      // The first template to need the tokens fails: the Secret's, or a checksum that includes it.
      /execution error at \(loads\/templates\/[^)]+\): auth\.generate is false \(the GitOps mode: the chart generates no tokens\) but auth\.existingSecret is empty/,
    );
  });

  it("fails when the launcher has no ServiceAccount to bind its Role to", () => {
    const result = renderWith("serviceAccount:\n  create: false\n");
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /execution error at \(loads\/templates\/controller-deployment\.yaml:\d+:\d+\): launcher\.enabled needs a ServiceAccount/);
    const named = renderWith("serviceAccount:\n  create: false\n  name: default\n");
    assert.notEqual(named.status, 0);
    assert.match(named.stderr, /serviceAccount\.name is "default": the launcher's Role .* every pod of the namespace/);
  });

  it("fails when a budget has both minAvailable and maxUnavailable", () => {
    const result = renderWith("controller:\n  podDisruptionBudget:\n    enabled: true\n    minAvailable: 1\n    maxUnavailable: 0\n");
    assert.notEqual(result.status, 0);
    assert.match(
      result.stderr,
      /execution error at \(loads\/templates\/controller-pdb\.yaml:\d+:\d+\): controller\.podDisruptionBudget: give minAvailable \(1\) or maxUnavailable \(0\), not both/,
    );
  });

  it("fails when an extra volume takes the name of one of the chart's", () => {
    const result = renderWith("controller:\n  extraVolumes:\n    - name: tmp\n      emptyDir: {}\n");
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /controller\.extraVolumes: the name "tmp" is one of the chart's volumes \(tokens, tmp, state\)/);
    const worker = renderWith("worker:\n  enabled: true\n  extraVolumes:\n    - name: tokens\n      emptyDir: {}\n");
    assert.notEqual(worker.status, 0);
    assert.match(worker.stderr, /worker\.extraVolumes: the name "tokens" is one of the chart's volumes \(tokens, tmp\)/);
  });
});

describe("tokens across renders", () => {
  const secretOf = (docs) => docs.find((d) => d.object.kind === "Secret");
  const tokensOf = (docs) =>
    Object.fromEntries(Object.entries(secretOf(docs).object.data).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]));
  const options = { release: RELEASE, namespace: NAMESPACE };

  it("generates other tokens on each render without a cluster (helm template)", () => {
    assert.notEqual(tokensOf(render(options))["api-token"], tokensOf(render(options))["api-token"]);
  });

  it("keeps the tokens of the Secret in the cluster, and generates only a missing one", () => {
    const secret = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: `${FULLNAME}-tokens`, namespace: NAMESPACE },
      data: { "api-token": Buffer.from("kept-api-token").toString("base64") },
    };
    const cluster = writeTemp("partial.yaml", yaml.dump(secret));
    const tokens = tokensOf(render({ ...options, lookups: [cluster] }));
    assert.equal(tokens["api-token"], "kept-api-token");
    assert.match(tokens["worker-token"], /^[A-Za-z0-9]{32}$/);
  });

  it("does not take the tokens of a Secret of another name or namespace", () => {
    const docs = render(options);
    const secret = structuredClone(secretOf(docs).object);
    const elsewhere = { ...secret, metadata: { ...secret.metadata, namespace: "other" } };
    const renamed = { ...secret, metadata: { ...secret.metadata, name: "other-loads-tokens" } };
    const cluster = writeTemp("others.yaml", `${yaml.dump(elsewhere)}---\n${yaml.dump(renamed)}`);
    assert.notEqual(tokensOf(render({ ...options, lookups: [cluster] }))["api-token"], tokensOf(docs)["api-token"]);
  });

  it("finds the Secret in namespaceOverride, where it lives", () => {
    const files = [writeTemp("ns.yaml", "namespaceOverride: load-testing\n")];
    const docs = render({ ...options, valueFiles: files });
    assert.equal(secretOf(docs).object.metadata.namespace, "load-testing");
    const cluster = writeTemp("ns-cluster.yaml", `${secretOf(docs).text}\n`);
    assert.deepEqual(tokensOf(render({ ...options, valueFiles: files, lookups: [cluster] })), tokensOf(docs));
  });

  it("renders the GitOps example identically without a cluster, with no Secret and no checksum", () => {
    const files = [path.join(examplesDir, "gitops.yaml")];
    const first = renderText({ ...options, valueFiles: files });
    assert.equal(first, renderText({ ...options, valueFiles: files }));
    assert.ok(!/^kind: Secret$/m.test(first), "a Secret in the GitOps mode");
    assert.ok(!first.includes("checksum/secret"), "a checksum of generated tokens in the GitOps mode");
  });

  it("explains the GitOps mode in README.md and NOTES.txt", () => {
    const readme = readFileSync(path.join(chartDir, "README.md"), "utf8");
    assert.match(readme, /auth\.generate: false/);
    assert.match(readme, /Argo CD/);
    assert.match(readme, /lookup/);
    const notes = renderNotes(options);
    assert.match(notes, /helm template, Argo CD/);
    assert.match(notes, /auth\.existingSecret and auth\.generate=false/);
  });
});

describe("chart defaults and metadata", () => {
  it("keeps the restricted Pod Security defaults", () => {
    const defaults = mergedValues();
    assert.deepEqual(defaults.podSecurityContext, {
      runAsNonRoot: true,
      runAsUser: 10001,
      runAsGroup: 10001,
      fsGroup: 10001,
      seccompProfile: { type: "RuntimeDefault" },
    });
    assert.deepEqual(defaults.containerSecurityContext, {
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    });
  });

  it("adds no optional object by default", () => {
    const kinds = render().map((d) => d.object.kind);
    for (const kind of ["PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler", "Ingress", "ServiceMonitor"]) {
      assert.ok(!kinds.includes(kind), `${kind} rendered by default`);
    }
  });

  it("lets OpenShift assign the user (examples/openshift.yaml)", () => {
    const docs = render({ valueFiles: [path.join(examplesDir, "openshift.yaml")] });
    for (const { spec } of podSpecs(docs)) {
      for (const key of ["runAsUser", "runAsGroup", "fsGroup"]) assert.ok(!(key in spec.securityContext), key);
      assert.equal(spec.securityContext.runAsNonRoot, true);
    }
  });

  it("has the metadata of a published chart, with URLs marked as to be set", () => {
    for (const key of ["home", "icon"]) assert.match(chart[key], /^https:\/\/\S+$/, key);
    assert.ok(chart.sources.length >= 1);
    for (const url of chart.sources) assert.match(url, /^https:\/\/\S+$/);
    assert.ok(chart.maintainers.length >= 1);
    for (const maintainer of chart.maintainers) {
      assert.ok(maintainer.name, "a maintainer without name");
      assert.deepEqual(Object.keys(maintainer).filter((k) => !["name", "email", "url"].includes(k)), []);
    }
    // The icon is a file of the chart, at the address the placeholder repository would serve.
    assert.match(chart.icon, /\/helm\/loads\/icon\.svg$/);
    assert.match(readFileSync(path.join(chartDir, "icon.svg"), "utf8"), /^<svg /);
    const readme = readFileSync(path.join(chartDir, "README.md"), "utf8");
    assert.ok(readme.includes(chart.home), "README.md does not name the placeholder address");
    assert.match(readme, /to be set/i);
  });
});

describe("the checks themselves", () => {
  it("find an unknown field deep in a pod template", () => {
    const deployment = structuredClone(render().find((d) => d.object.kind === "Deployment").object);
    deployment.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem = true;
    deployment.spec.replicaz = 2;
    assert.deepEqual(unknownFields(deployment).sort(), [
      "/spec/replicaz",
      "/spec/template/spec/containers/0/securityContext/readOnlyRootFileSystem",
    ]);
  });

  it("reject a wrong type through kubernetes-models", () => {
    const deployment = structuredClone(render().find((d) => d.object.kind === "Deployment").object);
    deployment.spec.replicas = "two";
    const Model = modelOf(deployment);
    assert.throws(() => new Model(deployment).validate(), /replicas must be integer/);
  });

  it("find an unknown field and reject a wrong type in an Ingress", () => {
    const docs = render({ valueFiles: [path.join(examplesDir, "web-ingress.yaml")] });
    const ingress = structuredClone(docs.find((d) => d.object.kind === "Ingress").object);
    assert.deepEqual(unknownFields(ingress), []);
    ingress.spec.rules[0].http.paths[0].backend.service.portName = "web";
    ingress.spec.tls[0].secret = "x";
    assert.deepEqual(unknownFields(ingress).sort(), [
      "/spec/rules/0/http/paths/0/backend/service/portName",
      "/spec/tls/0/secret",
    ]);
    const wrong = structuredClone(docs.find((d) => d.object.kind === "Ingress").object);
    wrong.spec.rules[0].http.paths[0].backend.service.port.number = "8089";
    const Model = modelOf(wrong);
    assert.throws(() => new Model(wrong).validate(), /number must be integer/);
    delete wrong.spec.rules[0].http.paths[0].pathType;
    wrong.spec.rules[0].http.paths[0].backend.service.port.number = 8089;
    assert.throws(() => new Model(wrong).validate(), /pathType/);
  });

  it("find an unknown field and reject a wrong type in a NetworkPolicy and a PodDisruptionBudget", () => {
    const docs = render({ valueFiles: [path.join(examplesDir, "hardened.yaml")] });
    const policy = structuredClone(docs.find((d) => d.object.kind === "NetworkPolicy").object);
    assert.deepEqual(unknownFields(policy), []);
    policy.spec.ingress[0].from[0].podSelectors = {};
    policy.spec.ingress[0].ports[0].portNumber = 1;
    assert.deepEqual(unknownFields(policy).sort(), [
      "/spec/ingress/0/from/0/podSelectors",
      "/spec/ingress/0/ports/0/portNumber",
    ]);
    const wrong = structuredClone(docs.find((d) => d.object.kind === "NetworkPolicy").object);
    wrong.spec.policyTypes = "Ingress";
    assert.throws(() => new (modelOf(wrong))(wrong).validate(), /policyTypes must be array/);
    const budget = structuredClone(docs.find((d) => d.object.kind === "PodDisruptionBudget").object);
    assert.deepEqual(unknownFields(budget), []);
    budget.spec.minAvailible = 1;
    assert.deepEqual(unknownFields(budget), ["/spec/minAvailible"]);
    budget.spec.selector = "app=loads";
    assert.throws(() => new (modelOf(budget))(budget).validate(), /selector must be object/);
  });

  it("find an unknown field in a ServiceMonitor", () => {
    const docs = render({ valueFiles: [path.join(examplesDir, "monitoring.yaml")] });
    const monitor = structuredClone(docs.find((d) => d.object.kind === "ServiceMonitor").object);
    monitor.spec.endpoints[0].scrapeIntervall = "5s";
    assert.deepEqual(unknownFields(monitor), ["/spec/endpoints/0/scrapeIntervall"]);
  });
});
