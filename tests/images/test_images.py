"""The container images, end to end (slow, opt-in: see docker/README.md).

Builds loads-controller, loads-worker and loads-runner with scripts/build-images.sh, then runs
them: with buildah (`buildah from` + `buildah run --isolation chroot --network host`) when no
Docker daemon answers, else with `docker run --network host`. Both share the host's network, so
servers started in one image are reached from another on 127.0.0.1. Every command runs a
program of the image directly: the controller and worker images have no shell. Their files are
inspected from the host (`buildah mount`, or `docker export`).

Checks: every binary's --version and --help in every image; the user (10001:10001: the image
config, /etc/passwd, and the owner of files the programs write); entry point, exposed ports and
the OCI labels (created = the commit time of HEAD, revision = its short hash, source and url =
the chart's home, licenses NOASSERTION, base.name only on the runner image); no shell in the
controller and worker images (their bin folders hold their binaries and nothing else), the
runner image's shell and sleep for the chart's test pod; no setuid or setgid file anywhere; no
compiler and no apt lists or package files; /tmp and /home/loads; every library resolved by the
image's own loader and libloads.so.1 in its ldconfig cache; a local run (loads-runner --url)
inside the worker image against loads-demo-target from the runner image; a distributed run
where the worker image loads the example test library that the runner ships through the
controller.

Environment: LOADS_IMAGE_TEST_NO_BUILD=1 tests the images already built;
LOADS_IMAGE_TAG, LOADS_IMAGE_PREFIX, LOADS_SOURCE_URL and SOURCE_DATE_EPOCH as for
scripts/build-images.sh.

Run: /usr/bin/python3 -m unittest -v test_images   (from tests/images, as root)
"""

import datetime
import json
import os
import posixpath
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tarfile
import tempfile
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
# The images without a shell; the runner image keeps one for the chart's test pod
# (helm/loads/templates/tests/test-run-pod.yaml runs `sh -c` with `sleep` in it).
SHELL_FREE = ("controller", "worker")
SHELLS = ["/bin/sh", "/bin/bash", "/bin/dash", "/bin/rbash", "/usr/bin/sh", "/usr/bin/bash",
          "/usr/bin/dash", "/usr/bin/rbash", "/usr/bin/busybox"]
SHELL_NAMES = {"sh", "bash", "dash", "rbash", "ash", "ksh", "mksh", "zsh", "csh", "tcsh",
               "busybox"}
BIN_DIRS = ["/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"]
COMPILERS = {"gcc", "g++", "cc", "c++", "cpp", "clang", "clang++"}


def git(*args):
    return subprocess.run(["git", "-C", ROOT] + list(args), check=True, capture_output=True,
                          text=True).stdout.strip()


def chart_home():
    with open(os.path.join(ROOT, "helm", "loads", "Chart.yaml"), encoding="utf-8") as f:
        return re.search(r"^home:\s*(\S+)", f.read(), re.M).group(1)


def expected_created():
    """What scripts/build-images.sh puts in org.opencontainers.image.created."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH") or git("log", "-1", "--format=%ct")
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def elf_interpreter(data):
    """The PT_INTERP of a 64-bit little-endian ELF file (x86-64, arm64): its dynamic loader."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise AssertionError("not a 64-bit little-endian ELF file")
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        header = phoff + i * phentsize
        if struct.unpack_from("<I", data, header)[0] == 3:  # PT_INTERP
            offset, = struct.unpack_from("<Q", data, header + 8)
            size, = struct.unpack_from("<Q", data, header + 32)
            return data[offset:offset + size].rstrip(b"\0").decode()
    raise AssertionError("no PT_INTERP: not a dynamically linked program")


