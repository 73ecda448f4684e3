// CurveZMQ in the chart helm/loads (curve.*), rendered by tools/helm-render: on by default, the
// Secret <fullname>-curve with the controller's key (controller.key, "secret: " and 40 letters and
// digits, a valid Z85 secret key), kept by `lookup` on upgrades with the public-key the controller
// wrote, the pods' checksum/curve (of controller.key alone); the controller's flags
// (--curve-key-file, --curve-any-worker, --curve-public-key-secret) and its mount of controller.key
// alone; the Role allowing get and patch on that one Secret; the standing workers' mount of
// public-key alone and --curve-server-key-file; curve.existingSecret; the GitOps mode; nothing of
// it with curve.enabled=false; and the real binaries: loads-controller accepts the rendered flags
// and key, writes its public key into the Secret of a fake Kubernetes API server
// (tests/k8s/fake_apiserver.mjs), and a loads-worker given that key as the kubelet mounts it
// registers through CURVE.
//
//   node --test tests/helm/curve.test.mjs   (LOADS_HELM_RENDER: a built renderer; LOADS_BIN_DIR:
//                                             the binaries, default build/bin)

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash, createPrivateKey, createPublicKey } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import { after, describe, it } from "node:test";

import yaml from "js-yaml";

import {
  assertSchemaRefuses,
  binDir,
  chartDir,
  CONTROLLER,
  controllerBin,
  flagsOf,
  FULLNAME,
  helpFlags,
  mergedValues,
  NAMESPACE,
  parseManifests,
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
  writeTemp,
} from "./lib.mjs";

const SECRET = `${FULLNAME}-curve`;
const CURVE_DIR = "/var/run/loads-curve";

// Renders with values given as YAML text (or none), and Secrets `lookup` finds (YAML texts).
function renderWith(text = "", lookups = []) {
  return render({
    release: RELEASE,
    namespace: NAMESPACE,
    valueFiles: text ? [writeTemp("values.yaml", text)] : [],
    lookups: lookups.map((l) => writeTemp("cluster.yaml", l)),
  });
}

function textWith(text = "", lookups = []) {
  return renderText({
    release: RELEASE,
    namespace: NAMESPACE,
    valueFiles: text ? [writeTemp("values.yaml", text)] : [],
    lookups: lookups.map((l) => writeTemp("cluster.yaml", l)),
  });
}

const find = (docs, kind, name) => docs.find((d) => d.object.kind === kind && d.object.metadata.name === name);
const objectOf = (docs, kind, name) => find(docs, kind, name)?.object;
const controllerOf = (docs) => objectOf(docs, "Deployment", CONTROLLER);
const workersOf = (docs) => objectOf(docs, "Deployment", `${FULLNAME}-worker`);
const decoded = (secret) =>
  Object.fromEntries(Object.entries(secret.data).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]));
const sha256 = (text) => createHash("sha256").update(text).digest("hex");

// Every Secret volume of a pod spec, with its items, by volume name.
function secretVolumes(spec) {
  return Object.fromEntries(spec.volumes.filter((v) => v.secret).map((v) => [v.name, v.secret]));
}

// Z85 (ZeroMQ RFC 32) and Curve25519, to derive the public key a controller must publish.
const Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
function z85Decode(text) {
  assert.equal(text.length % 5, 0);
  const bytes = Buffer.alloc((text.length / 5) * 4);
  for (let i = 0; i < text.length; i += 5) {
    let value = 0;
    for (let j = 0; j < 5; j++) {
      const digit = Z85.indexOf(text[i + j]);
      assert.ok(digit >= 0, `not a Z85 character: ${text[i + j]}`);
      value = value * 85 + digit;
    }
    assert.ok(value < 2 ** 32, `${text.slice(i, i + 5)} overflows 32 bits`);
    bytes.writeUInt32BE(value, (i / 5) * 4);
  }
  return bytes;
}
function z85Encode(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 4) {
    let value = bytes.readUInt32BE(i);
    const chunk = [];
    for (let j = 0; j < 5; j++) {
      chunk.unshift(Z85[value % 85]);
      value = Math.floor(value / 85);
    }
    text += chunk.join("");
  }
  return text;
}
// The public key of a Z85 secret key, as zmq_curve_public derives it (X25519 of the base point).
function curvePublic(secret) {
  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), z85Decode(secret)]);
  const spki = createPublicKey(createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" })).export({ format: "der", type: "spki" });
  return z85Encode(spki.subarray(-32));
}

