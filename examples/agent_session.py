"""An agent-style session: numpy pre-initialised once, state kept across statements, a
checkpoint before a risky step, a fork to try two continuations, and the session saved to
disk and continued in another process.

    PYTHONPATH=src python examples/agent_session.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import wasm_sandbox as ws


def build() -> ws.WasmSandbox:
    """The sandbox every step of the agent uses: the same in both processes."""
    return (
        ws.WasmSandbox.builder()
        .source("")
        .language("python")
        .preinitialize("import numpy as np")  # numpy imported once, at build
        .memory_limit("512MiB")
        .timeout_duration("2s")
        .max_fuel(None)  # the timeout bounds each step
        .build()
    )


def continue_saved(path: str) -> None:
    """The second process: load the saved session and go on where it stopped."""
    with build().load_session(path) as session:
        session.exec("data = data + 1")
        print("loaded in a new process:", session.eval("float(data.sum())"))


def main() -> None:
    sandbox = build()
    with sandbox.session() as session:
        session.exec("data = np.arange(10.0)")  # the model's first step
        before = session.checkpoint()
        try:
            session.exec("while True: pass")  # a runaway step: stopped at the timeout
        except ws.ExecutionTimeout:
            print("runaway step stopped; data kept:", session.eval("float(data.sum())"))
        session.exec("data = data * 100")  # a step the agent regrets
        session.rollback(before)
        print("after rollback:", session.eval("float(data.sum())"))

        fork = session.fork()  # two continuations from the same state
        with fork:
            fork.exec("data = data ** 2")
            session.exec("data = -data")
            forked, original = fork.eval("float(data.sum())"), session.eval("float(data.sum())")
            print("fork:", forked, "original:", original)

        path = Path(tempfile.mkdtemp()) / "session.wsbx"
        session.save(path)
        print("saved:", path.stat().st_size, "bytes")
    done = subprocess.run(
        [sys.executable, __file__, "--continue", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    print(done.stdout, end="")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--continue"]:
        continue_saved(sys.argv[2])
    else:
        main()
