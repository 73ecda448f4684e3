// Tests of the pod template the chart writes for the worker pods the Kubernetes launcher creates
// (issue 13: launched worker pods could not be placed). The chart renders the launcher.* values
// (labels, annotations, nodeSelector, tolerations, affinity, topologySpreadConstraints,
// priorityClassName, security contexts, extra env) into the ConfigMap <fullname>-worker-pod, key
// pod.json, with what launched pods share with the standing workers (loads.workerPod: the metrics
// flags, port and token, the liveness probe, the security contexts), mounts it into the controller
// and passes --worker-pod-template; these tests check that pod.json holds exactly what the values
// say, that the real loads-controller accepts it, that a pod built from it as the launcher builds
// one is a valid Pod (kubernetes-models) and has the standing workers' shared parts exactly, the
// controller's flags, volume, mount and checksum, and the values values.schema.json refuses.
// Rendered by tools/helm-render (not Helm; helm.test.mjs proves Helm renders the same).
//
//   node --test launcher-pod.test.mjs   (LOADS_HELM_RENDER: a built renderer; LOADS_BIN_DIR: where
//                                        loads-controller is, default build/bin)

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";

import yaml from "js-yaml";

import {
  allOptionsCase,
  assertSchemaRefuses,
  binDir,
  chartDir,
  controllerBin,
  exampleCases,
  examplesDir,
  flagsOf,
  FULLNAME,
  launchedPod,
  launchedPodOf,
  mergedValues,
  models,
  NAMESPACE,
  RELEASE,
  render,
  runRenderer,
  schema,
  unknownFields,
  validateValues,
  writeTemp,
} from "./lib.mjs";

const CONFIGMAP = `${FULLNAME}-worker-pod`;
const TEMPLATE_PATH = "/etc/loads/worker-pod/pod.json";


// Every placement value, labels, annotations and env set at once (with commonLabels, which the
// launched pods carry too).
const placement = {
  commonLabels: { team: "performance", tier: "common" },
  launcher: {
    kubernetesApiParallelism: 32,
    podLabels: { tier: "launched", "example.com/cost-center": "4242" },
    podAnnotations: { "cluster-autoscaler.kubernetes.io/safe-to-evict": "false", "example.com/note": "a: b, {c}" },
    nodeSelector: { "node-pool": "load", "kubernetes.io/os": "linux" },
    tolerations: [
      { key: "dedicated", operator: "Equal", value: "load", effect: "NoSchedule" },
      { key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute", tolerationSeconds: 60 },
    ],
    affinity: {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [{ matchExpressions: [{ key: "node-pool", operator: "In", values: ["load", "load-spot"] }] }],
        },
      },
      podAntiAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          {
            weight: 100,
            podAffinityTerm: {
              topologyKey: "kubernetes.io/hostname",
              labelSelector: { matchLabels: { "app.kubernetes.io/component": "worker", "app.kubernetes.io/managed-by": "loads-controller" } },
            },
          },
        ],
      },
    },
    topologySpreadConstraints: [
      {
        maxSkew: 1,
        topologyKey: "topology.kubernetes.io/zone",
        whenUnsatisfiable: "ScheduleAnyway",
        labelSelector: { matchLabels: { "app.kubernetes.io/component": "worker" } },
        matchLabelKeys: ["loads/run-hash"],
        minDomains: 2,
        nodeAffinityPolicy: "Honor",
        nodeTaintsPolicy: "Ignore",
      },
    ],
    priorityClassName: "load-testing",
    extraEnv: [
      { name: "TZ", value: "UTC" },
      { name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
    ],
  },
};
const placementFile = writeTemp("placement-all.yaml", yaml.dump(placement));

// The launched pods' own security contexts, replacing the chart's (not merged with them).
const ownContexts = {
  launcher: {
    podSecurityContext: { runAsNonRoot: true, runAsUser: 4242, seccompProfile: { type: "RuntimeDefault" } },
    containerSecurityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
  },
};
const ownContextsFile = writeTemp("own-contexts.yaml", yaml.dump(ownContexts));

