// One rule for resource quantities: the chart's schema (definition "quantity") must accept
// exactly what loads-controller accepts, or an install that Helm and Kubernetes took would
// crash-loop on the controller's flag check. Both sides are tested against the same table,
// tests/testdata/quantities.json (the C++ side in tests/unit/launcher_test.cc), and every
// accepted value is rendered into the controller's flags and given to the real binary.
//
//   node --test quantities.test.mjs   (LOADS_HELM_RENDER, LOADS_BIN_DIR as for chart.test.mjs)

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";

import Ajv from "ajv";
import yaml from "js-yaml";

import {
  binDir,
  flagsOf,
  render,
  repoRoot,
  schema,
  writeTemp,
} from "./lib.mjs";

const table = JSON.parse(readFileSync(path.join(repoRoot, "tests/testdata/quantities.json"), "utf8"));

const validateQuantity = new Ajv({ strict: true, allErrors: true }).compile({
  ...schema.definitions.quantity,
  definitions: schema.definitions,
});

// The controller's flags for a launcher with these values, as the chart renders them.
function renderedLauncherFlags(launcher, name) {
  const file = writeTemp(`${name}.yaml`, yaml.dump({ launcher }));
  const docs = render({ valueFiles: [file] });
  const deployment = docs.find((d) => d.object?.kind === "Deployment" &&
    d.object.metadata.labels?.["app.kubernetes.io/component"] === "controller");
  assert.ok(deployment, "no controller Deployment rendered");
  const container = deployment.object.spec.template.spec.containers.find((c) => c.name === "controller");
  return flagsOf(container.args);
}

// Runs loads-controller with the launcher flags only: past its option check it stops at the
// launcher's own start ("not in a Kubernetes pod"), which proves every flag was accepted.
function controllerVerdict(cpu, memory) {
  const args = ["--launcher", "kubernetes", "--worker-image", "example/loads-worker:1",
                "--advertise", "tcp://192.0.2.1:5555", "--no-state",
                "--worker-cpu", cpu, "--worker-memory", memory];
  const env = { ...process.env };
  delete env.KUBERNETES_SERVICE_HOST;
  const result = spawnSync(path.join(binDir, "loads-controller"), args, { encoding: "utf8", env, timeout: 10000 });
  return result.stderr;
}

describe("resource quantities: one rule for the schema and the controller", () => {
  it("has a table worth testing", () => {
    assert.ok(table.valid.length >= 20 && table.invalid.length >= 20);
  });

  for (const { text } of table.valid) {
    it(`the schema accepts ${JSON.stringify(text)}`, () => {
      assert.ok(validateQuantity(text), JSON.stringify(validateQuantity.errors));
    });
  }
  for (const text of table.invalid) {
    it(`the schema refuses ${JSON.stringify(text)}`, () => {
      assert.ok(!validateQuantity(text), `${JSON.stringify(text)} passed the schema`);
    });
  }

  it("refuses a negative number (YAML numbers are quantities too)", () => {
    assert.ok(validateQuantity(536870912));
    assert.ok(validateQuantity(0.5));
    assert.ok(!validateQuantity(-1));
  });

  it("renders every accepted value, numbers included, into flags the controller accepts", (t) => {
    if (!existsSync(path.join(binDir, "loads-controller"))) {
      t.skip(`no loads-controller in ${binDir}`);
      return;
    }
    // YAML numbers as a user writes them: Helm formats them as floats (5.36870912e+08).
    const values = [...table.valid.map((v) => v.text), 536870912, 0.5, 1e3, 2];
    values.forEach((value, i) => {
      const flags = renderedLauncherFlags({ workerCpu: value, workerMemory: value }, `q${i}`);
      const cpu = flags["--worker-cpu"];
      const memory = flags["--worker-memory"];
      assert.equal(typeof cpu, "string", `no --worker-cpu rendered for ${value}`);
      const stderr = controllerVerdict(cpu, memory);
      assert.match(stderr, /not in a Kubernetes pod/,
        `loads-controller refused the rendered --worker-cpu ${cpu} --worker-memory ${memory} (value ${value}):\n${stderr}`);
    });
  });

  it("and the controller refuses what the schema refuses", (t) => {
    if (!existsSync(path.join(binDir, "loads-controller"))) {
      t.skip(`no loads-controller in ${binDir}`);
      return;
    }
    for (const text of table.invalid.filter((q) => q !== "")) {
      const stderr = controllerVerdict(text, "256Mi");
      assert.match(stderr, /invalid value for --worker-cpu/, `loads-controller took --worker-cpu ${JSON.stringify(text)}`);
    }
  });
});
