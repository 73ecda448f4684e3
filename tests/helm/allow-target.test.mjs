// controller.allowTargets of the chart helm/loads, rendered by tools/helm-render (not Helm; see
// lib.mjs): the hosts runs may send requests to, one `loads-controller --allow-target` per pattern
// (docs/security.md). By default the cluster's own Services ("*.svc", "*.svc.cluster.local"); an
// empty list passes no flag (any host) and NOTES.txt warns. values.schema.json checks the patterns
// loosely (strings of the characters a pattern may hold, 261 at most, 100 at most, no duplicate);
// the real loads-controller is the final judge: every rendered list (defaults, every example,
// all-options.yaml, every pattern form) must get past its option checks, and a pattern the schema
// lets through but the controller cannot read must stop it, naming the pattern.
//
// The `helm test` pod's run goes to <fullname>-test-run.<namespace>.svc:8080 (a headless Service
// of the test pod): with tests.enabled, rendering fails when the list does not allow it. The
// template's verdict (loads.allowsTarget) is checked against the real controller's: started with
// the rendered flags, it must accept StartRun for that URL exactly when the chart renders (it then
// answers that no worker is idle) and refuse it otherwise (PERMISSION_DENIED, "not an allowed
// target").
//
//   node --test tests/helm/allow-target.test.mjs   (LOADS_HELM_RENDER: a built renderer;
//                                                   LOADS_BIN_DIR: the binaries, default build/bin)

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";

import {
  binDir,
  chartCases,
  chartDir,
  CONTROLLER,
  controllerBin,
  flagsOf,
  FULLNAME,
  mergedValues,
  NAMESPACE,
  RELEASE,
  render,
  renderNotes,
  repoRoot,
  runRenderer,
  schema,
  stop,
  validateValues,
  writeTemp,
} from "./lib.mjs";

const TEST_HOST = `${FULLNAME}-test-run.${NAMESPACE}.svc`;
const DEFAULT_PATTERNS = ["*.svc", "*.svc.cluster.local"];
const runnerBin = path.join(binDir, "loads-runner");
const haveBinaries = existsSync(controllerBin) && existsSync(runnerBin);

// A values file setting controller.allowTargets (JSON is YAML), and more YAML lines.
function allowFile(patterns, ...lines) {
  return writeTemp("allow.yaml", [`controller: {allowTargets: ${JSON.stringify(patterns)}}`, ...lines, ""].join("\n"));
}

function controllerArgs(docs, name = CONTROLLER) {
  const deployment = docs.map((d) => d.object).find((o) => o.kind === "Deployment" && o.metadata.name === name);
  assert.ok(deployment, `no Deployment ${name}`);
  return deployment.spec.template.spec.containers[0].args;
}

// The values of every --allow-target of ARGS, in order.
function allowTargetsOf(args) {
  return args.flatMap((arg, i) => (arg === "--allow-target" ? [args[i + 1]] : []));
}

// What helm-render prints for these values: {status, stderr}.
function tryRender(files) {
  return runRenderer(["--strict", "--release", RELEASE, "--namespace", NAMESPACE, ...files.flatMap((f) => ["-f", f]), chartDir]);
}

// The environment of a process outside any pod: without the Kubernetes service variables.
function envOutsideKubernetes() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("KUBERNETES_")));
}

// Runs BINARY with ARGS until it exits (20 s at most): {code, output}.
function runToExit(binary, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"], env: envOutsideKubernetes() });
    let output = "";
    child.stdout.on("data", (c) => (output += c));
    child.stderr.on("data", (c) => (output += c));
    const timer = setTimeout(() => child.kill("SIGKILL"), 20000);
    child.on("error", reject);
    // "close", not "exit": the output is all read then.
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output });
    });
  });
}

// loads-controller with the Kubernetes launcher and these --allow-target flags, outside a pod: it
// reads every option first, then stops at the Kubernetes API it cannot find.
function launcherController(allowArgs) {
  return runToExit(controllerBin, [
    "--grpc", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*", "--metrics", "127.0.0.1:0",
    "--launcher", "kubernetes", "--worker-image", "x", "--advertise", "tcp://192.0.2.1:1", "--no-state",
    ...allowArgs,
  ]);
}

