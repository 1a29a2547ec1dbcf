"""What the MCP tools answer and how they describe themselves: a ``CodeResult`` as structured
content plus a readable text block (with a hint an agent can act on when a limit or the
network policy stopped the code), and tool descriptions that state the server's limits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._observe._code import CodeError, CodeResult
from .._units import format_duration, format_size
from ._options import ServerOptions

__all__ = ["Answer", "code_answer", "describe_run", "describe_session", "extra_packages", "failure"]

# What the Python runtime bundles that code is likely to import (the README's table has all).
PYTHON_PACKAGES = (
    "numpy, pandas, scipy, scikit-learn, statsmodels, sympy, networkx, mpmath, patsy, "
    "python-dateutil, pyyaml, jinja2, regex, lxml, beautifulsoup4, html5lib, openpyxl, "
    "xlsxwriter, xlrd, pypdf, pillow, reportlab, tabulate, toolz, more-itertools, attrs"
)


@dataclass(frozen=True, slots=True)
class Answer:
    """One tool's answer: ``data`` (the structured content, JSON values), ``text`` (the same
    for a reader) and whether it reports an error."""

    data: dict[str, Any]
    text: str
    is_error: bool = False


def code_answer(result: CodeResult, options: ServerOptions, *, in_session: bool) -> Answer:
    """The answer of a run or a session statement: stdout, stderr, result and error."""
    data = result.to_dict()
    del data["report"]
    parts = []
    if result.stdout:
        parts.append("stdout:\n" + result.stdout.rstrip("\n"))
    if result.stderr:
        parts.append("stderr:\n" + result.stderr.rstrip("\n"))
    error = result.error
    if error is None:
        if data["result"] is not None:
            parts.append("result: " + json.dumps(data["result"], ensure_ascii=False))
        elif not parts:
            parts.append("ok: no output, result None (end with an expression to return a value)")
        return Answer(data, "\n\n".join(parts))
    traceback = error.traceback.rstrip("\n")
    if traceback.endswith("\n" + str(error)) or traceback == str(error):
        parts.append("error:\n" + traceback)  # Python's traceback ends with "Type: message"
    else:
        parts.append(f"error: {error}" + (f"\n{traceback}" if traceback else ""))
    parts.extend(_hints(error, result, options, in_session))
    return Answer(data, "\n\n".join(parts), is_error=True)


def failure(kind: str, message: str) -> Answer:
    """An error answer that is not a run's (an unknown session, the session cap, a runtime
    that is not installed): the same shape, no output."""
    error = {"type": kind, "message": message, "traceback": "", "limit": None}
    data = {"ok": False, "stdout": "", "stderr": "", "result": None, "error": error}
    return Answer(data, f"error: {kind}: {message}", is_error=True)


def _hints(
    error: CodeError, result: CodeResult, options: ServerOptions, in_session: bool
) -> list[str]:
    """What an agent can do about ``error``, when the server knows more than its message."""
    hints = []
    limit = error.limit
    if limit == "timeout":
        hints.append(
            f"The code was stopped at the time limit ({_timeout(options)} per call): make it "
            "faster, or do the work in smaller pieces."
        )
    elif limit == "memory":
        hints.append(
            f"The code was stopped at the memory limit ({format_size(options.memory)}): use "
            "less memory (smaller data, chunks, del what is no longer needed)."
        )
    elif limit == "fuel":
        hints.append(
            f"The code used up its instruction budget ({options.fuel:,} per call): do less work "
            "per call."
        )
    refusals = 0 if result.report is None else result.report.network_refusals
    if refusals:
        hints.append(f"The sandbox refused {refusals} network connection(s): {_network(options)}.")
    if error.type == "SessionLost":
        hints.append(
            "The session could not be restored and is closed (its variables are gone): "
            "open a new one with session_open."
        )
    elif in_session and (limit is not None or error.type == "SystemExit"):
        hints.append("The session is back in the state it had before this code ran.")
    return hints


def extra_packages(python_path: tuple[str, ...], most: int = 40) -> list[str]:
    """The importable names ``--python-path`` adds (a wheel's distribution name; a
    directory's packages and modules), for the tool description: at most ``most``."""
    names: list[str] = []
    for entry in map(Path, python_path):
        if entry.suffix == ".whl":
            names.append(entry.name.split("-")[0])
        elif entry.is_dir():
            names += sorted(
                child.stem
                for child in entry.iterdir()
                if not child.name.startswith(("_", "."))
                and (child.suffix == ".py" or (child / "__init__.py").is_file())
            )
    return names[:most]


def _timeout(options: ServerOptions) -> str:
    return "none" if options.timeout is None else format_duration(options.timeout)


def _network(options: ServerOptions) -> str:
    if not options.allow_network:
        return "this server gives the code no network access"
    return "the code may connect only to " + ", ".join(options.allow_network)


def _limits(options: ServerOptions) -> str:
    timeout = "no time limit" if options.timeout is None else f"{_timeout(options)} wall-clock"
    fuel = "" if options.fuel is None else f", {options.fuel:,} instructions"
    return f"{timeout}, {format_size(options.memory)} memory{fuel}"


def _files(options: ServerOptions, language: str) -> str:
    mounts = [
        f"{m.guest_path} ({'read-only' if m.read_only else 'writable'})" for m in options.mounts
    ]
    return "Files: " + (", ".join(mounts) if mounts else "none of the host's") + "."


def _world(options: ServerOptions, language: str) -> str:
    """The paragraph every tool of ``language`` shares: limits, packages, files, network."""
    if language == "python":
        extra = extra_packages(options.python_path)
        packages = (
            f"Python 3.15 with its standard library and {PYTHON_PACKAGES}"
            + (f", {', '.join(extra)}" if extra else "")
            + "; nothing can be installed (no pip, no subprocesses)."
        )
    else:
        packages = (
            "JavaScript (QuickJS-NG, ES2023): console.log, promises, setTimeout, fetch; no "
            "Node.js APIs, no npm packages, no require."
        )
    network = (
        "Network: none, every connection is refused."
        if not options.allow_network
        else f"Network: only to {', '.join(options.allow_network)} (host:port patterns)."
    )
    return (
        f"Limits per call: {_limits(options)}; code that exceeds one is stopped and the "
        f"answer is an error naming the limit. {packages} {_files(options, language)} {network}"
    )


def describe_run(language: str, options: ServerOptions) -> str:
    """The description of ``run_python`` / ``run_javascript``."""
    name = "Python" if language == "python" else "JavaScript"
    last = (
        "the value of its last line if that is an expression (as in a notebook cell: end "
        "with an expression such as `df.describe()` or `total` to get it back as JSON)"
        if language == "python"
        else "the value of its last statement (as in a REPL; a promise is awaited)"
    )
    return (
        f"Run {name} code in a fresh, isolated WebAssembly sandbox and return what it printed "
        f"(stdout, stderr) and {last}. Nothing persists between calls: to keep variables, "
        f"use session_open and session_exec. {_world(options, language)} An exception is "
        "returned as an error with its type, message and traceback."
    )


def describe_session(tool: str, options: ServerOptions) -> str:
    """The description of a session tool (``session_open``, ``session_exec``...)."""
    idle = format_duration(options.session_idle)
    if tool == "session_open":
        network = _network(options)
        return (
            "Open a session: one Python or JavaScript interpreter in an isolated WebAssembly "
            "sandbox whose variables, functions and imports are kept between session_exec "
            f"calls. Returns its session_id. At most {options.max_sessions} sessions are open "
            f"at once; a session unused for {idle} is closed; close it with session_close "
            "when done. Each session_exec call has the limits, packages and files of "
            f"run_python / run_javascript ({_limits(options)}; the memory holds the whole "
            f"session's state); {network}."
        )
    if tool == "session_exec":
        return (
            "Run code in an open session (session_open), in the globals earlier calls left: "
            "returns stdout, stderr and the value of the last line if it is an expression, "
            "as run_python does. An exception keeps what ran before it; code stopped by a "
            "limit leaves the session as it was before that code."
        )
    return "Close a session opened with session_open, releasing its interpreter."