describe("CURVE by default", () => {
  const docs = renderWith("worker:\n  enabled: true\n");

  it("is on by default, with a generated key", () => {
    assert.deepEqual(mergedValues().curve, { enabled: true, existingSecret: "" });
    assert.ok(validateValues(mergedValues()), JSON.stringify(validateValues.errors));
  });

  it("generates the Secret <fullname>-curve: controller.key alone, a line with a valid Z85 secret key", () => {
    const secret = objectOf(docs, "Secret", SECRET);
    assert.ok(secret, "no CURVE Secret");
    assert.equal(secret.type, "Opaque");
    assert.equal(secret.metadata.namespace, NAMESPACE);
    assert.equal(secret.metadata.labels["app.kubernetes.io/component"], "controller");
    assert.deepEqual(Object.keys(secret.data), ["controller.key"]);
    const key = decoded(secret)["controller.key"];
    assert.match(key, /^secret: [A-Za-z0-9]{40}\n$/);
    // Any 40 letters and digits decode (no 5-character group overflows 32 bits) to a key.
    assert.match(curvePublic(key.slice(8, 48)), /^.{40}$/);
    // Random: another render (no cluster) has another key.
    assert.notEqual(decoded(objectOf(renderWith(), "Secret", SECRET))["controller.key"], key);
  });

  it("runs the controller with --curve-key-file, --curve-any-worker and --curve-public-key-secret, mounting controller.key alone", () => {
    const spec = controllerOf(docs).spec.template.spec;
    const [container] = spec.containers;
    const flags = flagsOf(container.args);
    assert.equal(flags["--curve-key-file"], `${CURVE_DIR}/controller.key`);
    assert.equal(flags["--curve-any-worker"], true);
    assert.equal(flags["--curve-public-key-secret"], SECRET);
    // The key file is the one item of the Secret's volume, mounted read-only where the flag reads it.
    const volume = spec.volumes.find((v) => v.name === "curve");
    assert.deepEqual(volume, {
      name: "curve",
      secret: { secretName: SECRET, items: [{ key: "controller.key", path: "controller.key" }], defaultMode: 0o440 },
    });
    const mount = container.volumeMounts.find((m) => m.name === "curve");
    assert.deepEqual(mount, { name: "curve", mountPath: CURVE_DIR, readOnly: true });
    assert.equal(path.posix.join(mount.mountPath, volume.secret.items[0].path), flags["--curve-key-file"]);
    // No other volume of the controller's holds anything of that Secret.
    const fromSecret = Object.entries(secretVolumes(spec)).filter(([, s]) => s.secretName === SECRET);
    assert.deepEqual(fromSecret.map(([name]) => name), ["curve"]);
    // The key writer needs the account's token.
    assert.equal(spec.automountServiceAccountToken, true);
    assert.equal(spec.serviceAccountName, CONTROLLER);
    // Still "restricted": the root filesystem stays read-only, a Secret volume is allowed.
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    assert.equal(spec.securityContext.runAsNonRoot, true);
  });

  it("gives the controller's account get and patch on that one Secret, and no other right on Secrets", () => {
    const role = objectOf(docs, "Role", `${FULLNAME}-curve`);
    assert.deepEqual(role.rules, [
      { apiGroups: [""], resources: ["secrets"], resourceNames: [SECRET], verbs: ["get", "patch"] },
    ]);
    const binding = objectOf(docs, "RoleBinding", `${FULLNAME}-curve`);
    assert.deepEqual(binding.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata.name });
    assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: CONTROLLER, namespace: NAMESPACE }]);
    const secretRules = docs
      .filter((d) => d.object.kind === "Role")
      .flatMap((d) => d.object.rules.filter((r) => r.resources.includes("secrets")).map((r) => [d.object.metadata.name, r]));
    assert.deepEqual(secretRules.map(([name]) => name), [`${FULLNAME}-curve`]);
    assert.equal(objectOf(docs, "ServiceAccount", CONTROLLER).automountServiceAccountToken, true);
  });

  it("gives standing workers public-key alone, for --curve-server-key-file, and no API credentials", () => {
    const spec = workersOf(docs).spec.template.spec;
    const [container] = spec.containers;
    assert.equal(flagsOf(container.args)["--curve-server-key-file"], `${CURVE_DIR}/public-key`);
    const volume = spec.volumes.find((v) => v.name === "curve");
    // Not optional: the pod waits in ContainerCreating until the controller has written the key.
    assert.deepEqual(volume, {
      name: "curve",
      secret: { secretName: SECRET, items: [{ key: "public-key", path: "public-key" }], defaultMode: 0o440 },
    });
    const mount = container.volumeMounts.find((m) => m.name === "curve");
    assert.deepEqual(mount, { name: "curve", mountPath: CURVE_DIR, readOnly: true });
    assert.equal(path.posix.join(mount.mountPath, "public-key"), flagsOf(container.args)["--curve-server-key-file"]);
    assert.equal(spec.automountServiceAccountToken, false);
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
  });

  it("never gives the test pod nor the launched pods' template anything of the CURVE Secret", () => {
    const pod = objectOf(docs, "Pod", `${FULLNAME}-test-run`);
    assert.ok(!JSON.stringify(pod).includes(SECRET));
    const template = objectOf(docs, "ConfigMap", `${FULLNAME}-worker-pod`);
    assert.ok(!JSON.stringify(template).includes(SECRET));
  });

  it("restarts the controller and the standing workers when the key changes (checksum/curve of controller.key)", () => {
    const key = decoded(objectOf(docs, "Secret", SECRET))["controller.key"];
    for (const deployment of [controllerOf(docs), workersOf(docs)]) {
      assert.equal(deployment.spec.template.metadata.annotations["checksum/curve"], sha256(key), deployment.metadata.name);
    }
    const other = renderWith("worker:\n  enabled: true\n");
    assert.notEqual(controllerOf(other).spec.template.metadata.annotations["checksum/curve"], sha256(key));
  });

  it("says so in NOTES.txt, and that standing workers wait for the public key", () => {
    const notes = renderNotes({ release: RELEASE, namespace: NAMESPACE, valueFiles: [writeTemp("w.yaml", "worker:\n  enabled: true\n")] });
    assert.match(notes, /\(5555, 5556\) speak CurveZMQ/);
    assert.ok(notes.includes(`controller.key of the Secret ${SECRET} (generated by the chart, kept on upgrades)`), notes);
    assert.match(notes, /standing workers, which mount it, wait in ContainerCreating/);
    assert.ok(!notes.includes("curve.enabled is false"));
  });
});

