"""The container images, end to end (slow, opt-in: see docker/README.md).

Builds loads-controller, loads-worker and loads-runner with scripts/build-images.sh, then runs
them: with buildah (`buildah from` + `buildah run --isolation chroot --network host`) when no
Docker daemon answers, else with `docker run --network host`. Both share the host's network, so
servers started in one image are reached from another on 127.0.0.1.

Checks: every binary's --version in every image; the user (10001:10001), entry point, exposed
ports and labels; no compiler and no apt lists or package files; every library resolved; a
local run (loads-runner --url) inside the worker image against loads-demo-target from the
runner image; a distributed run where the worker image loads the example test library that the
runner ships through the controller.

Environment: LOADS_IMAGE_TEST_NO_BUILD=1 tests the images already built;
LOADS_IMAGE_TAG and LOADS_IMAGE_PREFIX as for scripts/build-images.sh.

Run: /usr/bin/python3 -m unittest -v test_images   (from tests/images, as root)
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import unittest
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
UID = "10001"


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt"), encoding="utf-8") as f:
        return re.search(r"project\(loads VERSION ([0-9.]+)", f.read()).group(1)


VERSION = project_version()
TAG = os.environ.get("LOADS_IMAGE_TAG") or VERSION
PREFIX = os.environ.get("LOADS_IMAGE_PREFIX", "localhost/")
IMAGES = {name: f"{PREFIX}loads-{name}:{TAG}" for name in ("controller", "worker", "runner")}
BINARIES = {
    "controller": ["loads-controller", "loads-worker"],
    "worker": ["loads-worker", "loads-runner"],
    "runner": ["loads-runner", "loads-demo-target"],
}
ENTRYPOINTS = {
    "controller": ["loads-controller"],
    "worker": ["loads-worker"],
    "runner": ["loads-runner"],
}
EXPOSED = {
    "controller": {"50051/tcp", "5555/tcp", "5556/tcp", "9464/tcp"},
    "worker": {"9465/tcp"},
    "runner": set(),
}


def docker_daemon():
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


class Buildah:
    """Runs commands in working containers made from the images, one per image."""

    def __init__(self):
        self.containers = {}

    def _container(self, image):
        if image not in self.containers:
            out = subprocess.run(["buildah", "from", "--pull=never", "--quiet", image],
                                 check=True, capture_output=True, text=True).stdout
            self.containers[image] = out.strip()
        return self.containers[image]

    def command(self, image, argv):
        return ["buildah", "run", "--isolation", "chroot", "--network", "host",
                self._container(image), "--"] + list(argv)

    def config(self, image):
        out = subprocess.run(["buildah", "inspect", "--type", "image", image],
                             check=True, capture_output=True, text=True).stdout
        config = json.loads(out)["OCIv1"]["config"]
        return {"User": config.get("User", ""), "Entrypoint": config.get("Entrypoint"),
                "ExposedPorts": config.get("ExposedPorts") or {},
                "Labels": config.get("Labels") or {}}

    def close(self):
        for container in self.containers.values():
            subprocess.run(["buildah", "rm", container], capture_output=True)
        self.containers.clear()


class Docker:
    def command(self, image, argv):
        return ["docker", "run", "--rm", "-i", "--network", "host", "--entrypoint", argv[0],
                image] + list(argv[1:])

    def config(self, image):
        out = subprocess.run(["docker", "image", "inspect", image],
                             check=True, capture_output=True, text=True).stdout
        config = json.loads(out)[0]["Config"]
        return {"User": config.get("User", ""), "Entrypoint": config.get("Entrypoint"),
                "ExposedPorts": config.get("ExposedPorts") or {},
                "Labels": config.get("Labels") or {}}

    def close(self):
        pass


ENGINE = None


def setUpModule():
    global ENGINE
    # Opted in, so a machine that cannot run it fails rather than skips.
    if os.geteuid() != 0 and not docker_daemon():
        raise RuntimeError("no Docker daemon, and buildah without one needs root")
    if os.environ.get("LOADS_IMAGE_TEST_NO_BUILD") != "1":
        subprocess.run([os.path.join(ROOT, "scripts", "build-images.sh")], check=True)
    ENGINE = Docker() if docker_daemon() else Buildah()


def tearDownModule():
    if ENGINE is not None:
        ENGINE.close()


def run(image, *argv, timeout=120):
    return subprocess.run(ENGINE.command(IMAGES[image], argv), capture_output=True, text=True,
                          timeout=timeout)


class Server:
    """A long-running command in an image, stopped with its whole process group."""

    def __init__(self, image, *argv):
        self.proc = subprocess.Popen(ENGINE.command(IMAGES[image], argv),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)

    def wait_for_line(self, pattern, timeout=60):
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r}; output: {''.join(seen)!r}")

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stdout.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_report(result):
    """The JSON report a loads-runner wrote with --output json:/tmp/report.json, then cat."""
    text = result.stdout
    start = text.find("{")
    if start < 0:
        raise AssertionError(f"no JSON report; stdout {text!r}, stderr {result.stderr!r}")
    return json.loads(text[start:])


# loads-runner writes the report to a file in the container, then the shell prints it; the
# shell exits with the runner's status.
def runner_with_report(*runner_argv):
    script = ('loads-runner "$@" --quiet --output json:/tmp/report.json; status=$?; '
              'cat /tmp/report.json 2>/dev/null; exit $status')
    return ["sh", "-c", script, "sh"] + list(runner_argv)


class ImageContents(unittest.TestCase):
    def test_binaries_print_the_project_version(self):
        for image, binaries in BINARIES.items():
            for binary in binaries:
                with self.subTest(image=image, binary=binary):
                    result = run(image, binary, "--version")
                    self.assertEqual(result.returncode, 0, result.stderr)
                    self.assertTrue(result.stdout.startswith(f"{binary} {VERSION}"),
                                    result.stdout)

    def test_runs_as_loads_10001(self):
        for image in IMAGES:
            with self.subTest(image=image):
                self.assertEqual(ENGINE.config(IMAGES[image])["User"], f"{UID}:{UID}")
                result = run(image, "id")
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(result.stdout.split()[:2],
                                 [f"uid={UID}(loads)", f"gid={UID}(loads)"])

    def test_entrypoint_ports_and_labels(self):
        for image in IMAGES:
            with self.subTest(image=image):
                config = ENGINE.config(IMAGES[image])
                self.assertEqual(config["Entrypoint"], ENTRYPOINTS[image])
                self.assertEqual(set(config["ExposedPorts"]), EXPOSED[image])
                labels = config["Labels"]
                self.assertEqual(labels.get("org.opencontainers.image.version"), VERSION)
                self.assertEqual(labels.get("org.opencontainers.image.title"), f"loads-{image}")

    def test_no_compiler_and_no_package_lists(self):
        script = ("for c in gcc g++ cc c++ cpp clang; do command -v $c; done; "
                  "ls -A /var/lib/apt/lists; ls /var/cache/apt/archives | grep '[.]deb$'; "
                  "ls /usr/lib/gcc/*/*/cc1* 2>/dev/null; true")
        for image in IMAGES:
            with self.subTest(image=image):
                result = run(image, "sh", "-c", script)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(result.stdout, "", "compilers or apt files found")

    def test_every_library_resolves(self):
        for image, binaries in BINARIES.items():
            with self.subTest(image=image):
                files = [f"/usr/local/bin/{b}" for b in binaries] + ["/usr/local/lib/libloads.so.1"]
                result = run(image, "ldd", *files)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertNotIn("not found", result.stdout)
                self.assertIn("/usr/local/lib/libloads.so.1", result.stdout)
                cache = run(image, "ldconfig", "-p")
                self.assertIn("/usr/local/lib/libloads.so.1", cache.stdout)


class Runs(unittest.TestCase):
    def setUp(self):
        self.servers = []
        # loads-demo-target from the runner image, on a free port of 127.0.0.1 (host network).
        target = self.start("runner", "loads-demo-target", "--port", "0")
        self.url = target.wait_for_line(r"listening on (http://\S+)").group(1) + "/"

    def tearDown(self):
        for server in reversed(self.servers):
            server.stop()

    def start(self, image, *argv):
        server = Server(image, *argv)
        self.servers.append(server)
        return server

    def test_local_run_in_the_worker_image(self):
        result = run("worker", *runner_with_report("--url", self.url, "-u", "2", "--hits", "5"))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        report = read_report(result)
        self.assertEqual(report["hits"], 10)
        self.assertEqual(report["tests"], {"errors": 0, "failures": 0, "success": 10,
                                           "total": 10})

    def test_distributed_run_loads_the_shipped_test_library(self):
        grpc, zmq, publish, metrics = (free_port() for _ in range(4))
        self.start("controller", "loads-controller", "--grpc", f"127.0.0.1:{grpc}",
                   "--zmq", f"tcp://127.0.0.1:{zmq}", "--publish", f"tcp://127.0.0.1:{publish}",
                   "--metrics", f"127.0.0.1:{metrics}", "--max-local-workers", "0")
        self.start("worker", "loads-worker", "--controller", f"tcp://127.0.0.1:{zmq}")
        deadline = time.monotonic() + 60
        idle = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=2) as r:
                    text = r.read().decode()
                idle = re.search(r'^loads_workers\{state="idle"\} (\S+)$', text, re.M)
                if idle and float(idle.group(1)) >= 1:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            self.fail(f"the worker did not register with the controller (idle: {idle})")
        # The runner image finds example.so through LOADS_TEST_PATH and ships it to the worker,
        # which writes it under /tmp and loads it.
        result = run("runner", *runner_with_report(
            "example.TestWebSite.test_es", "--server-url", self.url, "-u", "2", "--hits", "5",
            "--controller", f"127.0.0.1:{grpc}", "--workers", "1"), timeout=180)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        report = read_report(result)
        self.assertEqual(report["hits"], 10)
        self.assertEqual(report["tests"]["success"], 10)


if __name__ == "__main__":
    unittest.main(verbosity=2)