// Values whose pod.json the controller must accept, and which a launched pod must be valid with.
const cases = [
  { name: "values.yaml", files: [] },
  { name: "every placement value", files: [placementFile] },
  { name: "the launcher's own security contexts", files: [ownContextsFile] },
  { name: "examples/placement.yaml", files: [path.join(examplesDir, "placement.yaml")] },
  { name: "examples/openshift.yaml", files: [path.join(examplesDir, "openshift.yaml")] },
  allOptionsCase,
];

function renderWith(files) {
  return render({ valueFiles: files, release: RELEASE, namespace: NAMESPACE }).map((d) => d.object);
}

function find(objects, kind, name) {
  return objects.find((o) => o.kind === kind && o.metadata.name === name);
}

// The ConfigMap's pod.json: its text, and parsed.
function templateOf(objects) {
  const configMap = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name.endsWith("-worker-pod"));
  assert.ok(configMap, "no worker-pod ConfigMap");
  const text = configMap.data["pod.json"];
  return { configMap, text, pod: JSON.parse(text) };
}

function controllerOf(objects) {
  return objects.find((o) => o.kind === "Deployment" && o.metadata.labels["app.kubernetes.io/component"] === "controller");
}

function sha256(text) {
  return createHash("sha256").update(text).digest("hex");
}

// What the launcher gets from the chart's controller flags, for a template alone.
const LAUNCHER = {
  namespace: NAMESPACE,
  instance: RELEASE,
  endpoint: `tcp://${FULLNAME}-controller.${NAMESPACE}.svc:5555`,
  tokenSecret: `${FULLNAME}-tokens`,
};

// The pod spec parts launched pods share with the standing workers (loads.workerPod), for these
// values and the launched pods' env and security contexts.
function sharedSpec(values, { env = [], podSecurityContext = values.podSecurityContext, containerSecurityContext = values.containerSecurityContext } = {}) {
  return {
    automountServiceAccountToken: false,
    terminationGracePeriodSeconds: values.worker.terminationGracePeriodSeconds,
    securityContext: podSecurityContext,
    containers: [
      {
        name: "worker",
        args: ["--metrics", "0.0.0.0:9465", "--metrics-token-file", "/var/run/loads-metrics/token", "--controller-timeout", String(values.worker.controllerTimeout)],
        ...(env.length ? { env } : {}),
        ports: [{ name: "metrics", containerPort: 9465, protocol: "TCP" }],
        livenessProbe: { tcpSocket: { port: "metrics" }, initialDelaySeconds: 5, periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 3 },
        securityContext: containerSecurityContext,
        volumeMounts: [{ name: "metrics-token", mountPath: "/var/run/loads-metrics", readOnly: true }],
      },
    ],
    volumes: [
      {
        name: "metrics-token",
        secret: { secretName: `${FULLNAME}-tokens`, items: [{ key: values.controller.metricsToken.key, path: "token" }], defaultMode: 0o440 },
      },
    ],
  };
}

// loads-controller started with the Kubernetes launcher and this template, outside a cluster: it
// checks the template, then stops at the next step (no KUBERNETES_SERVICE_HOST). {status, stderr}.
function runController(templateFile) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("KUBERNETES_")));
  const result = spawnSync(
    controllerBin,
    ["--launcher", "kubernetes", "--worker-image", "x", "--advertise", "tcp://192.0.2.1:1", "--no-state", "--worker-pod-template", templateFile],
    { encoding: "utf8", env, timeout: 20000 },
  );
  if (result.error) throw result.error;
  return result;
}