describe("the CURVE key across renders (lookup)", () => {
  // An upgrade: the Secrets the install generated are in the cluster, the CURVE Secret with the
  // public-key the controller wrote into it (punctuation included: a Z85 key of its own).
  const install = renderWith("worker:\n  enabled: true\n");
  const generated = install.filter((d) => d.object.kind === "Secret");
  const curve = find(install, "Secret", SECRET);
  const publicKey = `${curvePublic(decoded(curve.object)["controller.key"].slice(8, 48))}\n`;
  const written = structuredClone(curve.object);
  written.data["public-key"] = Buffer.from(publicKey).toString("base64");
  const others = generated.filter((d) => d !== curve).map((d) => d.text);
  const cluster = [...others, yaml.dump(written)].join("\n---\n");

  it("keeps controller.key and the public-key the controller wrote, byte for byte", () => {
    const upgraded = objectOf(renderWith("worker:\n  enabled: true\n", [cluster]), "Secret", SECRET);
    assert.deepEqual(Object.keys(upgraded.data).sort(), ["controller.key", "public-key"]);
    assert.equal(upgraded.data["controller.key"], curve.object.data["controller.key"]);
    assert.equal(upgraded.data["public-key"], written.data["public-key"]);
    assert.equal(decoded(upgraded)["public-key"], publicKey);
  });

  it("renders upgrades byte-identical, and the pods as the install had them: the public key restarts nothing", () => {
    const first = textWith("worker:\n  enabled: true\n", [cluster]);
    assert.equal(first, textWith("worker:\n  enabled: true\n", [cluster]));
    const upgraded = parseManifests(first);
    for (const name of [CONTROLLER, `${FULLNAME}-worker`]) {
      assert.equal(find(upgraded, "Deployment", name).text, find(install, "Deployment", name).text, name);
    }
    // Before the controller wrote it, the same.
    const before = [...others, curve.text].join("\n---\n");
    assert.equal(find(renderWith("worker:\n  enabled: true\n", [before]), "Deployment", CONTROLLER).text, find(install, "Deployment", CONTROLLER).text);
  });

  it("keeps a controller.key it did not generate (a keygen file put into the Secret)", () => {
    const keygen = "# A CurveZMQ key pair of Loads (loads-controller keygen).\npublic: rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\nsecret: JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6\n";
    const mine = structuredClone(curve.object);
    mine.data["controller.key"] = Buffer.from(keygen).toString("base64");
    const upgraded = objectOf(renderWith("", [yaml.dump(mine)]), "Secret", SECRET);
    assert.equal(decoded(upgraded)["controller.key"], keygen);
    assert.equal(controllerOf(renderWith("", [yaml.dump(mine)])).spec.template.metadata.annotations["checksum/curve"], sha256(keygen));
  });

  it("makes a new key, without the old public-key, when the Secret lost controller.key", () => {
    const lost = structuredClone(written);
    delete lost.data["controller.key"];
    const upgraded = objectOf(renderWith("", [yaml.dump(lost)]), "Secret", SECRET);
    assert.deepEqual(Object.keys(upgraded.data), ["controller.key"], "a public key of another key kept");
    assert.match(decoded(upgraded)["controller.key"], /^secret: [A-Za-z0-9]{40}\n$/);
    assert.notEqual(upgraded.data["controller.key"], curve.object.data["controller.key"]);
  });

  it("does not take the key of a Secret of another name or namespace, and finds it in namespaceOverride", () => {
    const elsewhere = structuredClone(written);
    elsewhere.metadata.namespace = "other";
    const renamed = structuredClone(written);
    renamed.metadata.name = "other-loads-curve";
    const upgraded = objectOf(renderWith("", [`${yaml.dump(elsewhere)}---\n${yaml.dump(renamed)}`]), "Secret", SECRET);
    assert.notEqual(upgraded.data["controller.key"], curve.object.data["controller.key"]);
    assert.equal(upgraded.data["public-key"], undefined);
    const moved = structuredClone(written);
    moved.metadata.namespace = "load-testing";
    const overridden = objectOf(renderWith("namespaceOverride: load-testing\n", [yaml.dump(moved)]), "Secret", SECRET);
    assert.equal(overridden.metadata.namespace, "load-testing");
    assert.equal(overridden.data["controller.key"], curve.object.data["controller.key"]);
    assert.equal(overridden.data["public-key"], written.data["public-key"]);
  });
});

