"""Cache entries shipped between machines (what the Ray backend sends its workers): an entry
read from one cache (or serialized from memory) and installed into another is loaded there
without compiling; a damaged entry, or one compiled for another machine, is not installed."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import wasm_sandbox as ws
from wasm_sandbox._invocation import sandbox_core
from wasm_sandbox._runtime._engine import CacheEntry, install_entry, read_entry

SRC = Path(__file__).resolve().parents[1] / "src"
GUEST = b'(module (func (export "seven") (result i32) (i32.const 7)))'


@pytest.fixture(params=["from-disk", "from-memory"])
def entry(tmp_path: Path, request: pytest.FixtureRequest) -> CacheEntry:
    """The cache entry of GUEST: read from the cache it was built into, or serialized from
    the module in memory (built without a cache)."""
    source = tmp_path / "guest.wat"
    unique = f'(module (func (export "{uuid.uuid4().hex}"))'.encode()  # never in memory yet
    source.write_bytes(GUEST.replace(b"(module", unique))
    cache = tmp_path / "a" if request.param == "from-disk" else None
    sandbox = ws.WasmSandbox.builder().source(source).cache_dir(cache).build()
    plan = sandbox_core(sandbox).plan
    found = read_entry(plan.handle, plan.compiled, cache)
    if cache is not None:
        assert (cache / found.label.name).is_file()
    return found


def _from_cache(source: Path, cache: Path) -> bool:
    """Whether a fresh process builds ``source`` from ``cache`` without compiling it."""
    code = (
        "import sys, wasm_sandbox as ws\n"
        "s = ws.WasmSandbox.builder().source(sys.argv[1]).cache_dir(sys.argv[2]).build()\n"
        "assert s.call('seven') == 7\n"
        "print(s.from_cache)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(SRC))
    done = subprocess.run(
        [sys.executable, "-c", code, str(source), str(cache)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip() == "True"


def test_an_installed_entry_loads_without_compiling(entry: CacheEntry, tmp_path: Path) -> None:
    """Installed into an empty cache, the entry is whole there (artifact, checksum, stamp,
    module info) and a fresh process loads the module from it."""
    path = install_entry(entry, tmp_path / "b")
    assert path == tmp_path / "b" / entry.label.name
    assert path.read_bytes() == entry.artifact
    for suffix in (".sha256", ".stamp", ".info"):
        assert path.with_suffix(suffix).is_file()
    assert _from_cache(tmp_path / "guest.wat", tmp_path / "b")
    assert install_entry(entry, tmp_path / "b") == path  # present already: left as it is


@pytest.mark.parametrize(
    "change",
    [
        lambda e: dataclasses.replace(e, artifact=e.artifact[:-1] + bytes([e.artifact[-1] ^ 1])),
        lambda e: dataclasses.replace(e, label=dataclasses.replace(e.label, name="x.cwasm")),
    ],
    ids=["damaged-artifact", "another-machines-key"],
)
def test_an_entry_that_does_not_fit_is_not_installed(
    entry: CacheEntry, tmp_path: Path, change: object
) -> None:
    """A damaged artifact (its SHA-256 differs) or an entry whose file name is not this
    machine's key (another CPU or wasmtime) is not installed: nothing is written."""
    assert callable(change)
    assert install_entry(change(entry), tmp_path / "b") is None
    assert not list(tmp_path.glob("b/*.cwasm"))