describe("the launched worker pods' template (ConfigMap <fullname>-worker-pod)", () => {
  it("is rendered by default with what the standing workers have too (security contexts, metrics, probe), and nothing else", () => {
    const objects = renderWith([]);
    const values = mergedValues();
    const { configMap, pod } = templateOf(objects);
    assert.equal(configMap.metadata.name, CONFIGMAP);
    assert.equal(configMap.metadata.namespace, NAMESPACE);
    assert.equal(configMap.metadata.labels["app.kubernetes.io/component"], "controller");
    assert.deepEqual(Object.keys(configMap.data), ["pod.json"]);
    assert.deepEqual(pod, { apiVersion: "v1", kind: "Pod", spec: sharedSpec(values) });
    // The defaults are the restricted ones, and the controller's own pod runs under the same.
    assert.deepEqual(values.podSecurityContext, {
      runAsNonRoot: true,
      runAsUser: 10001,
      runAsGroup: 10001,
      fsGroup: 10001,
      seccompProfile: { type: "RuntimeDefault" },
    });
    assert.deepEqual(values.containerSecurityContext, {
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    });
    const controllerPod = controllerOf(objects).spec.template.spec;
    assert.deepEqual(pod.spec.securityContext, controllerPod.securityContext);
    assert.deepEqual(pod.spec.containers[0].securityContext, controllerPod.containers[0].securityContext);
  });

  it("holds every placement value exactly, with the labels, annotations and env", () => {
    const { pod } = templateOf(renderWith([placementFile]));
    const { launcher, commonLabels } = placement;
    const values = mergedValues([placementFile]);
    assert.deepEqual(pod, {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        // podLabels win over commonLabels.
        labels: { ...commonLabels, ...launcher.podLabels },
        annotations: launcher.podAnnotations,
      },
      spec: {
        ...sharedSpec(values, { env: launcher.extraEnv }),
        nodeSelector: launcher.nodeSelector,
        tolerations: launcher.tolerations,
        affinity: launcher.affinity,
        topologySpreadConstraints: launcher.topologySpreadConstraints,
        priorityClassName: launcher.priorityClassName,
      },
    });
    assert.equal(pod.metadata.labels.tier, "launched");
  });

  it("takes the launcher's own security contexts instead of the chart's, whole (not merged)", () => {
    const objects = renderWith([ownContextsFile]);
    const { pod } = templateOf(objects);
    assert.deepEqual(pod.spec.securityContext, ownContexts.launcher.podSecurityContext);
    assert.deepEqual(pod.spec.containers[0].securityContext, ownContexts.launcher.containerSecurityContext);
    // The chart's own pods keep theirs.
    const values = mergedValues([ownContextsFile]);
    assert.deepEqual(controllerOf(objects).spec.template.spec.securityContext, values.podSecurityContext);
    assert.equal(values.podSecurityContext.runAsUser, 10001);
  });

  it("leaves the user to OpenShift's SCC with examples/openshift.yaml, as for the chart's pods", () => {
    const { pod } = templateOf(renderWith([path.join(examplesDir, "openshift.yaml")]));
    for (const key of ["runAsUser", "runAsGroup", "fsGroup"]) assert.ok(!(key in pod.spec.securityContext), key);
    // The template's securityContext replaces the launcher's default (uid 10001) entirely.
    assert.deepEqual(pod.spec.securityContext, { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } });
    assert.ok(!("runAsUser" in launchedPod(pod, LAUNCHER).spec.securityContext));
  });

  for (const { name, files } of cases) {
    it(`is accepted by the real loads-controller, with ${name}`, (t) => {
      if (!existsSync(controllerBin)) {
        t.skip(`no loads-controller in ${binDir}`);
        return;
      }
      const { text } = templateOf(renderWith(files));
      const file = writeTemp(`pod-${name.replace(/[^a-z0-9]+/gi, "-")}.json`, text);
      const result = runController(file);
      assert.equal(result.status, 2, result.stderr);
      // Accepted: it went on to look for the cluster.
      assert.match(result.stderr, /not in a Kubernetes pod/, result.stderr);
      assert.doesNotMatch(result.stderr, /--worker-pod-template/, result.stderr);
    });

    it(`makes valid Pods as the launcher fills it in (kubernetes-models, no unknown field), with ${name}`, () => {
      const objects = renderWith(files);
      const { pod: template } = templateOf(objects);
      const pod = launchedPodOf(objects);
      const Pod = models["v1/Pod"];
      assert.doesNotThrow(() => new Pod(pod).validate());
      assert.deepEqual(unknownFields(pod), []);
      // The template itself is a Pod too, but for the worker container's image.
      assert.deepEqual(unknownFields(template), []);
    });
  }

  it("the check above tells a refused template apart", (t) => {
    if (!existsSync(controllerBin)) {
      t.skip(`no loads-controller in ${binDir}`);
      return;
    }
    const { pod } = templateOf(renderWith([]));
    for (const [what, change] of [
      ["a nodeName", (p) => (p.spec.nodeName = "node-1")],
      ["a reserved volume", (p) => (p.spec.volumes = [{ name: "tmp", emptyDir: {} }])],
      ["a label that is not a string", (p) => (p.metadata = { labels: { a: 1 } })],
    ]) {
      const bad = structuredClone(pod);
      change(bad);
      const result = runController(writeTemp("bad-pod.json", JSON.stringify(bad)));
      assert.equal(result.status, 2, what);
      assert.match(result.stderr, /--worker-pod-template: /, `${what}: ${result.stderr}`);
    }
  });
});

