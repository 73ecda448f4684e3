// Tests of the Helm chart helm/loads, without a cluster. The chart is rendered by
// tools/helm-render (NOT Helm: Helm's template engine, Go text/template + sprig, with the Helm
// objects this chart uses, and a stand-in for the cluster that `lookup` reads, which Helm cannot
// have without one); helm.test.mjs runs a real Helm v4 and requires it to render the same objects,
// byte for byte, so these checks hold of what Helm renders. For values.yaml alone and with each
// examples/*.yaml, every object is checked against the Kubernetes schemas (kubernetes-models),
// for unknown fields, and for what this chart promises: labels, selectors, probes, security
// contexts, resources, token checksums, RBAC and the ServiceAccount, the autoscaler, the
// dashboard, the ServiceMonitor, the live page (port, --web, Ingress), PodDisruptionBudgets, the
// NetworkPolicy, the extra env/args/volumes, image digests and `global` values, TLS on the gRPC
// API (the generated certificate, cert-manager's Certificate, an existing Secret, mTLS, the plain
// health port of the probes), CurveZMQ's flags, mounts and Role (curve.test.mjs has the rest), and
// the `helm test` pod; and that two renders of the same values are byte-identical when the
// generated Secrets (tokens, TLS, CURVE key) are in the cluster (`lookup`) or nothing is generated. The values are checked against values.schema.json, and bad values must
// be refused. The launched worker pods' template is launcher-pod.test.mjs's.
//
//   node --test tests/helm/   (LOADS_HELM_RENDER: a built renderer; LOADS_BIN_DIR: the binaries
//                              whose --help lists the flags the chart passes, default build/bin)

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { X509Certificate, createHash, createPrivateKey } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import path from "node:path";
import { before, describe, it } from "node:test";
import Ajv from "ajv";
import yaml from "js-yaml";

import {
  assertSchemaRefuses,
  binDir,
  chartDir,
  CONTROLLER,
  exampleCases,
  examplesDir,
  flagsOf,
  FULLNAME,
  helpFlags,
  mergedValues,
  modelOf,
  NAMESPACE,
  parseManifests,
  podSpecs,
  RELEASE,
  render,
  renderNotes,
  renderText,
  runRenderer,
  schema,
  scratchDir,
  selects,
  subsetOf,
  unknownFields,
  validateValues,
  writeTemp,
} from "./lib.mjs";

const chart = yaml.load(readFileSync(path.join(chartDir, "Chart.yaml"), "utf8"));
const dashboardFile = path.join(chartDir, "dashboards/loads.json");

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
  "--kubernetes-api-parallelism",
  "--worker-pod-template",
  "--instance",
];

function newAjv() {
  return new Ajv({ strict: true, allErrors: true });
}

