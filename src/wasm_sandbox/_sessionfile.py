"""Sessions on disk: ``Session.save`` writes a session's snapshot with what it depends on
(the snapshot file's meta, ``_runtime._snapshot``), ``WasmSandbox.load_session`` reads it back
once the file is shown to belong to this sandbox.

A file is untrusted input. ``load_snapshot`` checks its checksum and structure; the meta is
compared field by field with the loading sandbox (runtime module, instrumentation, guest
driver, language, source, mounts); restoring it writes only inside the new instance's memory
and in-memory directories (``_wasi._hoststate``). Refusals are ``SnapshotError``s that say
what differs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ._errors import SnapshotError
from ._guests._jsdriver import BOOT as JS_DRIVER
from ._guests._pydriver import BOOT as PY_DRIVER
from ._runtime._cache import write_atomically
from ._runtime._snapshot import Snapshot, dump_snapshot, load_snapshot
from ._runtime._wasm import INSTRUMENT_VERSION

if TYPE_CHECKING:
    from ._sandbox import SandboxCore

__all__ = ["read_session", "session_meta", "write_session"]

KIND = "wasm-sandbox session"
VERSION = 1
_DRIVERS = {"python": PY_DRIVER, "javascript": JS_DRIVER}
# What a loading sandbox with another value of each field has, for a refusal's message.
_FIELDS = {
    "runtime": "another runtime module (SHA-256)",
    "instrumentation": "another instrumentation version (another wasm-sandbox release)",
    "driver": "another guest driver (another wasm-sandbox release)",
    "language": "another language",
    "source": "another source (SHA-256)",
    "filename": "another source file name",
    "module": "another module name",
    "mounts": "other mounts (guest path, kind, read-only)",
}


def session_meta(sandbox: SandboxCore) -> dict[str, object]:
    """What a session's state depends on beyond its own bytes: the sandbox's runtime and
    configuration, as a file records it and a loading sandbox must match it."""
    script = sandbox.script
    if script is None:
        raise SnapshotError("only Python and JavaScript sessions can be saved")
    plan = sandbox.plan
    return {
        "runtime": plan.compiled.digest,
        "instrumentation": INSTRUMENT_VERSION,
        "driver": _sha256(_DRIVERS[script.language]),
        "language": script.language,
        "source": _sha256(script.text),
        "filename": script.filename,
        "module": script.module,
        "mounts": [
            [mount.guest_path, "memory" if mount.in_memory else "host", mount.read_only]
            for mount in plan.mounts
        ],
    }


def write_session(
    path: str | Path, sandbox: SandboxCore, capture: Callable[[], Snapshot], statements: int
) -> None:
    """Write the state ``capture`` takes (a session's, ``statements`` entries into its
    history) to ``path``, replaced whole; ``SnapshotError`` when it cannot travel."""
    for mount in sandbox.plan.mounts:
        if not mount.in_memory and not mount.read_only:
            raise SnapshotError(
                f"cannot save this session: the sandbox mounts the writable host directory "
                f"{mount.guest_path}, whose content is the host's and does not travel with "
                "a saved session; save sessions of sandboxes whose host directories are "
                "read-only (in-memory mounts are saved with the session)"
            )
    meta = {"kind": KIND, "version": VERSION, **session_meta(sandbox)}
    meta.update(statements=statements, saved_at=time.time())
    data = dump_snapshot(capture(), meta)
    write_atomically(Path(path), data)


def read_session(path: str | Path, sandbox: SandboxCore) -> tuple[Snapshot, int]:
    """The state in the file ``path`` and its history length, once the file is shown to be a
    session saved from a sandbox like ``sandbox``; ``SnapshotError`` naming what is wrong."""
    data = Path(path).read_bytes()
    try:
        snapshot, meta = load_snapshot(data)
    except ValueError as exc:
        raise SnapshotError(f"cannot load the session in {path}: {exc}") from None
    if meta.get("kind") != KIND:
        raise SnapshotError(f"cannot load the session in {path}: it is not a saved session")
    if meta.get("version") != VERSION:
        raise SnapshotError(
            f"cannot load the session in {path}: its format version {meta.get('version')!r} "
            f"is not this release's ({VERSION})"
        )
    ours = session_meta(sandbox)
    for field, what in _FIELDS.items():
        if meta.get(field) != ours[field]:
            raise SnapshotError(
                f"cannot load the session in {path}: it was saved from a sandbox with {what}: "
                f"{_shown(meta.get(field))}, this sandbox's is {_shown(ours[field])}"
            )
    statements = meta.get("statements")
    if type(statements) is not int or statements < 1:
        raise SnapshotError(f"cannot load the session in {path}: its history length is malformed")
    return snapshot, statements


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _shown(value: object) -> str:
    """A meta value in a message: digests shortened."""
    text = repr(value)
    return text[:20] + "...'" if isinstance(value, str) and len(value) == 64 else text