describe("the controller and the template", () => {
  it("passes --worker-pod-template and --kubernetes-api-parallelism, and mounts the ConfigMap read-only", () => {
    for (const [files, parallelism] of [[[], "8"], [[placementFile], "32"]]) {
      const objects = renderWith(files);
      const deployment = controllerOf(objects);
      const spec = deployment.spec.template.spec;
      const container = spec.containers.find((c) => c.name === "controller");
      const flags = flagsOf(container.args.slice(0, container.args.length - mergedValues(files).controller.extraArgs.length));
      assert.equal(flags["--worker-pod-template"], TEMPLATE_PATH);
      assert.equal(flags["--kubernetes-api-parallelism"], parallelism);
      const volume = spec.volumes.find((v) => v.name === "worker-pod");
      assert.deepEqual(volume, { name: "worker-pod", configMap: { name: CONFIGMAP, items: [{ key: "pod.json", path: "pod.json" }] } });
      const mount = container.volumeMounts.find((m) => m.name === "worker-pod");
      assert.deepEqual(mount, { name: "worker-pod", mountPath: path.dirname(TEMPLATE_PATH), readOnly: true });
      assert.equal(path.join(mount.mountPath, volume.configMap.items[0].path), TEMPLATE_PATH);
      assert.ok(find(objects, "ConfigMap", volume.configMap.name), "the mounted ConfigMap is not rendered");
      // Still "restricted": a read-only root filesystem, and a configMap volume (allowed).
      assert.equal(container.securityContext.readOnlyRootFilesystem, true);
      assert.equal(spec.securityContext.runAsNonRoot, true);
    }
  });

  it("restarts the controller when the template changes (checksum/worker-pod), and only then", () => {
    const checksum = (files) => controllerOf(renderWith(files)).spec.template.metadata.annotations["checksum/worker-pod"];
    const defaults = templateOf(renderWith([]));
    // The hash of pod.json exactly as the ConfigMap holds it.
    assert.equal(checksum([]), sha256(defaults.text));
    assert.equal(checksum([]), checksum([]));
    const other = writeTemp("other-priority.yaml", "launcher:\n  priorityClassName: other\n");
    assert.notEqual(checksum([other]), checksum([]));
    assert.equal(checksum([placementFile]), sha256(templateOf(renderWith([placementFile])).text));
    // Values the template does not hold do not restart it through this annotation.
    const flagOnly = writeTemp("flag-only.yaml", "launcher:\n  maxLaunchedWorkers: 3\n");
    assert.equal(checksum([flagOnly]), checksum([]));
  });

  it("renders no template, flag, volume nor checksum with launcher.enabled=false", () => {
    const objects = renderWith([writeTemp("no-launcher.yaml", "launcher:\n  enabled: false\n")]);
    assert.equal(objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === CONFIGMAP), undefined);
    const template = controllerOf(objects).spec.template;
    const [container] = template.spec.containers;
    assert.ok(!container.args.includes("--worker-pod-template"));
    assert.ok(!container.args.includes("--kubernetes-api-parallelism"));
    assert.equal(template.spec.volumes.find((v) => v.name === "worker-pod"), undefined);
    assert.equal(container.volumeMounts.find((m) => m.name === "worker-pod"), undefined);
    assert.ok(!("checksum/worker-pod" in (template.metadata.annotations ?? {})));
  });

  it("refuses a controller extra volume named worker-pod", () => {
    const file = writeTemp("clash.yaml", "controller:\n  extraVolumes:\n    - name: worker-pod\n      emptyDir: {}\n");
    const result = runRenderer(["--strict", "-f", file, "--release", RELEASE, chartDir]);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /controller\.extraVolumes: the name "worker-pod" is one of the chart's volumes/);
  });
});

