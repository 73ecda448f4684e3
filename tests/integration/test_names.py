"""docs/names.md, the table of one name per concept, against the code: every proto field it
names exists in the proto, every flag in the --help of the binary it names, every Helm value in
the chart's values.yaml, every metric in docs/metrics.md and in the code that exports it, every
key in a JSON report the runner really writes.

Run: LOADS_BIN_DIR=build/bin /usr/bin/python3 -m unittest -v test_names   (from tests/integration)
"""

import os
import re
import subprocess
import sys
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COLUMNS = ["concept", "proto", "command line", "Helm value", "metric", "JSON report"]


def read(*path):
    with open(os.path.join(ROOT, *path)) as f:
        return f.read()


def table_rows():
    """[(concept, {column: [names]})] of every table of docs/names.md."""
    rows = []
    for line in read("docs", "names.md").splitlines():
        if not line.startswith("| ") or line.startswith("| concept") or line.startswith("|---"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != len(COLUMNS):
            raise AssertionError(f"a row of docs/names.md has {len(cells)} cells: {line}")
        names = {column: re.findall(r"`([^`]+)`", cell) for column, cell in zip(COLUMNS, cells)}
        rows.append((cells[0], names))
    return rows


def proto_fields():
    """{message: {field names}} of the proto."""
    fields = {}
    for match in re.finditer(r"^message (\w+) \{(.*?)^\}", read("proto", "loads", "v1",
                                                                  "controller.proto"),
                             re.MULTILINE | re.DOTALL):
        fields[match.group(1)] = set(re.findall(r"^\s+(?:repeated |optional )?[\w.]+ (\w+) = \d+",
                                                match.group(2), re.MULTILINE))
    return fields


def help_flags(binary):
    result = subprocess.run([harness.binary(binary), "--help"], capture_output=True, text=True,
                            timeout=10)
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", result.stdout + result.stderr))


def json_paths(value, prefix=""):
    paths = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            paths |= json_paths(item, path)
    return paths


class NamesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rows = table_rows()
        cls.proto = proto_fields()
        cls.flags = {name: help_flags(name)
                     for name in ("loads-runner", "loads-worker", "loads-controller")}
        cls.values = yaml.safe_load(read("helm", "loads", "values.yaml"))
        cls.metrics_doc = read("docs", "metrics.md")
        cls.metrics_code = read("controller", "src", "metrics.cc") + read("worker", "src",
                                                                         "zmq_worker.cc")
        # A real report: one request to a closed port.
        with harness.ClosedPort() as closed:
            result = harness.run_runner(["--url", closed.url, "--hits", "1"])
        cls.report_paths = json_paths(result.report)

    def test_the_table_is_read(self):
        self.assertGreaterEqual(len(self.rows), 30)

    def test_proto_fields_exist(self):
        for concept, names in self.rows:
            for name in names["proto"]:
                message, field = name.split(".")
                self.assertIn(field, self.proto.get(message, set()), f"{concept}: {name}")

    def test_flags_are_in_the_help(self):
        for concept, names in self.rows:
            for name in names["command line"]:
                binary, flag = name.split(" ")
                self.assertIn(flag, self.flags[binary], f"{concept}: {name}")

    def test_helm_values_exist(self):
        for concept, names in self.rows:
            for name in names["Helm value"]:
                node = self.values
                for part in name.split("."):
                    self.assertIsInstance(node, dict, f"{concept}: {name}")
                    self.assertIn(part, node, f"{concept}: {name}")
                    node = node[part]

    def test_metrics_are_documented_and_exported(self):
        for concept, names in self.rows:
            for name in names["metric"]:
                self.assertIn(f"| `{name}` |", self.metrics_doc, f"{concept}: {name}")
                self.assertIn(f'"{name}"', self.metrics_code, f"{concept}: {name}")

    def test_report_keys_exist(self):
        for concept, names in self.rows:
            for name in names["JSON report"]:
                self.assertIn(name, self.report_paths, f"{concept}: {name}")


if __name__ == "__main__":
    unittest.main()