describe("curve.existingSecret", () => {
  const values = "curve:\n  existingSecret: my-curve\nworker:\n  enabled: true\n";
  const docs = renderWith(values);

  it("renders no CURVE Secret and points the flag, the mounts and the Role at it", () => {
    assert.equal(docs.filter((d) => d.object.kind === "Secret" && d.object.metadata.name.endsWith("-curve")).length, 0);
    const controller = controllerOf(docs).spec.template.spec;
    assert.equal(flagsOf(controller.containers[0].args)["--curve-public-key-secret"], "my-curve");
    assert.deepEqual(secretVolumes(controller).curve, {
      secretName: "my-curve",
      items: [{ key: "controller.key", path: "controller.key" }],
      defaultMode: 0o440,
    });
    assert.deepEqual(secretVolumes(workersOf(docs).spec.template.spec).curve, {
      secretName: "my-curve",
      items: [{ key: "public-key", path: "public-key" }],
      defaultMode: 0o440,
    });
    assert.deepEqual(objectOf(docs, "Role", `${FULLNAME}-curve`).rules[0].resourceNames, ["my-curve"]);
    assert.ok(renderNotes({ release: RELEASE, namespace: NAMESPACE, valueFiles: [writeTemp("v.yaml", values)] }).includes("Secret my-curve (curve.existingSecret, yours)"));
  });

  it("carries no checksum of a Secret the chart does not know, and renders nothing random with the other Secrets given", () => {
    for (const deployment of [controllerOf(docs), workersOf(docs)]) {
      assert.ok(!("checksum/curve" in (deployment.spec.template.metadata.annotations ?? {})), deployment.metadata.name);
    }
    const none = `${values}auth: {existingSecret: t}\ntls: {existingSecret: my-tls}\n`;
    const text = textWith(none);
    assert.equal(text, textWith(none));
    assert.ok(!/^kind: Secret$/m.test(text));
  });
});