class Files:
    """An image's file tree seen from the host: path -> (kind, mode, uid, gid, link target),
    kind "f" (regular file), "d", "l" (symbolic link) or "o"; symbolic links are followed
    inside the image, never on the host."""

    def __init__(self, entries, reader):
        self.entries = entries
        self._reader = reader

    def resolve(self, path, follow_last=True, depth=0):
        """The path with every symbolic link followed (the last one only with follow_last), or
        None if a component does not exist."""
        if depth > 40:
            raise AssertionError(f"symbolic link loop at {path}")
        current = "/"
        parts = [p for p in path.split("/") if p and p != "."]
        for i, part in enumerate(parts):
            if part == "..":
                current = posixpath.dirname(current)
                continue
            candidate = posixpath.join(current, part)
            entry = self.entries.get(candidate)
            if entry is None:
                return None
            if entry[0] == "l" and (follow_last or i < len(parts) - 1):
                target = entry[4]
                base = "/" if target.startswith("/") else current
                current = self.resolve(posixpath.join(base, target), True, depth + 1)
                if current is None:
                    return None
            else:
                current = candidate
        return current

    def exists(self, path):
        """Whether the path names anything, a dangling symbolic link included (lexists)."""
        return self.resolve(path, follow_last=False) is not None

    def read(self, path):
        resolved = self.resolve(path)
        if resolved is None:
            raise AssertionError(f"{path}: not in the image")
        return self._reader(resolved)

    def names_in(self, folder):
        """What a folder (after following links) holds, but folders."""
        real = self.resolve(folder)
        if real is None:
            return set()
        return {posixpath.basename(p) for p, e in self.entries.items()
                if e[0] != "d" and p != "/" and posixpath.dirname(p) == real}