// ---- One worker pod definition (loads.workerPod) for standing and launched workers ----------

// What each kind has on its own: the flags the launcher passes itself (or the standing workers'
// counterparts, their CURVE key from a file), the token, /tmp and CURVE volumes, the image,
// resources, placement, pull Secrets and restart policy. Everything else must be the same.
const STANDING_FLAGS = ["--controller", "--id", "--token-file", "--work-dir", "--threads", "--curve-server-key-file"];
const LAUNCHER_FLAGS = ["--controller", "--id", "--token-file", "--work-dir", "--threads", "--curve-server-key"];
const STANDING_VOLUMES = ["tokens", "tmp", "curve"];
const LAUNCHER_VOLUMES = ["tokens", "tmp"];
const OWN_CONTAINER_KEYS = ["name", "image", "imagePullPolicy", "command", "resources", "args", "env", "volumeMounts", "securityContext"];
// enableServiceLinks: the launcher's default (false), which the Deployment leaves to Kubernetes.
const OWN_SPEC_KEYS = ["containers", "volumes", "securityContext", "imagePullSecrets", "restartPolicy", "enableServiceLinks",
  "nodeSelector", "tolerations", "affinity", "topologySpreadConstraints", "priorityClassName"];
const STANDING_ENV = ["LOADS_POD_NAME", "LOADS_CPU_LIMIT"];

const without = (flags, own) => Object.fromEntries(Object.entries(flags).filter(([flag]) => !own.includes(flag)));

// The standing workers' Deployment and a launched pod of one render, and the values.
function bothKinds(files) {
  const objects = renderWith(files);
  const values = mergedValues(files);
  const deployment = objects.find((o) => o.kind === "Deployment" && o.metadata.labels["app.kubernetes.io/component"] === "standing-worker");
  return { values, standing: deployment?.spec.template.spec, launched: launchedPodOf(objects)?.spec };
}

const standingOn = writeTemp("standing-on.yaml", "worker: {enabled: true}\n");
const sharedValues = writeTemp(
  "shared-values.yaml",
  yaml.dump({
    worker: { enabled: true, controllerTimeout: 2.5, terminationGracePeriodSeconds: 45, extraEnv: [{ name: "TZ", value: "UTC" }] },
    launcher: { extraEnv: [{ name: "TZ", value: "UTC" }] },
    podSecurityContext: { runAsNonRoot: true, runAsUser: 2000, fsGroup: 2000, seccompProfile: { type: "RuntimeDefault" } },
    containerSecurityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, runAsNonRoot: true },
    controller: { metricsToken: { secretName: "prom-scrape", key: "scrape" } },
    curve: { enabled: false },
  }),
);
const bothCases = [
  { name: "values.yaml and standing workers", files: [standingOn] },
  { name: "every placement value and standing workers", files: [placementFile, standingOn] },
  { name: "the launcher's own security contexts and standing workers", files: [ownContextsFile, standingOn] },
  { name: "shared values changed", files: [sharedValues] },
  ...exampleCases,
  allOptionsCase,
];