// values.yaml alone, with each example, and with values no example sets (the whole battery runs
// on each).
const cases = [
  { name: "values.yaml", files: [] },
  ...exampleCases,
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
    // Plain gRPC, as before TLS: no certificate, probes on the gRPC port.
    name: "tls.enabled=false",
    files: [writeTemp("no-tls.yaml", "tls:\n  enabled: false\n")],
  },
  {
    // cert-manager with a namespaced Issuer and cert-manager's own durations, another cluster
    // domain, and no `helm test` pod.
    name: "cert-manager with an Issuer, another cluster domain, no test pod",
    files: [
      writeTemp(
        "cert-manager.yaml",
        [
          "clusterDomain: k8s.example.org",
          "tls:",
          "  certManager:",
          "    enabled: true",
          "    issuerRef: {name: loads-ca}",
          '    duration: ""',
          '    renewBefore: ""',
          "tests: {enabled: false}",
          "",
        ].join("\n"),
      ),
    ],
  },
  {
    // No account at all: without the launcher and CURVE nothing needs one.
    name: "no ServiceAccount, no launcher, no CURVE",
    files: [
      writeTemp("no-account.yaml", "serviceAccount: {create: false}\nlauncher: {enabled: false}\ncurve: {enabled: false}\n"),
    ],
  },
  {
    // The worker protocol in plain text, as before CURVE, with standing workers.
    name: "curve.enabled=false with standing workers",
    files: [writeTemp("no-curve.yaml", "curve: {enabled: false}\nworker: {enabled: true, replicas: 1}\n")],
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

// Where the controller's certificate comes from: "" (no TLS), "existing", "cert-manager" or
// "generated", as templates/_helpers.tpl decides.
function tlsSource(values) {
  const { tls } = values;
  if (!tls.enabled) return "";
  if (tls.existingSecret) return "existing";
  return tls.certManager.enabled ? "cert-manager" : "generated";
}

function tlsSecretName(values) {
  return values.tls.existingSecret || `${FULLNAME}-tls`;
}

// Where the controller's CURVE key comes from: "" (curve.enabled is false), "existing" or
// "generated" (the Secret <fullname>-curve).
function curveSource(values) {
  if (!values.curve.enabled) return "";
  return values.curve.existingSecret ? "existing" : "generated";
}

function curveSecretName(values) {
  return values.curve.existingSecret || `${FULLNAME}-curve`;
}

// The Secret of the metrics token (controller.metricsToken.secretName, else the tokens Secret), and
// whether the chart generates it (into <fullname>-tokens), as templates/_helpers.tpl decides.
function metricsTokenSecretName(values) {
  return values.controller.metricsToken.secretName || tokensSecretName(values);
}
function metricsTokenGenerated(values) {
  return !values.auth.existingSecret && metricsTokenSecretName(values) === `${FULLNAME}-tokens`;
}

// The namespaces other than the release's of the monitors that read a generated metrics token:
// the chart copies it into <fullname>-metrics-token there.
function metricsTokenCopies(values) {
  if (!metricsTokenGenerated(values)) return [];
  const here = namespaceOf(values);
  const there = [];
  for (const monitor of [values.serviceMonitor, values.podMonitor]) {
    if (monitor.enabled && (monitor.namespace || here) !== here) there.push(monitor.namespace);
  }
  return [...new Set(there)];
}

// Where the chart mounts the CURVE keys (the Secret's controller.key, or its public-key).
const CURVE_DIR = "/var/run/loads-curve";

// The DNS names the controller's certificate must hold (its IP address: 127.0.0.1).
function controllerDnsNames(values) {
  const ns = namespaceOf(values);
  return [CONTROLLER, `${CONTROLLER}.${ns}`, `${CONTROLLER}.${ns}.svc`, `${CONTROLLER}.${ns}.svc.${values.clusterDomain}`, "localhost"];
}

// The labels the NetworkPolicy selects the `helm test` pod by.
function testPodSelector() {
  return { "app.kubernetes.io/name": "loads", "app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "test" };
}

function findSecret(docs, name) {
  return docs.find((d) => d.object.kind === "Secret" && d.object.metadata.name === name);
}

// The PEM text of a key of a rendered Secret.
function secretText(doc, key) {
  return Buffer.from(doc.object.data[key], "base64").toString();
}

function sha256(text) {
  return createHash("sha256").update(text).digest("hex");
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
    "placement",
    "hardened",
    "mtls",
    "keda",
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
        // Monitoring objects may go where Prometheus and Grafana look for them.
        const elsewhere = {
          ServiceMonitor: values.serviceMonitor.namespace,
          PodMonitor: values.podMonitor.namespace,
          PrometheusRule: values.prometheusRule.namespace,
          ConfigMap: object.metadata.name === `${FULLNAME}-dashboards` && values.dashboards.namespace,
        }[object.kind];
        const namespace = elsewhere || namespaceOf(values);
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
          // Published beyond the pod with CURVE only (127.0.0.1 without).
          ...(curveSource(values) ? { publish: 5556 } : {}),
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
        // Without CURVE the results stream stays on the pod's loopback: the controller refuses it
        // in clear text beyond.
        "--publish": curveSource(values) ? "tcp://0.0.0.0:5556" : "tcp://127.0.0.1:5556",
        "--metrics": "0.0.0.0:9464",
        // Always: the controller refuses --metrics beyond loopback without it.
        "--metrics-token-file": "/var/run/loads-metrics/token",
        "--token-file": "/var/run/loads/worker-token",
        "--api-token-file": "/var/run/loads/api-token",
        "--worker-timeout": String(values.controller.workerTimeout),
        "--metrics-retention": String(values.controller.metricsRetention),
        "--state-dir": "/var/lib/loads/state",
        "--restart-grace": String(values.controller.restartGrace),
      };
      if (values.web.enabled) expected["--web"] = `0.0.0.0:${values.web.port}`;
      // One --allow-target per pattern, in order; none for an empty list (any host).
      if (values.controller.allowTargets.length) expected["--allow-target"] = values.controller.allowTargets;
      if (tlsSource(values)) {
        Object.assign(expected, {
          "--tls-cert": "/var/run/loads-tls/tls.crt",
          "--tls-key": "/var/run/loads-tls/tls.key",
          "--health": `0.0.0.0:${values.controller.healthPort}`,
        });
        if (values.tls.clientCA.secretName) expected["--client-ca"] = "/var/run/loads-client-ca/ca.crt";
      }
      if (curveSource(values)) {
        Object.assign(expected, {
          "--curve-key-file": `${CURVE_DIR}/controller.key`,
          "--curve-any-worker": true,
          "--curve-public-key-secret": curveSecretName(values),
        });
      }
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
          "--kubernetes-api-parallelism": String(values.launcher.kubernetesApiParallelism),
          // The launched pods' template, the ConfigMap <fullname>-worker-pod
          // (launcher-pod.test.mjs checks its content).
          "--worker-pod-template": "/etc/loads/worker-pod/pod.json",
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

    it("probes the controller with gRPC health checks, on the plain health port with TLS", () => {
      const container = controller().spec.template.spec.containers[0];
      const flags = flagsOf(container.args);
      const tls = tlsSource(values);
      // The kubelet's gRPC probe cannot speak TLS: with TLS it asks --health, plain text.
      const port = tls ? values.controller.healthPort : 50051;
      for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
        assert.deepEqual(container[probe]?.grpc, { port }, probe);
      }
      const health = container.ports.filter((p) => p.name === "health");
      if (tls) {
        assert.deepEqual(health, [{ name: "health", containerPort: values.controller.healthPort, protocol: "TCP" }]);
        assert.equal(flags["--health"], `0.0.0.0:${values.controller.healthPort}`);
      } else {
        assert.deepEqual(health, []);
        assert.ok(!("--health" in flags), "--health without TLS");
      }
      const numbers = container.ports.map((p) => p.containerPort);
      assert.equal(new Set(numbers).size, numbers.length, `container ports ${numbers}`);
      // Only the kubelet needs the health port: the Service does not expose it.
      const service = find("Service", CONTROLLER);
      assert.ok(!service.spec.ports.some((p) => p.name === "health" || p.port === values.controller.healthPort));
    });

    it("serves gRPC over TLS from the Secret the values name (generated, cert-manager or yours)", () => {
      const spec = controller().spec.template.spec;
      const [container] = spec.containers;
      const volume = (name) => spec.volumes.find((v) => v.name === name);
      const mount = (name) => container.volumeMounts.find((m) => m.name === name);
      const certificate = find("Certificate");
      const generated = find("Secret", `${FULLNAME}-tls`);
      const tls = tlsSource(values);
      if (!tls) {
        for (const name of ["tls", "client-ca"]) {
          assert.equal(volume(name), undefined, name);
          assert.equal(mount(name), undefined, name);
        }
        assert.equal(certificate, undefined);
        assert.equal(generated, undefined);
        return;
      }
      // The certificate and key only, without subPath: a renewed Secret reaches the files, which
      // the controller re-reads.
      assert.deepEqual(volume("tls"), {
        name: "tls",
        secret: {
          secretName: tlsSecretName(values),
          items: [
            { key: "tls.crt", path: "tls.crt" },
            { key: "tls.key", path: "tls.key" },
          ],
          defaultMode: 0o440,
        },
      });
      assert.deepEqual(mount("tls"), { name: "tls", mountPath: "/var/run/loads-tls", readOnly: true });
      const clientCA = values.tls.clientCA;
      if (clientCA.secretName) {
        assert.deepEqual(volume("client-ca"), {
          name: "client-ca",
          secret: { secretName: clientCA.secretName, items: [{ key: clientCA.key, path: "ca.crt" }], defaultMode: 0o440 },
        });
        assert.deepEqual(mount("client-ca"), { name: "client-ca", mountPath: "/var/run/loads-client-ca", readOnly: true });
      } else {
        assert.equal(volume("client-ca"), undefined);
        assert.equal(mount("client-ca"), undefined);
      }
      if (tls === "generated") {
        assert.ok(generated, "no generated TLS Secret");
        assert.equal(generated.type, "kubernetes.io/tls");
        assert.deepEqual(Object.keys(generated.data).sort(), ["ca.crt", "tls.crt", "tls.key"]);
        assert.equal(certificate, undefined);
      } else if (tls === "cert-manager") {
        assert.equal(generated, undefined, "a generated Secret besides cert-manager's");
        assert.ok(certificate, "no Certificate");
        assert.equal(certificate.metadata.name, `${FULLNAME}-tls`);
        const { certManager } = values.tls;
        const expected = {
          secretName: tlsSecretName(values),
          dnsNames: controllerDnsNames(values),
          ipAddresses: ["127.0.0.1"],
          privateKey: { rotationPolicy: "Always" },
          issuerRef: certManager.issuerRef,
        };
        if (certManager.duration) expected.duration = certManager.duration;
        if (certManager.renewBefore) expected.renewBefore = certManager.renewBefore;
        assert.deepEqual(certificate.spec, expected);
      } else {
        // tls.existingSecret: the chart renders no certificate at all.
        assert.equal(generated, undefined);
        assert.equal(certificate, undefined);
      }
    });

    it("secures every pod and container (restricted Pod Security), from the values", () => {
      const pods = podSpecs(docs);
      assert.ok(pods.length >= (values.tests.enabled ? 2 : 1));
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
      const secretDoc = findSecret(docs, `${FULLNAME}-tokens`);
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
      // The metrics token too, when it is not in a Secret of yours (controller.metricsToken).
      const metricsKey = metricsTokenGenerated(values) ? [values.controller.metricsToken.key] : [];
      assert.deepEqual(Object.keys(secret.data).sort(), ["api-token", "worker-token", ...metricsKey].sort());
      const tokens = Object.values(secret.data).map((v) => Buffer.from(v, "base64").toString());
      for (const token of tokens) assert.match(token, /^[A-Za-z0-9]{32}$/);
      assert.equal(new Set(tokens).size, tokens.length, "one token for two roles");
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

    it("gives Kubernetes API access to the controller only: pods for the launcher, its one Secret for CURVE", () => {
      const controllerPod = controller().spec.template.spec;
      const usesApi = values.launcher.enabled || Boolean(curveSource(values));
      // The CURVE key writer's Role and binding (curve.test.mjs checks them with the Secret).
      const curveRoles = all("Role").filter((r) => r.metadata.name === `${FULLNAME}-curve`);
      const curveBindings = all("RoleBinding").filter((r) => r.metadata.name === `${FULLNAME}-curve`);
      if (curveSource(values)) {
        assert.equal(curveRoles.length, 1);
        assert.equal(curveBindings.length, 1);
        assert.deepEqual(curveRoles[0].rules, [
          { apiGroups: [""], resources: ["secrets"], resourceNames: [curveSecretName(values)], verbs: ["get", "patch"] },
        ]);
        assert.deepEqual(curveBindings[0].subjects, [
          { kind: "ServiceAccount", name: serviceAccountOf(values), namespace: namespaceOf(values) },
        ]);
      } else {
        assert.equal(curveRoles.length + curveBindings.length, 0, "CURVE RBAC without curve.enabled");
      }
      // The rest is the launcher's.
      const roles = all("Role").filter((r) => !curveRoles.includes(r));
      const bindings = all("RoleBinding").filter((r) => !curveBindings.includes(r));
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
        assert.equal(accounts[0].automountServiceAccountToken, usesApi);
      } else {
        assert.equal(accounts.length, 0, "a ServiceAccount despite serviceAccount.create=false");
      }
      assert.equal(controllerPod.automountServiceAccountToken, usesApi);
      if (!values.launcher.enabled) {
        assert.equal(roles.length + bindings.length, 0, "RBAC objects without the launcher");
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
      const scaledObject = find("ScaledObject");
      if (!values.worker.enabled) {
        assert.equal(deployment, undefined);
        assert.equal(hpa, undefined);
        assert.equal(scaledObject, undefined);
        return;
      }
      assert.ok(deployment, "no worker Deployment");
      // KEDA's ScaledObject instead of the chart's autoscaler (keda.test.mjs checks it).
      assert.equal(Boolean(scaledObject), values.worker.keda.enabled, "ScaledObject");
      if (values.worker.keda.enabled) {
        assert.ok(!("replicas" in deployment.spec), "replicas fight KEDA's autoscaler");
        assert.equal(hpa, undefined, "two autoscalers");
        assert.deepEqual(scaledObject.spec.scaleTargetRef, { apiVersion: "apps/v1", kind: "Deployment", name: deployment.metadata.name });
      } else if (values.worker.autoscaling.enabled) {
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
        // The worker refuses --metrics beyond loopback without it: the controller's token.
        "--metrics-token-file": "/var/run/loads-metrics/token",
        "--threads": values.worker.threads ? String(values.worker.threads) : "$(LOADS_CPU_LIMIT)",
        "--controller-timeout": String(values.worker.controllerTimeout),
        ...(curveSource(values) ? { "--curve-server-key-file": `${CURVE_DIR}/public-key` } : {}),
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
      // A worker has no server but its metrics: the liveness probe connects to their port (an
      // HTTP probe would get 401 without the token; metrics-token.test.mjs runs the real worker).
      assert.deepEqual(container.ports, [{ name: "metrics", containerPort: 9465, protocol: "TCP" }]);
      assert.deepEqual(container.livenessProbe.tcpSocket, { port: "metrics" });
      assert.equal(container.livenessProbe.httpGet, undefined);
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
      // Always with the metrics token, from the Secret of the monitor's namespace.
      const copied = metricsTokenCopies(values).includes(monitor.metadata.namespace);
      assert.deepEqual(endpoint.authorization, {
        type: "Bearer",
        credentials: { name: copied ? `${FULLNAME}-metrics-token` : metricsTokenSecretName(values), key: values.controller.metricsToken.key },
      });
    });

    it("has a helm test pod that runs a small run through the controller", () => {
      const pod = testPod();
      if (!values.tests.enabled) {
        assert.equal(pod, undefined, "a test pod despite tests.enabled=false");
        assert.equal(find("Service", `${FULLNAME}-test-run`), undefined, "a test Service despite tests.enabled=false");
        return;
      }
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
      const tls = tlsSource(values);
      const mtls = Boolean(tls && values.tls.clientCA.secretName);
      assert.deepEqual(words, [
        "--controller",
        `${CONTROLLER}:50051`,
        "--token-file",
        "/var/run/loads/api-token",
        // With TLS, the controller's certificate is checked against the Secret's CA; with mTLS
        // the pod presents its own.
        ...(tls ? ["--tls-ca", "/var/run/loads-tls/ca.crt"] : []),
        ...(mtls ? ["--tls-cert", "/var/run/loads-client-cert/tls.crt", "--tls-key", "/var/run/loads-client-cert/tls.key"] : []),
        "--url",
        // Its headless Service's name: a .svc name, which the default controller.allowTargets allows.
        `"http://${FULLNAME}-test-run.${namespaceOf(values)}.svc:8080/"`,
        "-u",
        "2",
        "--hits",
        "5",
        "--workers",
        "1",
      ]);
      assert.match(script, /^loads-demo-target --address 0\.0\.0\.0 --port 8080 /m);
      // The run starts once the Service's name resolves.
      assert.ok(script.includes(`until getent hosts ${FULLNAME}-test-run.${namespaceOf(values)}.svc > /dev/null; do`), script);
      assert.equal(container.env, undefined);
      // The headless Service of that name, a test hook too, selecting this pod alone.
      const service = find("Service", `${FULLNAME}-test-run`);
      assert.ok(service, "no Service for the test pod's target");
      assert.equal(service.metadata.annotations["helm.sh/hook"], "test");
      assert.equal(service.spec.clusterIP, "None");
      assert.equal(service.spec.publishNotReadyAddresses, true);
      assert.ok(subsetOf(service.spec.selector, pod.metadata.labels), "the Service does not select the test pod");
      for (const other of podSpecs(docs)) {
        if (other.owner === pod) continue;
        assert.ok(!subsetOf(service.spec.selector, other.metadata.labels), `the test Service selects ${other.owner.metadata.name}`);
      }
      assert.deepEqual(service.spec.ports, [{ name: "demo-target", port: 8080, targetPort: "demo-target", protocol: "TCP" }]);
      // The CA only (never the controller's key), and the client certificate with mTLS.
      const volumes = Object.fromEntries(pod.spec.volumes.map((v) => [v.name, v]));
      const mounts = Object.fromEntries(container.volumeMounts.map((m) => [m.name, m]));
      assert.deepEqual(Object.keys(volumes), ["tokens", "tmp", ...(tls ? ["tls"] : []), ...(mtls ? ["client-cert"] : [])]);
      if (tls) {
        assert.deepEqual(volumes.tls.secret, {
          secretName: tlsSecretName(values),
          items: [{ key: "ca.crt", path: "ca.crt" }],
          defaultMode: 0o440,
        });
        assert.deepEqual(mounts.tls, { name: "tls", mountPath: "/var/run/loads-tls", readOnly: true });
      }
      if (mtls) {
        assert.deepEqual(volumes["client-cert"].secret, {
          secretName: values.tests.clientCertSecret,
          items: [
            { key: "tls.crt", path: "tls.crt" },
            { key: "tls.key", path: "tls.key" },
          ],
          defaultMode: 0o440,
        });
        assert.deepEqual(mounts["client-cert"], { name: "client-cert", mountPath: "/var/run/loads-client-cert", readOnly: true });
      }
      const runnerHelp = helpFlags(binDir, "loads-runner");
      const targetHelp = helpFlags(binDir, "loads-demo-target");
      if (runnerHelp && targetHelp) {
        for (const flag of words.filter((w) => w.startsWith("--"))) assert.ok(runnerHelp.has(flag), flag);
        for (const flag of ["--address", "--port"]) assert.ok(targetHelp.has(flag), flag);
      }
    });

    it("renders byte-identical twice once its generated Secrets are in the cluster", () => {
      const options = { valueFiles: testCase.files, release: RELEASE, namespace: NAMESPACE };
      // The install; every Secret the chart renders is one it generated (tokens, TLS, CURVE key).
      const install = render(options);
      const generated = install.filter((d) => d.object.kind === "Secret");
      assert.equal(
        generated.length,
        Number(!values.auth.existingSecret) +
          Number(tlsSource(values) === "generated") +
          Number(curveSource(values) === "generated") +
          metricsTokenCopies(values).length,
      );
      if (!generated.length) {
        // Nothing random is rendered: no lookup needed, as under `helm template` (GitOps).
        assert.equal(renderText(options), renderText(options));
        return;
      }
      // Two upgrades, with the Secrets the install created in the cluster.
      const cluster = writeTemp("cluster.yaml", generated.map((d) => `${d.text}\n`).join("---\n"));
      const first = renderText({ ...options, lookups: [cluster] });
      const second = renderText({ ...options, lookups: [cluster] });
      assert.equal(first, second, "two upgrades with the same values differ");
      const upgraded = parseManifests(first);
      // The upgrade keeps the tokens, the certificate and the CURVE key, so the checksums too:
      // pods are not restarted.
      for (const secret of generated) {
        const kept = findSecret(upgraded, secret.object.metadata.name);
        assert.equal(kept?.text, secret.text, `the upgrade changed the Secret ${secret.object.metadata.name}`);
      }
      const checksums = (ds) =>
        ds
          .filter((d) => d.object.kind === "Deployment")
          .map((d) => Object.entries(d.object.spec.template.metadata.annotations ?? {}).filter(([k]) => k.startsWith("checksum/")));
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
      const tls = tlsSource(values) ? ["tls", ...(values.tls.clientCA.secretName ? ["client-ca"] : [])] : [];
      const launcher = values.launcher.enabled ? ["worker-pod"] : [];
      const curve = curveSource(values) ? ["curve"] : [];
      const pairs = [[controller(), values.controller, ["tokens", "tmp", "state", ...tls, "metrics-token", ...launcher, ...curve]]];
      if (workers()) pairs.push([workers(), values.worker, ["tokens", "tmp", "metrics-token", ...curve]]);
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
      // It applies to the controller's pods, and to no other pod of the chart: nor to the launched
      // workers, whose metrics port Prometheus reaches as it reaches the standing workers'.
      for (const pod of podSpecs(docs)) {
        assert.equal(selects(policy.spec.podSelector, pod.metadata.labels), pod.owner === controller(), pod.owner.metadata.name);
      }
      assert.ok(!selects(policy.spec.podSelector, launchedWorkerLabels()), "launched worker pods");
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
      // The test pod's labels, rendered or not (tests.enabled=false): the rule stays, harmless.
      const testLabels = testPod()?.metadata.labels ?? testPodSelector();
      assert.ok(subsetOf(testPodSelector(), testLabels));
      assert.ok(podAllowed("grpc", testLabels), "the helm test pod cut off from the API");
      assert.ok(!podAllowed("zmq", testLabels), "the test pod may act as a worker");
      // Exactly: the chart's own peers, then those of the values, each list on its own ports.
      const testPeer = { podSelector: { matchLabels: testPodSelector() } };
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
        // Not in the Service without CURVE (checked above), nor in the policy (the loop below).
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
      const tls = tlsSource(values);
      const mtls = Boolean(tls && values.tls.clientCA.secretName);
      if (tls) {
        // Through the port-forward, with the CA of the TLS Secret (127.0.0.1 is in the certificate).
        assert.ok(
          notes.includes(`get secret ${tlsSecretName(values)} \\\n    -o jsonpath='{.data.ca\\.crt}' | base64 -d > ca.crt`),
          notes,
        );
        const client = mtls ? " --tls-cert client.crt --tls-key client.key" : "";
        assert.ok(notes.includes(`loads-runner --controller 127.0.0.1:50051 --tls-ca ca.crt${client} \\\n    --token-file loads-api-token`), notes);
        assert.ok(notes.includes(`grpcurl -cacert ca.crt${mtls ? " -cert client.crt -key client.key" : ""} -H`), notes);
        assert.ok(!notes.includes("-plaintext"), notes);
        assert.ok(notes.includes(`The gRPC API is served over TLS${mtls ? " and asks every client for a certificate (mTLS)" : ""}.`), notes);
        assert.ok(notes.includes(`plain health port ${values.controller.healthPort}`), notes);
        assert.ok(!notes.includes("WARNING: tls.enabled is false"), notes);
      } else {
        assert.ok(notes.includes("loads-runner --controller 127.0.0.1:50051 --token-file loads-api-token"), notes);
        assert.ok(notes.includes("grpcurl -plaintext"), notes);
        assert.ok(!notes.includes("--tls-ca"), notes);
        assert.ok(notes.includes("WARNING: tls.enabled is false"), notes);
      }
      assert.equal(notes.includes(`helm test ${RELEASE}`), values.tests.enabled, notes);
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
    //
    // Conditions (if/then/else, and what they hold) constrain values whose keys are closed where
    // they are defined: there, an object schema must NOT close its keys (it would refuse every key
    // it does not name), and needs its "type" only for Ajv's strictTypes.
    const open = new Set(["#/properties/global", "#/definitions/volumeSource"]);
    let conditions = 0;
    const walk = (node, pointer, conditional = false) => {
      if (Array.isArray(node)) return node.forEach((n, i) => walk(n, `${pointer}/${i}`, conditional));
      if (node === null || typeof node !== "object") return;
      if (conditional) {
        conditions++;
        assert.ok(!("additionalProperties" in node), `${pointer}: a condition that closes keys`);
      } else if (open.has(pointer)) {
        assert.equal(node.additionalProperties, true, `${pointer}: meant to be open`);
      } else if (node.type === "object" && node.properties) {
        assert.equal(node.additionalProperties, false, `${pointer}: additionalProperties`);
      } else if (node.type === "object" && !node.properties) {
        const open = node.additionalProperties;
        const closedMap = typeof open === "object" || pointer.includes("/affinity/");
        assert.ok(closedMap, `${pointer}: an object with neither properties nor typed values`);
      }
      for (const [key, child] of Object.entries(node)) {
        walk(child, `${pointer}/${key}`, conditional || ["if", "then", "else"].includes(key));
      }
    };
    walk(schema, "#");
    assert.ok(conditions > 0, "no condition walked");
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

  it("accepts each source of the TLS certificate, and mTLS without the test pod", () => {
    for (const text of [
      "tls:\n  existingSecret: my-tls\n",
      "tls:\n  certManager:\n    enabled: true\n    issuerRef: {name: ca, kind: ClusterIssuer}\n    duration: \"\"\n    renewBefore: 1h30m\n",
      // The GitOps mode with a certificate that is not generated, or without TLS (and a CURVE key
      // from a Secret).
      "auth: {existingSecret: t, generate: false}\ncurve: {existingSecret: c}\ntls:\n  existingSecret: my-tls\n",
      "auth: {existingSecret: t, generate: false}\ncurve: {existingSecret: c}\ntls:\n  certManager: {enabled: true, issuerRef: {name: ca}}\n",
      "auth: {existingSecret: t, generate: false}\ncurve: {existingSecret: c}\ntls:\n  enabled: false\n",
      // mTLS: the test pod has a client certificate, or there is no test pod.
      "tls:\n  clientCA: {secretName: client-ca}\ntests:\n  clientCertSecret: test-client\n",
      "tls:\n  clientCA: {secretName: client-ca}\ntests:\n  enabled: false\n",
    ]) {
      const values = mergedValues([writeTemp("good.yaml", text)]);
      assert.ok(validateValues(values), `${text}\n${JSON.stringify(validateValues.errors, null, 2)}`);
    }
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
    ["tls.enabled as a string", "tls:\n  enabled: \"yes\"\n", "type", "/tls/enabled"],
    ["an unknown key under tls", "tls:\n  secretName: loads-tls\n", "additionalProperties", "/tls"],
    ["a TLS Secret name in capitals", "tls:\n  existingSecret: Loads-TLS\n", "pattern", "/tls/existingSecret"],
    ["two sources of the certificate", "tls:\n  existingSecret: my-tls\n  certManager:\n    enabled: true\n    issuerRef: {name: ca}\n", "maxLength", "/tls/existingSecret"],
    ["cert-manager without an issuer", "tls:\n  certManager:\n    enabled: true\n", "minLength", "/tls/certManager/issuerRef/name"],
    ["an unknown issuerRef key", "tls:\n  certManager:\n    issuerRef:\n      namespace: cert-manager\n", "additionalProperties", "/tls/certManager/issuerRef"],
    ["an issuer kind in lower case", "tls:\n  certManager:\n    issuerRef:\n      kind: clusterissuer\n", "pattern", "/tls/certManager/issuerRef/kind"],
    ["a certificate duration in days", "tls:\n  certManager:\n    duration: 90d\n", "pattern", "/tls/certManager/duration"],
    ["a generated certificate valid 0 days", "tls:\n  generated:\n    validityDays: 0\n", "minimum", "/tls/generated/validityDays"],
    ["a generated certificate's validity as a string", "tls:\n  generated:\n    validityDays: \"365\"\n", "type", "/tls/generated/validityDays"],
    ["mTLS without TLS", "tls:\n  enabled: false\n  clientCA:\n    secretName: client-ca\n", "const", "/tls/enabled"],
    ["a client CA key with a slash", "tls:\n  clientCA:\n    key: certs/ca.crt\n", "pattern", "/tls/clientCA/key"],
    ["mTLS with the test pod but no client certificate for it", "tls:\n  clientCA:\n    secretName: client-ca\n", "minLength", "/tests/clientCertSecret"],
    ["a generated certificate in the GitOps mode", "auth:\n  existingSecret: loads-tokens\n  generate: false\n", "anyOf", "/tls"],
    ["a health port the gRPC API uses", "controller:\n  healthPort: 50051\n", "not", "/controller/healthPort"],
    ["a health port above 65535", "controller:\n  healthPort: 70000\n", "maximum", "/controller/healthPort"],
    ["a health port as a string", "controller:\n  healthPort: \"8081\"\n", "type", "/controller/healthPort"],
    ["a cluster domain with a trailing dot", "clusterDomain: cluster.local.\n", "pattern", "/clusterDomain"],
    ["an empty cluster domain", "clusterDomain: \"\"\n", "minLength", "/clusterDomain"],
    ["tests.enabled as a string", "tests:\n  enabled: \"false\"\n", "type", "/tests/enabled"],
  ];
  for (const [what, text, keyword, instancePath] of bad) {
    it(`refuses ${what}`, () => assertSchemaRefuses(text, keyword, instancePath));
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
    const result = renderWith("auth:\n  generate: false\ntls:\n  enabled: false\n");
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
    assert.match(result.stderr, /controller\.extraVolumes: the name "tmp" is one of the chart's volumes \(tokens, tmp, state, tls, client-ca, metrics-token, worker-pod, curve\)/);
    const worker = renderWith("worker:\n  enabled: true\n  extraVolumes:\n    - name: tokens\n      emptyDir: {}\n");
    assert.notEqual(worker.status, 0);
    assert.match(worker.stderr, /worker\.extraVolumes: the name "tokens" is one of the chart's volumes \(tokens, tmp, metrics-token, curve\)/);
  });

  it("fails in the GitOps mode when the chart would generate the TLS certificate", () => {
    const result = renderWith("auth:\n  existingSecret: loads-tokens\n  generate: false\n");
    assert.notEqual(result.status, 0);
    assert.match(
      result.stderr,
      /execution error at \(loads\/templates\/[^)]+\): auth\.generate is false \(the GitOps mode: the chart generates nothing random\) but tls\.enabled with neither tls\.existingSecret nor tls\.certManager\.enabled would make the chart generate a certificate on every render: .*tls\.existingSecret.*tls\.certManager\.enabled=true/,
    );
  });

  it("fails on contradictory TLS values (two sources, no issuer, mTLS without TLS or a test certificate)", () => {
    const cases = [
      ["tls:\n  existingSecret: my-tls\n  certManager: {enabled: true, issuerRef: {name: ca}}\n", /tls\.existingSecret \(my-tls\) and tls\.certManager\.enabled are two sources of one certificate: choose one/],
      ["tls:\n  certManager: {enabled: true}\n", /tls\.certManager\.enabled needs tls\.certManager\.issuerRef\.name/],
      ["tls:\n  enabled: false\n  clientCA: {secretName: client-ca}\n", /tls\.clientCA \(client-ca\) is mTLS, which needs tls\.enabled=true/],
      ["tls:\n  clientCA: {secretName: client-ca}\n", /tls\.clientCA \(client-ca\) makes every gRPC client present a certificate, the `helm test` pod too: set tests\.clientCertSecret .* or tests\.enabled=false/],
      ["web:\n  port: 8081\n", /execution error at \(loads\/templates\/controller-deployment\.yaml:\d+:\d+\): controller\.healthPort and web\.port are both 8081/],
    ];
    for (const [text, message] of cases) {
      const result = renderWith(text);
      assert.notEqual(result.status, 0, `rendered: ${text}`);
      assert.match(result.stderr, message, text);
    }
    // Without TLS the health port is not opened: the same number as the page's is no conflict.
    assert.equal(renderWith("tls:\n  enabled: false\nweb:\n  port: 8081\n").status, 0);
    // mTLS without a test pod needs no test certificate.
    assert.equal(renderWith("tls:\n  clientCA: {secretName: client-ca}\ntests:\n  enabled: false\n").status, 0);
  });
});

describe("TLS on the gRPC API", () => {
  const options = { release: RELEASE, namespace: NAMESPACE };
  const withValues = (text) => ({ ...options, valueFiles: [writeTemp("tls.yaml", text)] });
  const tlsSecretOf = (docs) => findSecret(docs, `${FULLNAME}-tls`);
  const objectOf = (docs, kind, name) => docs.map((d) => d.object).find((o) => o.kind === kind && (!name || o.metadata.name === name));
  const controllerOf = (docs) => objectOf(docs, "Deployment", CONTROLLER).spec.template.spec;
  const runnerWords = (docs) => {
    const script = objectOf(docs, "Pod", `${FULLNAME}-test-run`).spec.containers[0].command[2];
    return /^exec loads-runner (.*)$/m.exec(script.replace(/\\\n\s*/g, " "))[1].trim().split(/\s+/);
  };
  const sans = (names) => names.map((n) => (/^[0-9.]+$/.test(n) ? `IP Address:${n}` : `DNS:${n}`)).join(", ");
  const expectedSans = [CONTROLLER, `${CONTROLLER}.${NAMESPACE}`, `${CONTROLLER}.${NAMESPACE}.svc`, `${CONTROLLER}.${NAMESPACE}.svc.cluster.local`, "localhost", "127.0.0.1"];

  it("is on by default: the controller's flags and mounts, probes on the health port, the test pod's CA", () => {
    const defaults = mergedValues();
    assert.equal(defaults.tls.enabled, true);
    assert.equal(defaults.controller.healthPort, 8081);
    const docs = render(options);
    const spec = controllerOf(docs);
    const [container] = spec.containers;
    const flags = flagsOf(container.args);
    assert.equal(flags["--tls-cert"], "/var/run/loads-tls/tls.crt");
    assert.equal(flags["--tls-key"], "/var/run/loads-tls/tls.key");
    assert.equal(flags["--health"], "0.0.0.0:8081");
    assert.ok(!("--client-ca" in flags));
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) assert.deepEqual(container[probe].grpc, { port: 8081 }, probe);
    assert.ok(container.ports.some((p) => p.name === "health" && p.containerPort === 8081));
    assert.ok(container.volumeMounts.some((m) => m.name === "tls" && m.mountPath === "/var/run/loads-tls" && m.readOnly));
    assert.equal(spec.volumes.find((v) => v.name === "tls").secret.secretName, `${FULLNAME}-tls`);
    const words = runnerWords(docs);
    assert.equal(words[words.indexOf("--tls-ca") + 1], "/var/run/loads-tls/ca.crt");
    assert.equal(words[words.indexOf("--controller") + 1], `${CONTROLLER}:50051`);
    const pod = objectOf(docs, "Pod", `${FULLNAME}-test-run`);
    assert.deepEqual(pod.spec.volumes.find((v) => v.name === "tls").secret.items, [{ key: "ca.crt", path: "ca.crt" }]);
  });

  it("generates a CA and a certificate for the Service's names and 127.0.0.1, signed by that CA", () => {
    const docs = render(options);
    const secret = tlsSecretOf(docs);
    assert.equal(secret.object.type, "kubernetes.io/tls");
    // The CA's key is not kept: the CA signs nothing else.
    assert.deepEqual(Object.keys(secret.object.data).sort(), ["ca.crt", "tls.crt", "tls.key"]);
    const cert = new X509Certificate(secretText(secret, "tls.crt"));
    const ca = new X509Certificate(secretText(secret, "ca.crt"));
    assert.equal(cert.subjectAltName, sans(expectedSans));
    assert.equal(secret.object.metadata.annotations["loads/subject-alt-names"], expectedSans.join(","));
    assert.ok(ca.ca, "ca.crt is not a CA");
    assert.ok(!cert.ca, "the server certificate is a CA");
    assert.ok(cert.checkIssued(ca), "tls.crt is not issued by ca.crt");
    assert.ok(cert.verify(ca.publicKey), "tls.crt is not signed by ca.crt's key");
    assert.ok(cert.checkPrivateKey(createPrivateKey(secretText(secret, "tls.key"))), "tls.key is not tls.crt's key");
    // ECDSA P-256 keys (genPrivateKey "ecdsa"): quick to make on every install and test render.
    for (const { publicKey } of [cert, ca]) {
      assert.equal(publicKey.asymmetricKeyType, "ec");
      assert.equal(publicKey.asymmetricKeyDetails.namedCurve, "prime256v1");
    }
    // What loads-runner checks: the host of the test pod's --controller, and a port-forward's.
    const host = runnerWords(docs)[1].replace(/:50051$/, "");
    assert.equal(cert.checkHost(host), host);
    assert.equal(cert.checkHost("localhost"), "localhost");
    assert.equal(cert.checkIP("127.0.0.1"), "127.0.0.1");
    assert.equal(cert.checkHost(`${CONTROLLER}.other.svc`), undefined);
    // tls.generated.validityDays (3650) from now.
    const days = (Date.parse(cert.validTo) - Date.now()) / 86400000;
    assert.ok(Math.abs(days - 3650) < 2, `valid ${days} days`);
    assert.ok(Date.parse(cert.validFrom) <= Date.now());
    // Another render (no cluster) has another CA, which does not sign this certificate.
    const other = new X509Certificate(secretText(tlsSecretOf(render(options)), "ca.crt"));
    assert.ok(!cert.verify(other.publicKey));
  });

  it("keeps the certificate of the Secret in the cluster: upgrades render byte-identical", () => {
    const install = render(options);
    const secret = tlsSecretOf(install);
    const tokens = findSecret(install, `${FULLNAME}-tokens`);
    const curve = findSecret(install, `${FULLNAME}-curve`);
    const cluster = writeTemp("tls-cluster.yaml", `${secret.text}\n---\n${tokens.text}\n---\n${curve.text}\n`);
    const first = renderText({ ...options, lookups: [cluster] });
    assert.equal(first, renderText({ ...options, lookups: [cluster] }));
    assert.equal(tlsSecretOf(parseManifests(first)).text, secret.text);
    // Only the TLS Secret in the cluster: the tokens and the CURVE key are new, the certificate
    // is kept.
    const tlsOnly = writeTemp("tls-only.yaml", `${secret.text}\n`);
    assert.equal(tlsSecretOf(render({ ...options, lookups: [tlsOnly] })).text, secret.text);
  });

  it("makes a new certificate when the Secret in the cluster lacks a key, names others or is elsewhere", () => {
    const install = render(options);
    const secret = tlsSecretOf(install);
    const crt = secretText(secret, "tls.crt");
    const upgradeWith = (object, files = []) =>
      tlsSecretOf(render({ ...options, valueFiles: files, lookups: [writeTemp("cluster.yaml", yaml.dump(object))] }));
    const missingCA = structuredClone(secret.object);
    delete missingCA.data["ca.crt"];
    assert.notEqual(secretText(upgradeWith(missingCA), "tls.crt"), crt);
    const otherNames = structuredClone(secret.object);
    otherNames.metadata.annotations["loads/subject-alt-names"] = "old-name";
    assert.notEqual(secretText(upgradeWith(otherNames), "tls.crt"), crt);
    const elsewhere = structuredClone(secret.object);
    elsewhere.metadata.namespace = "other";
    assert.notEqual(secretText(upgradeWith(elsewhere), "tls.crt"), crt);
    // Another cluster domain: the kept certificate would not name the Service: a new one does.
    const renamed = upgradeWith(secret.object, [writeTemp("domain.yaml", "clusterDomain: k8s.example.org\n")]);
    const cert = new X509Certificate(secretText(renamed, "tls.crt"));
    assert.ok(cert.subjectAltName.includes(`DNS:${CONTROLLER}.${NAMESPACE}.svc.k8s.example.org`), cert.subjectAltName);
    assert.ok(cert.checkIssued(new X509Certificate(secretText(renamed, "ca.crt"))));
  });

  it("serves plain gRPC as before with tls.enabled=false", () => {
    const docs = render(withValues("tls:\n  enabled: false\n"));
    const spec = controllerOf(docs);
    const [container] = spec.containers;
    const flags = flagsOf(container.args);
    for (const flag of ["--tls-cert", "--tls-key", "--client-ca", "--health"]) assert.ok(!(flag in flags), flag);
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) assert.deepEqual(container[probe].grpc, { port: 50051 }, probe);
    assert.deepEqual(container.ports.map((p) => p.name), ["grpc", "zmq", "publish", "metrics", "web"]);
    assert.deepEqual(spec.volumes.map((v) => v.name), ["tokens", "tmp", "state", "metrics-token", "worker-pod", "curve"]);
    assert.ok(!runnerWords(docs).some((w) => w.startsWith("--tls")));
    assert.equal(tlsSecretOf(docs), undefined);
    assert.equal(objectOf(docs, "Certificate"), undefined);
    const notes = renderNotes(withValues("tls:\n  enabled: false\n"));
    assert.match(notes, /WARNING: tls\.enabled is false: the gRPC API is plain text/);
    assert.ok(notes.includes("grpcurl -plaintext"));
  });

  it("uses tls.existingSecret as it is: no Secret, no Certificate, nothing random", () => {
    const values = "auth: {existingSecret: loads-tokens, generate: false}\ncurve: {existingSecret: loads-curve}\ntls:\n  existingSecret: my-controller-tls\n";
    const text = renderText(withValues(values));
    assert.equal(text, renderText(withValues(values)));
    const docs = parseManifests(text);
    assert.equal(docs.filter((d) => ["Secret", "Certificate"].includes(d.object.kind)).length, 0);
    assert.equal(controllerOf(docs).volumes.find((v) => v.name === "tls").secret.secretName, "my-controller-tls");
    const pod = objectOf(docs, "Pod", `${FULLNAME}-test-run`);
    assert.equal(pod.spec.volumes.find((v) => v.name === "tls").secret.secretName, "my-controller-tls");
    assert.ok(renderNotes(withValues(values)).includes("get secret my-controller-tls \\\n    -o jsonpath='{.data.ca\\.crt}'"));
  });

  it("renders a cert-manager Certificate valid against cert-manager's schema, for the Secret it mounts", () => {
    const values = [
      "auth: {existingSecret: loads-tokens}",
      "curve: {existingSecret: loads-curve}",
      "tls:",
      "  certManager:",
      "    enabled: true",
      "    issuerRef: {name: internal-ca, kind: ClusterIssuer}",
      "    duration: 720h",
      "    renewBefore: 240h",
      "",
    ].join("\n");
    const docs = render(withValues(values));
    const certificate = objectOf(docs, "Certificate");
    assert.equal(certificate.apiVersion, "cert-manager.io/v1");
    assert.doesNotThrow(() => new (modelOf(certificate))(certificate).validate());
    assert.deepEqual(unknownFields(certificate), []);
    assert.deepEqual(certificate.spec, {
      secretName: `${FULLNAME}-tls`,
      dnsNames: expectedSans.slice(0, -1),
      ipAddresses: ["127.0.0.1"],
      duration: "720h",
      renewBefore: "240h",
      privateKey: { rotationPolicy: "Always" },
      issuerRef: { name: "internal-ca", kind: "ClusterIssuer", group: "cert-manager.io" },
    });
    assert.equal(tlsSecretOf(docs), undefined, "a generated Secret besides cert-manager's");
    assert.equal(controllerOf(docs).volumes.find((v) => v.name === "tls").secret.secretName, certificate.spec.secretName);
    // With the tokens and the CURVE key from Secrets too, nothing random: two renders without a
    // cluster are identical (GitOps).
    assert.equal(renderText(withValues(values)), renderText(withValues(values)));
    assert.match(renderNotes(withValues(values)), /issued and renewed by cert-manager: ClusterIssuer internal-ca/);
  });

  it("asks clients for certificates with mTLS, and gives the test pod one", () => {
    const files = [writeTemp("mtls.yaml", "tls:\n  existingSecret: my-tls\n  clientCA: {secretName: corp-ca, key: ca.pem}\ntests:\n  clientCertSecret: test-client\n")];
    const docs = render({ ...options, valueFiles: files });
    const spec = controllerOf(docs);
    assert.equal(flagsOf(spec.containers[0].args)["--client-ca"], "/var/run/loads-client-ca/ca.crt");
    assert.deepEqual(spec.volumes.find((v) => v.name === "client-ca").secret.items, [{ key: "ca.pem", path: "ca.crt" }]);
    const words = runnerWords(docs);
    assert.equal(words[words.indexOf("--tls-cert") + 1], "/var/run/loads-client-cert/tls.crt");
    assert.equal(words[words.indexOf("--tls-key") + 1], "/var/run/loads-client-cert/tls.key");
    const pod = objectOf(docs, "Pod", `${FULLNAME}-test-run`);
    assert.equal(pod.spec.volumes.find((v) => v.name === "client-cert").secret.secretName, "test-client");
    const notes = renderNotes({ ...options, valueFiles: files });
    assert.ok(notes.includes("--tls-ca ca.crt --tls-cert client.crt --tls-key client.key"), notes);
    // Without the test pod, mTLS needs no test certificate.
    const noTest = render(withValues("tls:\n  clientCA: {secretName: corp-ca}\ntests:\n  enabled: false\n"));
    assert.equal(objectOf(noTest, "Pod"), undefined);
    assert.ok(!renderNotes(withValues("tests:\n  enabled: false\n")).includes("helm test"));
  });
});

describe("tokens across renders", () => {
  const secretOf = (docs) => findSecret(docs, `${FULLNAME}-tokens`);
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

// Starts loads-controller with ARGS and resolves with the addresses of its "listening:" line.
function startController(args) {
  const child = spawn(path.join(binDir, "loads-controller"), args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const listening = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`loads-controller did not start:\n${output}`)), 10000);
    const read = (chunk) => {
      output += chunk;
      const line = /^loads-controller listening: (.*)$/m.exec(output);
      if (line) {
        clearTimeout(timer);
        resolve(Object.fromEntries([...line[1].matchAll(/(\w+) (\S+)/g)].map(([, key, value]) => [key, value])));
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.on("exit", (code) => reject(new Error(`loads-controller exited (${code}):\n${output}`)));
  });
  return { child, listening };
}

// One grpc.health.v1.Health/Check for the service "" over plain-text HTTP/2, as the kubelet's
// gRPC probe sends it: {status, grpcStatus, body (hex)} or {error}.
function healthCheck(address) {
  return new Promise((resolve) => {
    const client = http2.connect(`http://${address}`);
    const done = (result) => {
      client.destroy();
      resolve(result);
    };
    client.on("error", (error) => done({ error: error.message }));
    const request = client.request({
      ":method": "POST",
      ":path": "/grpc.health.v1.Health/Check",
      "content-type": "application/grpc",
      te: "trailers",
    });
    const result = { body: "" };
    request.setTimeout(5000, () => done({ error: "timeout" }));
    request.on("error", (error) => done({ error: error.message }));
    request.on("response", (headers) => (result.status = headers[":status"]));
    request.on("trailers", (trailers) => (result.grpcStatus = trailers["grpc-status"]));
    request.on("data", (chunk) => (result.body += chunk.toString("hex")));
    request.on("end", () => done(result));
    // An empty HealthCheckRequest: not compressed, length 0.
    request.end(Buffer.alloc(5));
  });
}

describe("the chart's TLS with the real binaries", () => {
  it("loads-controller serves the generated certificate with the chart's flags (mTLS too), loads-runner trusts it with ca.crt, and the probes' port is plain", async (t) => {
    if (!existsSync(path.join(binDir, "loads-controller")) || !existsSync(path.join(binDir, "loads-runner"))) {
      t.skip(`no loads-controller or loads-runner in ${binDir}`);
      return;
    }
    // mTLS: the client CA and the test pod's certificate are those a second render generates
    // (genSignedCert's certificates are for clients too: extKeyUsage clientAuth).
    const docs = render({
      release: RELEASE,
      namespace: NAMESPACE,
      valueFiles: [writeTemp("mtls.yaml", "tls:\n  clientCA: {secretName: client-ca}\ntests:\n  clientCertSecret: test-client\n")],
    });
    const server = findSecret(docs, `${FULLNAME}-tls`);
    const client = findSecret(render({ release: RELEASE, namespace: NAMESPACE }), `${FULLNAME}-tls`);
    // The files where the pods mount them, under a temporary root; 0440 as the chart mounts them.
    const root = mkdtempSync(path.join(scratchDir(), "tls-"));
    const files = {
      "/var/run/loads-tls/tls.crt": secretText(server, "tls.crt"),
      "/var/run/loads-tls/tls.key": secretText(server, "tls.key"),
      "/var/run/loads-tls/ca.crt": secretText(server, "ca.crt"),
      "/var/run/loads-client-ca/ca.crt": secretText(client, "ca.crt"),
      "/var/run/loads-client-cert/tls.crt": secretText(client, "tls.crt"),
      "/var/run/loads-client-cert/tls.key": secretText(client, "tls.key"),
    };
    for (const [file, text] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
      writeFileSync(path.join(root, file), text, { mode: 0o440 });
    }
    // The chart's TLS flags, their files under the root, and loopback addresses.
    const deployment = docs.find((d) => d.object.kind === "Deployment" && d.object.metadata.name === CONTROLLER).object;
    const chartFlags = flagsOf(deployment.spec.template.spec.containers[0].args);
    assert.equal(chartFlags["--health"], "0.0.0.0:8081");
    const args = ["--grpc", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*"];
    args.push("--metrics", "127.0.0.1:0", "--no-state", "--max-local-workers", "0", "--health", "127.0.0.1:0");
    for (const flag of ["--tls-cert", "--tls-key", "--client-ca"]) args.push(flag, path.join(root, chartFlags[flag]));
    const { child, listening } = startController(args);
    try {
      const addresses = await listening;
      const port = addresses.grpc.split(":").pop();
      // The test pod's TLS flags, their files under the root.
      const pod = docs.find((d) => d.object.kind === "Pod").object;
      const words = /^exec loads-runner (.*)$/m.exec(pod.spec.containers[0].command[2].replace(/\\\n\s*/g, " "))[1].trim().split(/\s+/);
      const podTLS = [];
      for (const flag of ["--tls-ca", "--tls-cert", "--tls-key"]) podTLS.push(flag, path.join(root, words[words.indexOf(flag) + 1]));
      const ping = (host, tlsArgs) =>
        spawnSync(path.join(binDir, "loads-runner"), ["--controller", `${host}:${port}`, ...tlsArgs, "--ping", "--reconnect-timeout", "2"], {
          encoding: "utf8",
          timeout: 20000,
        });
      // A port-forward's names; in the cluster, the Service's (checked against the SANs above).
      for (const host of ["127.0.0.1", "localhost"]) {
        const result = ping(host, podTLS);
        assert.equal(result.status, 0, `${host}: ${result.stdout}${result.stderr}`);
      }
      // Refused: no client certificate (mTLS), another CA, plain text.
      assert.notEqual(ping("127.0.0.1", podTLS.slice(0, 2)).status, 0, "a client without a certificate was served");
      const otherCA = path.join(root, "other-ca.crt");
      writeFileSync(otherCA, secretText(client, "ca.crt"));
      assert.notEqual(ping("127.0.0.1", ["--tls-ca", otherCA, ...podTLS.slice(2)]).status, 0, "a certificate of another CA was trusted");
      assert.notEqual(ping("127.0.0.1", []).status, 0, "plain text was served");
      // The kubelet's probe: plain-text gRPC health, SERVING (field 1 = 1), on the health port
      // only; the TLS port does not answer it.
      assert.deepEqual(await healthCheck(addresses.health), { status: 200, grpcStatus: "0", body: "00000000020801" });
      const onTLSPort = await healthCheck(addresses.grpc);
      assert.ok(onTLSPort.error || onTLSPort.grpcStatus !== "0", JSON.stringify(onTLSPort));
    } finally {
      // SIGTERM (the controller ends within its 2 s grace), SIGKILL if it has not after 10 s.
      const exited = new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once("exit", resolve)));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
      await exited;
      clearTimeout(timer);
    }
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

  it("find an unknown field and reject a wrong type in a cert-manager Certificate", () => {
    const docs = render({ valueFiles: [path.join(examplesDir, "gitops.yaml")] });
    const certificate = structuredClone(docs.find((d) => d.object.kind === "Certificate").object);
    assert.deepEqual(unknownFields(certificate), []);
    certificate.spec.dnsName = ["localhost"];
    certificate.spec.issuerRef.namespace = "cert-manager";
    assert.deepEqual(unknownFields(certificate).sort(), ["/spec/dnsName", "/spec/issuerRef/namespace"]);
    const wrong = structuredClone(docs.find((d) => d.object.kind === "Certificate").object);
    wrong.spec.ipAddresses = "127.0.0.1";
    assert.throws(() => new (modelOf(wrong))(wrong).validate(), /ipAddresses must be array/);
    delete wrong.spec.issuerRef;
    wrong.spec.ipAddresses = ["127.0.0.1"];
    assert.throws(() => new (modelOf(wrong))(wrong).validate(), /issuerRef/);
  });

  it("find an unknown field in a ServiceMonitor", () => {
    const docs = render({ valueFiles: [path.join(examplesDir, "monitoring.yaml")] });
    const monitor = structuredClone(docs.find((d) => d.object.kind === "ServiceMonitor").object);
    monitor.spec.endpoints[0].scrapeIntervall = "5s";
    assert.deepEqual(unknownFields(monitor), ["/spec/endpoints/0/scrapeIntervall"]);
  });
});