def walk_tree(root):
    entries = {"/": ("d", 0o755, 0, 0, None)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(folder, name)
            st = os.lstat(full)
            kind = ("l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode)
                    else "f" if stat.S_ISREG(st.st_mode) else "o")
            entries["/" + os.path.relpath(full, root)] = (
                kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                os.readlink(full) if kind == "l" else None)
    return entries


def docker_daemon():
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


class Buildah:
    """Runs commands in working containers made from the images, one per image."""

    def __init__(self):
        self.containers = {}
        self.inspected = []
        self.trees = {}

    def _container(self, image):
        if image not in self.containers:
            out = subprocess.run(["buildah", "from", "--pull=never", "--quiet", image],
                                 check=True, capture_output=True, text=True).stdout
            self.containers[image] = out.strip()
        return self.containers[image]

    def command(self, image, argv, volumes=()):
        mounts = [arg for host, path in volumes for arg in ("--volume", f"{host}:{path}")]
        return ["buildah", "run", "--isolation", "chroot", "--network", "host"] + mounts + [
            self._container(image), "--"] + list(argv)

    def files(self, image):
        """The image's files, from a container of its own that nothing has run in."""
        if image not in self.trees:
            container = subprocess.run(["buildah", "from", "--pull=never", "--quiet", image],
                                       check=True, capture_output=True, text=True).stdout.strip()
            self.inspected.append(container)
            root = subprocess.run(["buildah", "mount", container], check=True,
                                  capture_output=True, text=True).stdout.strip()

            def read(path, root=root):
                with open(root + path, "rb") as f:
                    return f.read()
            self.trees[image] = Files(walk_tree(root), read)
        return self.trees[image]

    def config(self, image):
        out = subprocess.run(["buildah", "inspect", "--type", "image", image],
                             check=True, capture_output=True, text=True).stdout
        config = json.loads(out)["OCIv1"]["config"]
        return {"User": config.get("User", ""), "Entrypoint": config.get("Entrypoint"),
                "ExposedPorts": config.get("ExposedPorts") or {},
                "Labels": config.get("Labels") or {}}

    def close(self):
        for container in self.inspected:
            subprocess.run(["buildah", "umount", container], capture_output=True)
        for container in list(self.containers.values()) + self.inspected:
            subprocess.run(["buildah", "rm", container], capture_output=True)
        self.containers.clear()
        self.inspected.clear()
        self.trees.clear()


class Docker:
    def __init__(self):
        self.trees = {}
        self.tars = []

    def command(self, image, argv, volumes=()):
        mounts = [arg for host, path in volumes for arg in ("--volume", f"{host}:{path}")]
        return ["docker", "run", "--rm", "-i", "--network", "host"] + mounts + [
            "--entrypoint", argv[0], image] + list(argv[1:])

    def files(self, image):
        """The image's files, from `docker export` of a container never started."""
        if image not in self.trees:
            container = subprocess.run(["docker", "create", image], check=True,
                                       capture_output=True, text=True).stdout.strip()
            archive = tempfile.TemporaryFile()
            try:
                subprocess.run(["docker", "export", container], check=True, stdout=archive)
            finally:
                subprocess.run(["docker", "rm", container], capture_output=True)
            archive.seek(0)
            tar = tarfile.open(fileobj=archive)
            self.tars.append(tar)
            entries = {"/": ("d", 0o755, 0, 0, None)}
            members = {}
            for m in tar.getmembers():
                path = posixpath.normpath("/" + m.name)
                if path == "/":
                    continue
                kind = ("l" if m.issym() else "d" if m.isdir()
                        else "f" if m.isreg() or m.islnk() else "o")
                entries[path] = (kind, m.mode & 0o7777, m.uid, m.gid,
                                 m.linkname if m.issym() else None)
                members[path] = m

            def read(path, tar=tar, members=members):
                return tar.extractfile(members[path]).read()
            self.trees[image] = Files(entries, read)
        return self.trees[image]

    def config(self, image):
        out = subprocess.run(["docker", "image", "inspect", image],
                             check=True, capture_output=True, text=True).stdout
        config = json.loads(out)[0]["Config"]
        return {"User": config.get("User", ""), "Entrypoint": config.get("Entrypoint"),
                "ExposedPorts": config.get("ExposedPorts") or {},
                "Labels": config.get("Labels") or {}}

    def close(self):
        for tar in self.tars:
            tar.close()
        self.tars.clear()
        self.trees.clear()


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


# buildah run failing before the program starts, on this machine now and then (once in some
# 100 runs): buildah's copy of itself into a sealed memfd, which the kernel refused.
ENGINE_FLAKES = ("sealing memfd copy",)


def run(image, *argv, timeout=120, volumes=()):
    for _ in range(3):
        result = subprocess.run(ENGINE.command(IMAGES[image], argv, volumes),
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode == 0 or not any(f in result.stderr for f in ENGINE_FLAKES):
            break
    return result


def run_for_output(image, *argv):
    """run() for a command that prints something and exits at once. Under load, buildah run
    --isolation chroot has been seen (once in some 40 such runs here) to lose the whole output
    of such a process, which still exits 0: then it is run again, up to 3 times."""
    for _ in range(3):
        result = run(image, *argv)
        if result.returncode != 0 or result.stdout or result.stderr:
            break
    return result


def files(image):
    return ENGINE.files(IMAGES[image])


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


def run_with_report(image, *runner_argv, timeout=120):
    """loads-runner of the image, writing its JSON report into a host folder mounted at /out
    (no shell needed to get it out). Returns the result, the report (None if there is none) and
    the uid and gid that own the report file: the user the runner ran as."""
    with tempfile.TemporaryDirectory() as out:
        os.chmod(out, 0o1777)
        result = run(image, "loads-runner", *runner_argv, "--quiet",
                     "--output", "json:/out/report.json", timeout=timeout,
                     volumes=[(out, "/out")])
        path = os.path.join(out, "report.json")
        if not os.path.exists(path):
            return result, None, None
        st = os.stat(path)
        with open(path, encoding="utf-8") as f:
            return result, json.load(f), (st.st_uid, st.st_gid)


class ImageContents(unittest.TestCase):
    def test_binaries_start(self):
        # Run as the command itself: the controller and worker images have no shell.
        for image, binaries in BINARIES.items():
            for binary in binaries:
                with self.subTest(image=image, binary=binary):
                    result = run_for_output(image, binary, "--version")
                    self.assertEqual(result.returncode, 0, result.stderr)
                    self.assertTrue(result.stdout.startswith(f"{binary} {VERSION}"),
                                    (result.stdout, result.stderr))
                    result = run_for_output(image, binary, "--help")
                    self.assertEqual(result.returncode, 0, result.stderr)
                    self.assertIn("usage", result.stdout.lower(), result.stderr)

    def test_runs_as_loads_10001(self):
        for image in IMAGES:
            with self.subTest(image=image):
                self.assertEqual(ENGINE.config(IMAGES[image])["User"], f"{UID}:{UID}")
                tree = files(image)
                passwd = tree.read("/etc/passwd").decode()
                self.assertRegex(passwd, rf"(?m)^loads:x:{UID}:{UID}:[^:]*:/home/loads:")
                self.assertRegex(tree.read("/etc/group").decode(), rf"(?m)^loads:x:{UID}:")
        # What a program of the image writes is owned by 10001:10001 (the worker and runner
        # images: the reports of the runs below).
        with tempfile.TemporaryDirectory() as out:
            os.chmod(out, 0o1777)
            result = run("controller", "loads-controller", "keygen", "/out/key",
                         volumes=[(out, "/out")])
            self.assertEqual(result.returncode, 0, result.stderr)
            st = os.stat(os.path.join(out, "key"))
            self.assertEqual((st.st_uid, st.st_gid), (int(UID), int(UID)))

    def test_entrypoint_ports_and_labels(self):
        revision = git("rev-parse", "--short", "HEAD")
        source = os.environ.get("LOADS_SOURCE_URL") or chart_home()
        for image in IMAGES:
            with self.subTest(image=image):
                config = ENGINE.config(IMAGES[image])
                self.assertEqual(config["Entrypoint"], ENTRYPOINTS[image])
                self.assertEqual(set(config["ExposedPorts"]), EXPOSED[image])
                labels = config["Labels"]
                label = lambda key: labels.get(f"org.opencontainers.image.{key}")  # noqa: E731
                self.assertEqual(label("title"), f"loads-{image}")
                self.assertTrue(label("description"))
                self.assertEqual(label("vendor"), "Loads")
                self.assertEqual(label("version"), VERSION)
                # -dirty: built from a tree with uncommitted changes.
                self.assertRegex(label("revision") or "", rf"^{re.escape(revision)}(-dirty)?$")
                created = label("created") or ""
                self.assertRegex(
                    created, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
                self.assertIsNotNone(datetime.datetime.fromisoformat(created).tzinfo)
                self.assertEqual(created, expected_created())
                self.assertEqual(label("source"), source)
                self.assertEqual(label("url"), source)
                # No license has been chosen yet: SPDX's "no assertion", not a guess.
                self.assertEqual(label("licenses"), "NOASSERTION")
                self.assertEqual(label("documentation"), "docker/README.md")
                if image in SHELL_FREE:
                    # FROM scratch: no base image to name.
                    self.assertIsNone(label("base.name"))
                else:
                    self.assertEqual(label("base.name"), "debian:bookworm-slim")

    def test_no_shell_in_the_controller_and_worker_images(self):
        for image in SHELL_FREE:
            with self.subTest(image=image):
                tree = files(image)
                self.assertEqual([s for s in SHELLS if tree.exists(s)], [])
                self.assertEqual(sorted(p for p, e in tree.entries.items()
                                        if e[0] != "d" and posixpath.basename(p) in SHELL_NAMES),
                                 [])
                # Their bin folders hold their own binaries and nothing else: no coreutils, no
                # package manager, no interpreter.
                found = set().union(*(tree.names_in(d) for d in BIN_DIRS))
                self.assertEqual(found, set(BINARIES[image]))
                # Nor any other executable file (a script, a helper) but shared libraries.
                programs = {p for p, e in tree.entries.items()
                            if e[0] == "f" and e[1] & 0o111
                            and not re.search(r"[.]so([.]|$)", posixpath.basename(p))}
                self.assertEqual(programs, {f"/usr/local/bin/{b}" for b in BINARIES[image]})
                self.assertNotEqual(run(image, "sh", "-c", "true").returncode, 0)

    def test_the_runner_image_keeps_what_the_chart_test_pod_needs(self):
        result = run_for_output("runner", "sh", "-c", "sleep 0.1 && command -v loads-demo-target")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), "/usr/local/bin/loads-demo-target")

    def test_no_setuid_or_setgid_file(self):
        for image in IMAGES:
            with self.subTest(image=image):
                tree = files(image)
                self.assertEqual(sorted(p for p, e in tree.entries.items()
                                        if e[0] == "f" and e[1] & 0o6000), [])

    def test_no_compiler_and_no_package_lists(self):
        for image in IMAGES:
            with self.subTest(image=image):
                tree = files(image)
                found = set().union(*(tree.names_in(d) for d in BIN_DIRS))
                self.assertEqual(found & COMPILERS, set())
                lists = tree.resolve("/var/lib/apt/lists")
                archives = tree.resolve("/var/cache/apt/archives")
                leftovers = [p for p in tree.entries
                             if (lists and p.startswith(lists + "/"))
                             or (archives and p.startswith(archives + "/") and p.endswith(".deb"))
                             or re.match(r"^/usr/lib/gcc/[^/]+/[^/]+/cc1", p)]
                self.assertEqual(leftovers, [], "compilers or apt files found")

    def test_home_and_tmp(self):
        for image in IMAGES:
            with self.subTest(image=image):
                tree = files(image)
                home = tree.entries.get(tree.resolve("/home/loads") or "")
                self.assertEqual(home and home[:1] + home[2:4], ("d", int(UID), int(UID)))
                tmp = tree.entries.get(tree.resolve("/tmp") or "")
                self.assertEqual(tmp and (tmp[0], tmp[1]), ("d", 0o1777))

    def test_every_library_resolves(self):
        for image, binaries in BINARIES.items():
            with self.subTest(image=image):
                tree = files(image)
                paths = [f"/usr/local/bin/{b}" for b in binaries] + ["/usr/local/lib/libloads.so.1"]
                # The image's own loader lists what each file loads (what ldd does, without
                # ldd, a shell script).
                loader = elf_interpreter(tree.read(paths[0]))
                listed = ""
                for path in paths:
                    result = run_for_output(image, loader, "--list", path)
                    self.assertEqual(result.returncode, 0, result.stderr)
                    self.assertNotIn("not found", result.stdout)
                    listed += result.stdout
                # Through the RUNPATH $ORIGIN/../lib, or the cache.
                self.assertRegex(listed, r"libloads[.]so[.]1 => /usr/local/(bin/[.][.]/)?lib/")
                self.assertIn(b"/usr/local/lib/libloads.so.1", tree.read("/etc/ld.so.cache"))
                if image in SHELL_FREE:
                    # What the image is made of, for image scanners.
                    status = tree.read("/var/lib/dpkg/status").decode()
                    for package in ("libc6", "libstdc++6", "ca-certificates"):
                        self.assertRegex(status, rf"(?m)^Package: {re.escape(package)}$")


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
        result, report, owner = run_with_report("worker", "--url", self.url, "-u", "2",
                                                "--hits", "5")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIsNotNone(report, result.stdout + result.stderr)
        self.assertEqual(owner, (int(UID), int(UID)))
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
        result, report, owner = run_with_report(
            "runner", "example.TestWebSite.test_es", "--server-url", self.url, "-u", "2",
            "--hits", "5", "--controller", f"127.0.0.1:{grpc}", "--workers", "1", timeout=180)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIsNotNone(report, result.stdout + result.stderr)
        self.assertEqual(owner, (int(UID), int(UID)))
        self.assertEqual(report["hits"], 10)
        self.assertEqual(report["tests"]["success"], 10)


if __name__ == "__main__":
    unittest.main(verbosity=2)