describe("the GitOps mode (auth.generate=false)", () => {
  const gitops = "auth: {existingSecret: t, generate: false}\ntls: {existingSecret: my-tls}\n";

  it("makes the schema require curve.existingSecret with curve.enabled", () => {
    assert.equal(validateValues(mergedValues([writeTemp("g.yaml", gitops)])), false);
    assert.ok(
      validateValues.errors.some((e) => e.keyword === "minLength" && e.instancePath === "/curve/existingSecret"),
      JSON.stringify(validateValues.errors),
    );
    for (const good of [`${gitops}curve: {existingSecret: my-curve}\n`, `${gitops}curve: {enabled: false}\n`]) {
      assert.ok(validateValues(mergedValues([writeTemp("g.yaml", good)])), `${good}${JSON.stringify(validateValues.errors)}`);
    }
  });

  it("fails the render with what to do when the chart would generate the key", () => {
    const result = runRenderer(["--strict", "--release", RELEASE, "-f", writeTemp("g.yaml", gitops), chartDir]);
    assert.notEqual(result.status, 0);
    assert.match(
      result.stderr,
      /execution error at \(loads\/templates\/[^)]+\): auth\.generate is false \(the GitOps mode: the chart generates nothing random\) but curve\.enabled without curve\.existingSecret would make the chart generate the controller's CURVE key on every render: .*controller\.key.*curve\.existingSecret, or set curve\.enabled=false/,
    );
  });

  it("renders identically with curve.existingSecret (examples/gitops.yaml) or without CURVE", () => {
    const example = path.join(chartDir, "examples/gitops.yaml");
    assert.equal(mergedValues([example]).curve.existingSecret, "loads-curve");
    const options = { release: RELEASE, namespace: NAMESPACE, valueFiles: [example] };
    assert.equal(renderText(options), renderText(options));
    const off = `${gitops}curve: {enabled: false}\n`;
    assert.equal(textWith(off), textWith(off));
  });
});

