"""The runnable examples the README points to keep working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("quickstart.py", "Fuel exhausted: used 10000000, limit 10000000"),
        ("data_call.py", "guest said: GuestError: rows: expected a list"),
        ("files.py", "escape refused"),
        ("agent_session.py", "loaded in a new process: -35.0"),
        ("agent_task.py", "a PNG: True"),
    ],
)
def test_example_runs(script: str, expected: str, tmp_path: Path) -> None:
    """Each example exits 0 and prints what it promises."""
    # The run's cache when there is one: it holds the prepared Python runtime.
    cache = os.environ.get("WASM_SANDBOX_CACHE_DIR", str(tmp_path))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), WASM_SANDBOX_CACHE_DIR=cache)
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
