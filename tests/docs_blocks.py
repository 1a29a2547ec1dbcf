"""The code blocks of README.md and the documentation pages (docs/), as tests/test_docs.py runs
them: parsing (which blocks, in which language, skipped or not) and, run as a script, the
Python blocks of one page in order, in one namespace.

A fenced block tagged ``python`` (or ``py``) is Python; one tagged ``sh``, ``bash``, ``shell``
or ``console`` holds shell commands, one a line (a line ending in ``\\`` goes on). Other
fences (``text``, ``json``, ``rust``, ``c``, none) are shown, not run. The line before a
fence may say how to treat the block::

    <!-- docs: skip (needs a Ray cluster) -->

skips it; the reason in parentheses is required. A shell command expected to fail ends with a
comment naming its exit status: ``wasm-sandbox run examples/memory_hog.wat  # exit 120``.

    python tests/docs_blocks.py PAGE    run PAGE's Python blocks (the working directory is
                                        where their files are: tests/test_docs.py prepares it)
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON_TAGS = frozenset({"python", "py"})
SHELL_TAGS = frozenset({"sh", "bash", "shell", "console"})
DIRECTIVE = re.compile(r"^<!--\s*docs:(.*?)-->\s*$")
SKIP = re.compile(r"^\s*skip\s*\((?P<reason>[^)]*\S[^)]*)\)\s*$")
FENCE = re.compile(r"^```(?P<tag>[\w-]*)")
EXPECTED_EXIT = re.compile(r"\s#\s*exit (?P<status>\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced code block of a page: its tag, its first line's number (1-based) in the
    page, its text, and why it is skipped (None when it runs)."""

    page: Path
    tag: str
    line: int
    code: str
    skip: str | None

    @property
    def kind(self) -> str | None:
        """``"python"``, ``"shell"``, or None for a block that is only shown."""
        if self.tag in PYTHON_TAGS:
            return "python"
        if self.tag in SHELL_TAGS:
            return "shell"
        return None

    def commands(self) -> list[tuple[str, int]]:
        """A shell block's commands, each with the exit status it must end with (0 unless a
        trailing ``# exit N`` says otherwise); blank and comment lines are left out."""
        commands: list[tuple[str, int]] = []
        pending = ""
        for text in self.code.splitlines():
            if text.endswith("\\"):
                pending += (text[:-1].strip() if pending else text[:-1].rstrip()) + " "
                continue
            command, pending = (pending + text.strip() if pending else text), ""
            if not command.strip() or command.lstrip().startswith("#"):
                continue
            expected = EXPECTED_EXIT.search(command)
            commands.append((command, int(expected["status"]) if expected else 0))
        return commands


class DirectiveError(ValueError):
    """A ``<!-- docs: ... -->`` comment that is not a known directive (a skip without a reason
    is one)."""


def pages() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, in order."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        code = "\n".join(lines[index + 1 : end]) + "\n"
        skip = _directive(page, lines, index)
        found.append(Block(page, fence["tag"], index + 2, code, skip))
        index = end + 1
    return found


def _directive(page: Path, lines: list[str], fence: int) -> str | None:
    """The skip reason the line before the fence at ``fence`` gives, if it is a directive."""
    before = fence - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    match = DIRECTIVE.match(lines[before]) if before >= 0 else None
    if match is None:
        return None
    skip = SKIP.match(match[1])
    if skip is None:
        raise DirectiveError(
            f"{page.name}:{before + 1}: unknown docs directive {lines[before]!r}: "
            "write <!-- docs: skip (the reason) -->"
        )
    return skip["reason"].strip()


def directives(page: Path) -> list[tuple[int, str]]:
    """Every ``<!-- docs: ... -->`` line of ``page`` (number, text), wherever it is."""
    return [
        (number, line)
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if line.startswith("<!-- docs:")
    ]


def run_python_blocks(page: Path) -> None:
    """Execute ``page``'s runnable Python blocks in order, in one namespace; a traceback names
    the page and the line as it is in the page."""
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in blocks(page):
        if block.kind != "python" or block.skip is not None:
            continue
        started = time.monotonic()
        code = compile("\n" * (block.line - 1) + block.code, str(page), "exec")
        exec(code, namespace)
        elapsed = time.monotonic() - started
        print(f"{page.name}:{block.line}: ran in {elapsed:.2f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    run_python_blocks(Path(sys.argv[1]).resolve())