// loads-controller on loopback with these --allow-target flags, no worker and no launcher; resolves
// {child, grpc} once it listens.
function listeningController(allowArgs) {
  const child = spawn(
    controllerBin,
    ["--grpc", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*", "--metrics", "127.0.0.1:0",
      "--no-state", "--max-local-workers", "0", ...allowArgs],
    { stdio: ["ignore", "pipe", "pipe"], env: envOutsideKubernetes() },
  );
  let output = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`loads-controller did not start:\n${output}`)), 15000);
    const read = (chunk) => {
      output += chunk;
      const line = /^loads-controller listening: grpc (\S+)/m.exec(output);
      if (line) {
        clearTimeout(timer);
        resolve({ child, grpc: line[1] });
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.on("exit", (code) => reject(new Error(`loads-controller exited (${code}):\n${output}`)));
  });
}

// The URL of the `helm test` pod's run, from its rendered script.
function testPodUrl(docs) {
  const pod = docs.map((d) => d.object).find((o) => o.kind === "Pod" && o.metadata.name === `${FULLNAME}-test-run`);
  assert.ok(pod, "no test pod");
  const script = pod.spec.containers[0].command[2].replace(/\\\n\s*/g, " ");
  return /--url "([^"]+)"/.exec(script)[1];
}

describe("controller.allowTargets by default", () => {
  const docs = render({ release: RELEASE, namespace: NAMESPACE });

  it("is the cluster's Services: *.svc and *.svc.cluster.local", () => {
    assert.deepEqual(mergedValues().controller.allowTargets, DEFAULT_PATTERNS);
  });

  it("renders one --allow-target per pattern, in order", () => {
    const args = controllerArgs(docs);
    assert.deepEqual(allowTargetsOf(args), DEFAULT_PATTERNS);
    assert.deepEqual(flagsOf(args)["--allow-target"], DEFAULT_PATTERNS);
  });

  it("comes before controller.extraArgs, so that extra flags still come last", () => {
    const extra = ["--max-runs", "7"];
    const args = controllerArgs(render({ valueFiles: [writeTemp("extra.yaml", `controller: {extraArgs: ${JSON.stringify(extra)}}\n`)], release: RELEASE, namespace: NAMESPACE }));
    assert.deepEqual(args.slice(-2), extra);
    assert.ok(args.lastIndexOf("--allow-target") < args.length - 2);
  });

  it("aims the `helm test` pod's run at a .svc name the list allows", () => {
    assert.equal(testPodUrl(docs), `http://${TEST_HOST}:8080/`);
  });

  it("is named in NOTES.txt, without a warning", () => {
    const notes = renderNotes({ release: RELEASE, namespace: NAMESPACE });
    assert.ok(notes.includes("runs may send requests only to the hosts of controller.allowTargets (*.svc, *.svc.cluster.local)"), notes);
    assert.ok(notes.includes("name a Service SERVICE.NAMESPACE.svc"), notes);
    assert.ok(!notes.includes("WARNING: controller.allowTargets is empty"), notes);
  });
});

describe("controller.allowTargets: []", () => {
  const files = [allowFile([])];

  it("passes no --allow-target (any host), and NOTES.txt warns", () => {
    const docs = render({ valueFiles: files, release: RELEASE, namespace: NAMESPACE });
    assert.ok(!controllerArgs(docs).includes("--allow-target"));
    // The test pod's run is allowed then too.
    assert.equal(testPodUrl(docs), `http://${TEST_HOST}:8080/`);
    const notes = renderNotes({ valueFiles: files, release: RELEASE, namespace: NAMESPACE });
    assert.ok(notes.includes("WARNING: controller.allowTargets is empty: runs may send requests to any host"), notes);
    assert.ok(!notes.includes("Targets: runs may send"), notes);
  });
});

// Every pattern form of target_allow.h, as a list the `helm test` pod's target is allowed by.
const EVERY_FORM = [
  "*.svc",
  "example.com",
  "Example.COM:8080",
  "*.example.org",
  "*.example.net:443",
  "10.1.2.3",
  "10.1.2.4:80",
  "[::1]",
  "[::1]:8080",
  "2001:db8::1",
  "10.0.0.0/8",
  "fd00::/8",
  "[fd00::/8]:80",
  "host_name.example.com",
];

