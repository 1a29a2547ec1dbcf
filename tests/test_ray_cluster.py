"""The Ray backend on a real two-node cluster that this module starts on this machine: a head
node sharing the driver's compiled-module cache, and a second node with an empty cache of its
own. A worker there receives the driver's prepared artifacts through Ray's object store instead
of compiling them. Both nodes are stopped at the end (only their processes: each carries this
module's marker in its environment)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import wasm_sandbox as ws

ray = pytest.importorskip("ray", reason="the Ray backend needs ray (in the test extras)")

RAY_CLI = [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]
MARKER = "WASM_SANDBOX_TEST_RAY_NODE"  # in the environment of every process of our nodes
FRESH = "fresh_node"  # the custom resource that only the second node has
SOURCE = "def double(x):\n    return 2 * x\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ports() -> list[str]:
    """Ports of a node's own that a second node on this machine must not share."""
    names = [
        "node-manager", "object-manager", "dashboard-agent-listen", "dashboard-agent-grpc",
        "metrics-export", "runtime-env-agent",
    ]  # fmt: skip
    return [arg for name in names for arg in (f"--{name}-port", str(_free_port()))]


def _start_node(base: Path, name: str, cache: Path, args: list[str]) -> subprocess.Popen[bytes]:
    """``ray start --block`` (it stops its processes when terminated) in a session of its own,
    its output in ``base/<name>.log``."""
    env = dict(os.environ, WASM_SANDBOX_CACHE_DIR=str(cache), RAY_AUTH_MODE="disabled")
    env[MARKER] = str(base)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    package_root = str(Path(ws.__file__).resolve().parent.parent)  # the code under test
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    command = [*RAY_CLI, "start", "--block", "--num-cpus", "1", "--disable-usage-stats"]
    command += ["--object-store-memory", str(1 << 30), "--temp-dir", str(base / name)]
    with open(base / f"{name}.log", "wb") as log:
        return subprocess.Popen(
            [*command, *_ports(), *args], env=env, stdout=log, stderr=log, start_new_session=True
        )


def _our_processes(base: Path) -> list[int]:
    """The processes whose environment carries this module's marker for ``base``."""
    needle = f"{MARKER}={base}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _wait(
    condition: Callable[[], bool], what: str, node: subprocess.Popen[bytes], log: Path
) -> None:
    """Wait up to a minute for ``condition``; fail early, with the log, if ``node`` ended."""
    deadline = time.monotonic() + 60
    while not condition():
        if node.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} within 60 s:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.25)


def _stop(nodes: list[subprocess.Popen[bytes]], base: Path) -> None:
    """Terminate each node (it drains, then stops its processes); kill what is left."""
    for node in nodes:
        node.terminate()
    for node in nodes:
        try:
            node.wait(60)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
    deadline = time.monotonic() + 30
    while (left := _our_processes(base)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes of the test's Ray nodes outlived them: {left}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Path, int]]:
    """A two-node cluster; yields the second node's (empty) compiled-module cache and the
    head's port. Jobs come from driver processes of their own (``_driver``), as a user's
    would: a process that ran a local Ray before keeps that node's address for the objects it
    owns, which a second cluster's nodes cannot reach (Ray's OwnerDiedError)."""
    # A short directory: Ray's socket paths under it must fit in 107 bytes.
    base = Path(tempfile.mkdtemp(prefix="wsray-"))
    cache = base / "fresh-cache"
    cache.mkdir()
    port = _free_port()
    head_args = ["--head", "--port", str(port), "--node-ip-address", "127.0.0.1"]
    nodes = [_start_node(base, "head", ws.default_cache_dir(), head_args)]
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("RAY_AUTH_MODE", "disabled")
            _wait(
                lambda: _listening(port), "the head node did not start", nodes[0], base / "head.log"
            )
            node_args = ["--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1"]
            node_args += ["--resources", f'{{"{FRESH}": 1}}']
            nodes.append(_start_node(base, "fresh", cache, node_args))
            _wait(
                lambda: _fresh_node_up(port), "the second node did not join", nodes[1],
                base / "fresh.log",
            )  # fmt: skip
            yield cache, port
    finally:
        _stop(nodes, base)
        shutil.rmtree(base, ignore_errors=True)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _fresh_node_up(port: int) -> bool:
    check = f"import ray; ray.init(address='127.0.0.1:{port}'); print(ray.cluster_resources())"
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, env=_driver_env(),
        check=False, timeout=120,
    )  # fmt: skip
    return FRESH in done.stdout


def _driver_env() -> dict[str, str]:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    package_root = str(Path(ws.__file__).resolve().parent.parent)  # the code under test
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env


DRIVER = """
import json, sys, time, ray, wasm_sandbox as ws
ray.init(address=sys.argv[1], log_to_driver=False)
language, source, arg = sys.argv[2], sys.argv[3], int(sys.argv[4])
(runtime,) = ws.prepare(language)  # the driver's cache: prepared before the tests start
sandbox = ws.WasmSandbox.builder().source(source).language(language).build()
backend = ws.RayBackend(task_options={"resources": {"fresh_node": 1}})
with ws.LoadBalancer(sandbox).backend(backend) as balancer:
    started = time.monotonic()
    value = balancer.execute("double", arg)
    seconds = time.monotonic() - started
print(json.dumps({"value": value, "seconds": seconds, "artifact": str(runtime.artifact)}))
"""


def _driver(port: int, language: str, source: str, arg: int) -> dict[str, object]:
    """Run one job on the fresh node from a driver process of its own; its figures."""
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, f"127.0.0.1:{port}", language, source, str(arg)],
        capture_output=True, text=True, env=_driver_env(), check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _installed(fresh_cache: Path, artifact: Path) -> Path:
    """The fresh node's copy of the driver's ``artifact``, checked whole: the same bytes,
    with its checksum, stamp and module info."""
    copy = fresh_cache / artifact.name
    assert copy.is_file(), sorted(p.name for p in fresh_cache.iterdir())
    assert _sha256(copy) == _sha256(artifact)
    assert copy.with_suffix(".sha256").read_text() == artifact.with_suffix(".sha256").read_text()
    assert copy.with_suffix(".info").read_text() == artifact.with_suffix(".info").read_text()
    assert copy.with_suffix(".stamp").is_file()
    return copy


@pytest.mark.slow
def test_first_python_job_on_a_fresh_node_takes_the_drivers_artifact(
    cluster: tuple[Path, int],
) -> None:
    """A Python job pinned to a node whose cache is empty completes in <= 10 s (compiling the
    CPython runtime there takes 85 s): the worker installs the driver's prepared artifact
    from Ray's object store, and the node's cache then holds it."""
    fresh_cache, port = cluster
    result = _driver(port, "python", SOURCE, 21)
    assert result["value"] == 42
    seconds = float(str(result["seconds"]))
    assert seconds <= 10, f"the first Python job on the fresh node took {seconds:.1f} s"
    _installed(fresh_cache, Path(str(result["artifact"])))


@pytest.mark.slow
def test_javascript_runtime_reaches_the_fresh_node(cluster: tuple[Path, int]) -> None:
    """A JavaScript job on the fresh node brings the JavaScript runtime's artifact into its
    cache, the same bytes as the driver's."""
    fresh_cache, port = cluster
    result = _driver(port, "javascript", "function double(x) { return 2 * x; }", 4)
    assert result["value"] == 8
    _installed(fresh_cache, Path(str(result["artifact"])))