describe("standing and launched workers from one pod definition", () => {
  it("is checked with both kinds in several of the cases", () => {
    const both = bothCases.filter(({ files }) => {
      const { standing, launched } = bothKinds(files);
      return standing && launched;
    });
    assert.ok(both.length >= 8, both.map((c) => c.name).join(", "));
  });

  for (const { name, files } of bothCases) {
    const { values, standing, launched } = bothKinds(files);
    if (!standing || !launched) continue;
    const [sContainer] = standing.containers;
    const lContainer = launched.containers.find((c) => c.name === "worker");

    it(`gives both the same worker flags but each kind's own, with ${name}`, () => {
      const sArgs = sContainer.args.slice(0, sContainer.args.length - values.worker.extraArgs.length);
      const sFlags = flagsOf(sArgs);
      const lFlags = flagsOf(lContainer.args);
      assert.deepEqual(without(lFlags, LAUNCHER_FLAGS), without(sFlags, STANDING_FLAGS));
      assert.equal(lFlags["--metrics"], "0.0.0.0:9465");
      assert.equal(lFlags["--metrics-token-file"], "/var/run/loads-metrics/token");
      assert.equal(lFlags["--controller-timeout"], String(values.worker.controllerTimeout));
      // The launcher's own flags come first, the template's after them (PodManifest).
      assert.deepEqual(lContainer.args.slice(0, 2), ["--controller", lFlags["--controller"]]);
      assert.deepEqual(lContainer.args.slice(-6), ["--metrics", "0.0.0.0:9465", "--metrics-token-file", "/var/run/loads-metrics/token", "--controller-timeout", String(values.worker.controllerTimeout)]);
    });

    it(`gives both the same port, probes and container fields, with ${name}`, () => {
      const keys = new Set([...Object.keys(sContainer), ...Object.keys(lContainer)].filter((k) => !OWN_CONTAINER_KEYS.includes(k)));
      assert.ok(keys.has("ports") && keys.has("livenessProbe"), [...keys].join(", "));
      for (const key of keys) assert.deepEqual(lContainer[key], sContainer[key], key);
      assert.deepEqual(lContainer.ports, [{ name: "metrics", containerPort: 9465, protocol: "TCP" }]);
      assert.deepEqual(lContainer.livenessProbe.tcpSocket, { port: "metrics" });
    });

    it(`gives both the same pod fields, the chart's security contexts unless the launcher's replace them, with ${name}`, () => {
      const keys = new Set([...Object.keys(standing), ...Object.keys(launched)].filter((k) => !OWN_SPEC_KEYS.includes(k)));
      assert.ok(keys.has("automountServiceAccountToken") && keys.has("terminationGracePeriodSeconds"), [...keys].join(", "));
      for (const key of keys) assert.deepEqual(launched[key], standing[key], key);
      assert.equal(launched.automountServiceAccountToken, false);
      assert.equal(launched.terminationGracePeriodSeconds, values.worker.terminationGracePeriodSeconds);
      assert.deepEqual(standing.securityContext, values.podSecurityContext);
      assert.deepEqual(sContainer.securityContext, values.containerSecurityContext);
      const { podSecurityContext, containerSecurityContext } = values.launcher;
      assert.deepEqual(launched.securityContext, Object.keys(podSecurityContext).length ? podSecurityContext : standing.securityContext);
      assert.deepEqual(lContainer.securityContext, Object.keys(containerSecurityContext).length ? containerSecurityContext : sContainer.securityContext);
    });

    it(`mounts the same metrics token volume in both, and nothing else of the chart's, with ${name}`, () => {
      const extra = values.worker.extraVolumeMounts.map((m) => m.name);
      const sMounts = sContainer.volumeMounts.filter((m) => !STANDING_VOLUMES.includes(m.name) && !extra.includes(m.name));
      const lMounts = lContainer.volumeMounts.filter((m) => !LAUNCHER_VOLUMES.includes(m.name));
      assert.deepEqual(lMounts, sMounts);
      assert.deepEqual(lMounts.map((m) => m.name), ["metrics-token"]);
      const volumesOf = (spec, mounts) => mounts.map((m) => spec.volumes.find((v) => v.name === m.name));
      assert.deepEqual(volumesOf(launched, lMounts), volumesOf(standing, sMounts));
      assert.deepEqual(launched.volumes.map((v) => v.name), ["metrics-token", "tmp", "tokens"]);
      assert.equal(launched.volumes[0].secret.items[0].key, values.controller.metricsToken.key);
    });

    it(`gives each kind its own extra env after the chart's, with ${name}`, () => {
      const sEnv = (sContainer.env ?? []).filter((e) => !STANDING_ENV.includes(e.name));
      assert.deepEqual(sEnv, values.worker.extraEnv);
      assert.deepEqual(lContainer.env ?? [], values.launcher.extraEnv);
    });
  }
});