describe("controller.allowTargets in values.schema.json", () => {
  const errorsOf = (patterns) => {
    const values = mergedValues([allowFile(patterns)]);
    return validateValues(values) ? [] : validateValues.errors;
  };

  it("accepts every pattern form, an empty list and 100 patterns", () => {
    for (const patterns of [EVERY_FORM, [], Array.from({ length: 100 }, (_, i) => `host${i}.example.com`), ["a".repeat(253)], [`*.${"a".repeat(253)}:65535`]]) {
      assert.deepEqual(errorsOf(patterns), [], JSON.stringify(patterns).slice(0, 100));
    }
  });

  const bad = [
    ["a string instead of a list", "*.svc", "type", "/controller/allowTargets"],
    ["a number", [8080], "type", "/controller/allowTargets/0"],
    ["an empty pattern", [""], "minLength", "/controller/allowTargets/0"],
    ["a pattern with a space", ["example.com 8080"], "pattern", "/controller/allowTargets/0"],
    ["a pattern with a leading space", [" example.com"], "pattern", "/controller/allowTargets/0"],
    ["two patterns in one", ["a.example.com,b.example.com"], "pattern", "/controller/allowTargets/0"],
    ["a URL", ["https://example.com/"], "not", "/controller/allowTargets/0"],
    ["a pattern of 262 characters", [`*.${"a".repeat(254)}:65535`], "maxLength", "/controller/allowTargets/0"],
    ["a pattern twice", ["*.svc", "*.svc"], "uniqueItems", "/controller/allowTargets"],
    ["101 patterns (the workers refuse more than 100)", Array.from({ length: 101 }, (_, i) => `host${i}.example.com`), "maxItems", "/controller/allowTargets"],
  ];
  for (const [what, patterns, keyword, instancePath] of bad) {
    it(`refuses ${what}`, () => {
      const errors = errorsOf(patterns);
      assert.ok(
        errors.some((e) => e.keyword === keyword && e.instancePath === instancePath),
        JSON.stringify(errors, null, 2),
      );
    });
  }
});

// values.yaml, every example, all-options.yaml, and a list of every pattern form.
const cases = [...chartCases, { name: "every pattern form", files: [allowFile(EVERY_FORM)] }];

describe("the rendered --allow-target flags with the real loads-controller", { concurrency: true }, () => {
  for (const testCase of cases) {
    it(`accepts every pattern of ${testCase.name}`, async (t) => {
      if (!haveBinaries) return t.skip(`no binaries in ${binDir}`);
      const values = mergedValues(testCase.files);
      assert.ok(validateValues(values), JSON.stringify(validateValues.errors, null, 2));
      // The names of the release's objects: all-options.yaml has its own.
      const fullname = values.fullnameOverride || FULLNAME;
      const args = controllerArgs(render({ valueFiles: testCase.files, release: RELEASE, namespace: NAMESPACE }), `${fullname}-controller`);
      const patterns = allowTargetsOf(args);
      assert.deepEqual(patterns, values.controller.allowTargets);
      const allowArgs = patterns.flatMap((p) => ["--allow-target", p]);
      const result = await launcherController(allowArgs);
      assert.doesNotMatch(result.output, /invalid value for --allow-target/, `refused:\n${allowArgs.join(" ")}\n${result.output}`);
      // Past every option, it stops where a controller outside Kubernetes must.
      assert.match(result.output, /not in a Kubernetes pod/, `exited (${result.code}) otherwise:\n${result.output}`);
      assert.notEqual(result.code, 0);
    });
  }

  // What the schema lets through is not all the controller reads: it refuses these, naming them.
  const unreadable = [
    ["a network prefix above 32", "10.0.0.0/33"],
    ["port 0", "example.com:0"],
    ["a * inside a name", "a*b.example.com"],
    ["a [ without its ]", "[::1"],
  ];
  for (const [what, pattern] of unreadable) {
    it(`stops at ${what}, which the schema lets through (the controller is the final judge)`, async (t) => {
      if (!haveBinaries) return t.skip(`no binaries in ${binDir}`);
      const files = [allowFile(["*.svc", pattern])];
      assert.ok(validateValues(mergedValues(files)), JSON.stringify(validateValues.errors, null, 2));
      const patterns = allowTargetsOf(controllerArgs(render({ valueFiles: files, release: RELEASE, namespace: NAMESPACE })));
      assert.deepEqual(patterns, ["*.svc", pattern]);
      const result = await launcherController(patterns.flatMap((p) => ["--allow-target", p]));
      assert.notEqual(result.code, 0);
      assert.ok(result.output.includes(`invalid value for --allow-target: '${pattern}'`), result.output);
      assert.doesNotMatch(result.output, /not in a Kubernetes pod/);
    });
  }
});