describe("curve.enabled=false", () => {
  const docs = renderWith("curve:\n  enabled: false\nworker:\n  enabled: true\n");

  it("renders no Secret, no Role, no flag, no volume and no checksum of CURVE", () => {
    for (const kind of ["Secret", "Role", "RoleBinding"]) assert.equal(objectOf(docs, kind, `${FULLNAME}-curve`), undefined, kind);
    for (const deployment of [controllerOf(docs), workersOf(docs)]) {
      const spec = deployment.spec.template.spec;
      const [container] = spec.containers;
      assert.deepEqual(container.args.filter((a) => a.startsWith("--curve")), [], deployment.metadata.name);
      assert.equal(spec.volumes.find((v) => v.name === "curve"), undefined);
      assert.equal(container.volumeMounts.find((m) => m.name === "curve"), undefined);
      assert.ok(!("checksum/curve" in (deployment.spec.template.metadata.annotations ?? {})));
    }
    assert.ok(!docs.some((d) => d.object.kind === "Role" && JSON.stringify(d.object.rules).includes("secrets")));
    assert.match(renderNotes({ release: RELEASE, namespace: NAMESPACE, valueFiles: [writeTemp("n.yaml", "curve:\n  enabled: false\n")] }), /WARNING: curve\.enabled is false: the worker endpoint/);
  });

  it("gives the controller no API credentials at all without the launcher either", () => {
    const bare = renderWith("curve:\n  enabled: false\nlauncher:\n  enabled: false\n");
    assert.equal(controllerOf(bare).spec.template.spec.automountServiceAccountToken, false);
    assert.equal(objectOf(bare, "ServiceAccount", CONTROLLER).automountServiceAccountToken, false);
    assert.equal(bare.filter((d) => ["Role", "RoleBinding"].includes(d.object.kind)).length, 0);
    // With CURVE and no launcher: the token is mounted for the key writer, and its Role only.
    const curveOnly = renderWith("launcher:\n  enabled: false\n");
    assert.equal(controllerOf(curveOnly).spec.template.spec.automountServiceAccountToken, true);
    assert.equal(objectOf(curveOnly, "ServiceAccount", CONTROLLER).automountServiceAccountToken, true);
    assert.deepEqual(curveOnly.filter((d) => d.object.kind === "Role").map((d) => d.object.metadata.name), [`${FULLNAME}-curve`]);
  });
});

describe("CURVE values the chart refuses", () => {
  const renderFails = (text) => runRenderer(["--strict", "--release", RELEASE, "-f", writeTemp("v.yaml", text), chartDir]);

  it("needs a ServiceAccount that is not default, launcher or not", () => {
    const none = renderFails("launcher: {enabled: false}\nserviceAccount: {create: false}\n");
    assert.notEqual(none.status, 0);
    assert.match(none.stderr, /curve\.enabled needs a ServiceAccount to bind its Role to \(the controller writes its public key into the Secret demo-loads-curve at start\)/);
    const dflt = renderFails("launcher: {enabled: false}\nserviceAccount: {create: false, name: default}\n");
    assert.notEqual(dflt.status, 0);
    assert.match(dflt.stderr, /serviceAccount\.name is "default": the Role that reads and patches the Secret demo-loads-curve .* every pod of the namespace/);
    // An existing account of another name is bound.
    const named = renderWith("launcher: {enabled: false}\nserviceAccount: {create: false, name: loads-sa}\n");
    assert.equal(objectOf(named, "ServiceAccount", "loads-sa"), undefined);
    assert.deepEqual(objectOf(named, "RoleBinding", `${FULLNAME}-curve`).subjects, [{ kind: "ServiceAccount", name: "loads-sa", namespace: NAMESPACE }]);
    assert.equal(controllerOf(named).spec.template.spec.serviceAccountName, "loads-sa");
  });

  it("refuses extra volumes named curve", () => {
    const controller = renderFails("controller:\n  extraVolumes:\n    - name: curve\n      emptyDir: {}\n");
    assert.match(controller.stderr, /controller\.extraVolumes: the name "curve" is one of the chart's volumes/);
    const worker = renderFails("worker:\n  enabled: true\n  extraVolumes:\n    - name: curve\n      emptyDir: {}\n");
    assert.match(worker.stderr, /worker\.extraVolumes: the name "curve" is one of the chart's volumes \(tokens, tmp, metrics-token, curve\)/);
  });

  const bad = [
    ["curve.enabled as a string", "curve:\n  enabled: \"no\"\n", "type", "/curve/enabled"],
    ["an unknown key under curve", "curve:\n  secretName: x\n", "additionalProperties", "/curve"],
    ["a CURVE Secret name in capitals", "curve:\n  existingSecret: My-Curve\n", "pattern", "/curve/existingSecret"],
    ["a removed curve section", "curve: null\n", "required", ""],
  ];
  for (const [what, text, keyword, instancePath] of bad) {
    it(`refuses ${what} (values.schema.json)`, () => assertSchemaRefuses(text, keyword, instancePath));
  }
});

// The environment without the Kubernetes service variables (a pod's), so that the controller
// cannot take this machine for a pod.
function envOutsideKubernetes() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("KUBERNETES_")));
}