describe("values.schema.json and the launcher's pod values", () => {
  it("accepts every placement value, and the examples'", () => {
    for (const files of [[placementFile], [ownContextsFile], [path.join(examplesDir, "placement.yaml")]]) {
      const values = mergedValues(files);
      assert.ok(validateValues(values), JSON.stringify(validateValues.errors, null, 2));
    }
  });

  const bad = [
    ["tolerations that are not an array", "launcher:\n  tolerations: {key: dedicated}\n", "type", "/launcher/tolerations"],
    ["a toleration with an unknown key", "launcher:\n  tolerations:\n    - {key: a, operater: Exists}\n", "additionalProperties", "/launcher/tolerations/0"],
    ["a toleration of an unknown effect", "launcher:\n  tolerations:\n    - {key: a, operator: Exists, effect: NoRun}\n", "enum", "/launcher/tolerations/0/effect"],
    ["a priorityClassName that is not a string", "launcher:\n  priorityClassName: 1000\n", "type", "/launcher/priorityClassName"],
    ["a priorityClassName in capitals", "launcher:\n  priorityClassName: High\n", "pattern", "/launcher/priorityClassName"],
    ["kubernetesApiParallelism 0", "launcher:\n  kubernetesApiParallelism: 0\n", "minimum", "/launcher/kubernetesApiParallelism"],
    ["kubernetesApiParallelism 65", "launcher:\n  kubernetesApiParallelism: 65\n", "maximum", "/launcher/kubernetesApiParallelism"],
    ["kubernetesApiParallelism as a string", "launcher:\n  kubernetesApiParallelism: \"8\"\n", "type", "/launcher/kubernetesApiParallelism"],
    ["a fractional kubernetesApiParallelism", "launcher:\n  kubernetesApiParallelism: 2.5\n", "type", "/launcher/kubernetesApiParallelism"],
    ["a nodeSelector that is a list", "launcher:\n  nodeSelector: [node-pool=load]\n", "type", "/launcher/nodeSelector"],
    ["a nodeSelector value that is not a string", "launcher:\n  nodeSelector:\n    gpu: true\n", "type", "/launcher/nodeSelector/gpu"],
    ["an unknown kind of affinity", "launcher:\n  affinity:\n    nodeAntiAffinity: {}\n", "additionalProperties", "/launcher/affinity"],
    ["topologySpreadConstraints that are not an array", "launcher:\n  topologySpreadConstraints: {maxSkew: 1}\n", "type", "/launcher/topologySpreadConstraints"],
    ["a spread constraint without topologyKey", "launcher:\n  topologySpreadConstraints:\n    - {maxSkew: 1, whenUnsatisfiable: DoNotSchedule}\n", "required", "/launcher/topologySpreadConstraints/0"],
    ["a spread constraint of maxSkew 0", "launcher:\n  topologySpreadConstraints:\n    - {maxSkew: 0, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}\n", "minimum", "/launcher/topologySpreadConstraints/0/maxSkew"],
    ["an unknown whenUnsatisfiable", "launcher:\n  topologySpreadConstraints:\n    - {maxSkew: 1, topologyKey: zone, whenUnsatisfiable: Wait}\n", "enum", "/launcher/topologySpreadConstraints/0/whenUnsatisfiable"],
    ["a launcher's label of the chart's own", "launcher:\n  podLabels:\n    app.kubernetes.io/component: x\n", "not", "/launcher/podLabels"],
    ["an annotation that is not a string", "launcher:\n  podAnnotations:\n    example.com/n: 1\n", "type", "/launcher/podAnnotations/example.com~1n"],
    ["a misspelt pod security key", "launcher:\n  podSecurityContext:\n    runAsNonroot: true\n", "additionalProperties", "/launcher/podSecurityContext"],
    ["a container security context as a list", "launcher:\n  containerSecurityContext: [readOnlyRootFilesystem]\n", "type", "/launcher/containerSecurityContext"],
    ["an env var without a name", "launcher:\n  extraEnv:\n    - value: x\n", "required", "/launcher/extraEnv/0"],
    ["an unknown launcher key", "launcher:\n  podSpec: {}\n", "additionalProperties", "/launcher"],
  ];
  for (const [what, text, keyword, instancePath] of bad) {
    it(`refuses ${what}`, () => assertSchemaRefuses(text, keyword, instancePath));
  }
});