// Lists, and whether they allow the `helm test` pod's target <fullname>-test-run.perf.svc:8080.
const TEST_TARGET_CASES = [
  [DEFAULT_PATTERNS, true],
  [["*.SVC"], true],
  [["*.perf.svc"], true],
  [[TEST_HOST], true],
  [[`${TEST_HOST}:8080`], true],
  [["api.example.com", "*.Perf.Svc:8080"], true],
  [[], true],
  [[`${TEST_HOST}:80`], false],
  [["*.svc:80"], false],
  [["perf.svc"], false],
  [[`*.${TEST_HOST}`], false],
  [["*.svc.cluster.local"], false],
  [["api.example.com"], false],
  // Addresses and networks never allow a name.
  [["10.0.0.0/8", "0.0.0.0/0", "::/0", "[::1]:8080"], false],
];

describe("the `helm test` pod's target and controller.allowTargets", () => {
  it("fails the render, naming what to add, when the list does not allow the test pod's run", () => {
    const result = tryRender([allowFile(["api.example.com", "10.0.0.0/8"])]);
    assert.notEqual(result.status, 0);
    assert.match(
      result.stderr,
      /execution error at \(loads\/templates\/tests\/test-run-pod\.yaml:\d+:\d+\): controller\.allowTargets \(api\.example\.com, 10\.0\.0\.0\/8\) does not allow demo-loads-test-run\.perf\.svc:8080, where the `helm test` pod's run goes \(the controller would refuse it\): add "\*\.svc" \(the default\), "\*\.perf\.svc" or "demo-loads-test-run\.perf\.svc" to the list, or set tests\.enabled=false/,
    );
    // Without the test pod, any list renders.
    assert.equal(tryRender([allowFile(["api.example.com"], "tests: {enabled: false}")]).status, 0);
  });

  it("names the test pod's target in the namespace it is installed in (namespaceOverride)", () => {
    const result = tryRender([allowFile(["*.perf.svc"], "namespaceOverride: load-testing")]);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /does not allow demo-loads-test-run\.load-testing\.svc:8080/);
    assert.equal(tryRender([allowFile(["*.load-testing.svc"], "namespaceOverride: load-testing")]).status, 0);
  });

  describe("renders exactly when the real controller accepts the test pod's run", { concurrency: true }, () => {
    const url = testPodUrl(render({ release: RELEASE, namespace: NAMESPACE }));
    for (const [patterns, allowed] of TEST_TARGET_CASES) {
      it(`${JSON.stringify(patterns)}: ${allowed ? "allowed" : "refused"}`, async (t) => {
        const rendered = tryRender([allowFile(patterns)]);
        assert.equal(rendered.status === 0, allowed, rendered.stderr);
        if (!allowed) assert.match(rendered.stderr, /does not allow demo-loads-test-run\.perf\.svc:8080/);
        if (!haveBinaries) return t.skip(`no binaries in ${binDir}`);
        // The flags as rendered (without the test pod, which a refused list would not render).
        const args = controllerArgs(render({ valueFiles: [allowFile(patterns, "tests: {enabled: false}")], release: RELEASE, namespace: NAMESPACE }));
        const allowArgs = allowTargetsOf(args).flatMap((p) => ["--allow-target", p]);
        const { child, grpc } = await listeningController(allowArgs);
        try {
          const run = spawnSync(runnerBin, ["--controller", grpc, "--url", url, "-u", "1", "--hits", "1", "--workers", "1"], {
            encoding: "utf8",
            timeout: 20000,
            env: envOutsideKubernetes(),
          });
          const output = run.stdout + run.stderr;
          assert.notEqual(run.status, 0, output);
          if (allowed) {
            // Accepted as a target; no worker to run it on.
            assert.match(output, /needs 1 workers, 0 idle, and no launcher is configured/, output);
          } else {
            assert.ok(output.includes(`spec.url: ${url} is not an allowed target of this controller (--allow-target)`), output);
          }
        } finally {
          await stop(child);
        }
      });
    }
  });
});

describe("controller.allowTargets in the documentation", () => {
  it("is a row of README.md and of docs/names.md, and explains the default in values.yaml", () => {
    const readme = readFileSync(path.join(chartDir, "README.md"), "utf8");
    assert.ok(readme.includes('| `controller.allowTargets` | `["*.svc", "*.svc.cluster.local"]` |'), "README.md row");
    const names = readFileSync(path.join(repoRoot, "docs/names.md"), "utf8");
    assert.match(names, /^\| hosts runs may send requests to \|.*`loads-controller --allow-target`.*\| `controller\.allowTargets` \|/m);
    const values = readFileSync(path.join(chartDir, "values.yaml"), "utf8");
    assert.match(values, /Names are matched as written in the URL, not\n\s*# resolved/);
    const security = readFileSync(path.join(repoRoot, "docs/security.md"), "utf8");
    assert.ok(security.includes("controller.allowTargets"), "docs/security.md");
  });
});