// Starts a process; resolves the first stdout line matching `ready` (with the process), rejects
// when it exits first or after 15 s.
function startUntil(command, args, ready, env = envOutsideKubernetes()) {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env });
  let output = "";
  const line = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command} did not get ready:\n${output}`)), 15000);
    child.stdout.on("data", (chunk) => {
      output += chunk;
      const match = ready.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match);
      }
    });
    child.stderr.on("data", (chunk) => (output += chunk));
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${command} exited (${code}):\n${output}`));
    });
  });
  return { child, line, output: () => output };
}

describe("the rendered CURVE flags with the real binaries", () => {
    const workerBin = path.join(binDir, "loads-worker");
  const runnerBin = path.join(binDir, "loads-runner");
  const haveBinaries = [controllerBin, workerBin, runnerBin].every((f) => existsSync(f));
  const docs = renderWith("worker:\n  enabled: true\n");
  const controllerArgs = controllerOf(docs).spec.template.spec.containers[0].args;
  const workerArgs = workersOf(docs).spec.template.spec.containers[0].args;
  const keys = decoded(objectOf(docs, "Secret", SECRET));
  const tokens = decoded(objectOf(docs, "Secret", `${FULLNAME}-tokens`));
  // The chart's CURVE flags, their files under a temporary root.
  const root = mkdtempSync(path.join(scratchDir(), "root-"));
  const place = (file, text) => {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), text, { mode: 0o440 });
    return path.join(root, file);
  };
  const curveFlags = () => {
    const flags = flagsOf(controllerArgs);
    return [
      "--curve-key-file",
      place(flags["--curve-key-file"], keys["controller.key"]),
      "--curve-any-worker",
      "--curve-public-key-secret",
      flags["--curve-public-key-secret"],
    ];
  };

  it("are listed by --help", (t) => {
    const controllerHelp = helpFlags(binDir, "loads-controller");
    const workerHelp = helpFlags(binDir, "loads-worker");
    if (!controllerHelp || !workerHelp) return t.skip(`no loads-controller or loads-worker in ${binDir}`);
    for (const flag of ["--curve-key-file", "--curve-any-worker", "--curve-public-key-secret"]) {
      assert.ok(controllerArgs.includes(flag), flag);
      assert.ok(controllerHelp.has(flag), `loads-controller --help does not list ${flag}`);
    }
    assert.ok(workerArgs.includes("--curve-server-key-file"));
    assert.ok(workerHelp.has("--curve-server-key-file"), "loads-worker --help does not list --curve-server-key-file");
  });

  it("are accepted by loads-controller with the launcher up to the Kubernetes API, which it needs", (t) => {
    if (!haveBinaries) return t.skip(`no binaries in ${binDir}`);
    const args = ["--launcher", "kubernetes", "--worker-image", "x", "--advertise", "tcp://192.0.2.1:1", "--no-state", ...curveFlags()];
    const result = spawnSync(controllerBin, args, { encoding: "utf8", env: envOutsideKubernetes(), timeout: 20000 });
    assert.notEqual(result.status, 0, result.stderr);
    assert.match(result.stderr, /not in a Kubernetes pod/);
    assert.doesNotMatch(result.stderr, /key file|Z85|--curve-any-worker/, "the key or the flags were refused");
  });

  it("refuse a swapped mount: the worker will not take controller.key for the public key", (t) => {
    if (!haveBinaries) return t.skip(`no binaries in ${binDir}`);
    const swapped = place("/swapped/controller.key", keys["controller.key"]);
    const result = spawnSync(workerBin, ["--controller", "tcp://127.0.0.1:1", "--curve-server-key-file", swapped], { encoding: "utf8", timeout: 20000 });
    assert.equal(result.status, 2, result.stderr);
    assert.match(result.stderr, /holds a secret key/);
  });

  it("work: the controller writes its public key into the Secret (a fake API server), a worker with it as mounted registers", async (t) => {
    if (!haveBinaries) return t.skip(`no binaries in ${binDir}`);
    // The fake API server serves HTTPS with the chart's own generated certificate (it names
    // 127.0.0.1), and knows the CURVE Secret as Helm created it (controller.key and no public-key;
    // the fake cannot hold a value with a colon, so a stand-in key is seeded: the controller reads
    // none of it).
    const tls = decoded(objectOf(docs, "Secret", `${FULLNAME}-tls`));
    const serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount";
    place(`${serviceAccount}/ca.crt`, tls["ca.crt"]);
    place(`${serviceAccount}/token`, "sa-token\n");
    place(`${serviceAccount}/namespace`, `${NAMESPACE}\n`);
    const fakeDir = mkdtempSync(path.join(scratchDir(), "fake-"));
    const fake = startUntil("node", [
      path.join(repoRoot, "tests/k8s/fake_apiserver.mjs"),
      "--cert", writeTemp("tls.crt", tls["tls.crt"]),
      "--key", writeTemp("tls.key", tls["tls.key"]),
      "--token", "sa-token",
      "--worker-bin", workerBin,
      "--scratch", fakeDir,
      "--secret", `${SECRET}:helm=1`,
    ], /^\{"port":(\d+)\}$/m);
    const children = [fake.child];
    try {
      const api = `https://127.0.0.1:${(await fake.line)[1]}`;
      // The fake's CA is the chart's.
      const getJSON = (url) =>
        new Promise((resolve, reject) => {
          https
            .get(url, { ca: tls["ca.crt"] }, (res) => {
              let body = "";
              res.on("data", (c) => (body += c));
              res.on("end", () => resolve(JSON.parse(body)));
            })
            .on("error", reject);
        });
      // The controller: the chart's CURVE and token flags, loopback addresses, no launcher.
      const flags = flagsOf(controllerArgs);
      const controller = startUntil(controllerBin, [
        "--grpc", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*",
        "--metrics", "127.0.0.1:0", "--no-state", "--max-local-workers", "0",
        "--token-file", place(flags["--token-file"], tokens["worker-token"]),
        ...curveFlags(),
        "--kubernetes-api", api, "--service-account-dir", path.join(root, serviceAccount),
      ], /^loads-controller listening: (.*)$/m);
      children.push(controller.child);
      const listening = Object.fromEntries([...(await controller.line)[1].matchAll(/(\w+) (\S+)/g)].map(([, k, v]) => [k, v]));
      // Written before it listens, derived from the rendered key, other keys of the Secret kept.
      const secrets = await getJSON(`${api}/fake/secrets`);
      const expected = `${curvePublic(keys["controller.key"].slice(8, 48))}\n`;
      assert.deepEqual(secrets[SECRET], { helm: "1", "public-key": expected });
      // A standing worker with the chart's flags: public-key as the kubelet mounts it.
      const workerFlags = flagsOf(workerArgs);
      const worker = spawn(workerBin, [
        "--controller", listening.zmq, "--id", "standing-1",
        "--token-file", place(`/worker${workerFlags["--token-file"]}`, tokens["worker-token"]),
        "--curve-server-key-file", place(workerFlags["--curve-server-key-file"], secrets[SECRET]["public-key"]),
      ], { stdio: ["ignore", "ignore", "pipe"] });
      children.push(worker);
      let workerErr = "";
      worker.stderr.on("data", (c) => (workerErr += c));
      const deadline = Date.now() + 15000;
      let ping;
      do {
        await new Promise((resolve) => setTimeout(resolve, 200));
        ping = spawnSync(runnerBin, ["--controller", listening.grpc, "--ping"], { encoding: "utf8", timeout: 10000 });
      } while (!ping.stdout.includes("standing-1") && Date.now() < deadline);
      assert.ok(ping.stdout.includes("standing-1"), `the worker did not register:\n${ping.stdout}${ping.stderr}\n${workerErr}\n${controller.output()}`);
    } finally {
      for (const child of children.reverse()) await stop(child);
    }
  });
});
