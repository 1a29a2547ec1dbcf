"""Every code block of README.md and the documentation pages runs as shown (tests/docs_blocks.py
says which blocks and how to skip one), with the files the blocks name (docs/snippets/, and
examples/), and the API reference documents every public name."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import wasm_sandbox as ws
from tests.docs_blocks import ROOT, Block, DirectiveError, blocks, directives, pages

SNIPPETS = ROOT / "docs" / "snippets"


def _runnable(kind: str) -> list[Path]:
    """The pages with at least one block of ``kind`` that is not skipped."""
    return [
        page
        for page in pages()
        if any(block.kind == kind and block.skip is None for block in blocks(page))
    ]


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of docs/snippets (the files the blocks name: tools.py, tool.js, data/...)
    with the repository's examples/, src/ and bench/ linked in, as the blocks' working
    directory; a shim directory puts ``wasm-sandbox`` and ``python`` (this interpreter) first
    on the PATH."""
    work = tmp_path / "work"
    shutil.copytree(SNIPPETS, work)
    for name in ("examples", "src", "bench"):
        (work / name).symlink_to(ROOT / name)
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, command in [("wasm-sandbox", "-m wasm_sandbox"), ("python", ""), ("python3", "")]:
        shim = shims / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {command} "$@"\n')
        shim.chmod(0o755)
    return work


def _env(work: Path) -> dict[str, str]:
    shims = work.parent / "bin"
    return dict(
        os.environ, PYTHONPATH=str(ROOT / "src"), PATH=f"{shims}{os.pathsep}{os.environ['PATH']}"
    )


@pytest.mark.timeout(400)
@pytest.mark.parametrize("page", _runnable("python"), ids=_page_id)
def test_python_blocks_run(page: Path, workdir: Path) -> None:
    """The page's Python blocks run in order, in one namespace, in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "docs_blocks.py"), str(page)],
        cwd=workdir, env=_env(workdir), capture_output=True, text=True, timeout=380, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-6000:]


@pytest.mark.timeout(400)
@pytest.mark.parametrize("page", _runnable("shell"), ids=_page_id)
def test_shell_commands_run(page: Path, workdir: Path) -> None:
    """Each command of the page's shell blocks exits as its block says (0, or ``# exit N``);
    ``.venv/bin/`` is the interpreter running the tests."""
    for block in blocks(page):
        if block.kind != "shell" or block.skip is not None:
            continue
        for command, expected in block.commands():
            where = f"{page.name}:{block.line}: {command}"
            done = subprocess.run(
                ["bash", "-c", command.replace(".venv/bin/", "")],
                cwd=workdir, env=_env(workdir), capture_output=True, text=True, timeout=180,
                check=False,
            )  # fmt: skip
            assert done.returncode == expected, f"{where}\n{done.stdout[-2000:]}{done.stderr}"


def test_skips_give_a_reason_and_precede_a_runnable_block() -> None:
    """Every ``<!-- docs: ... -->`` line is a skip with a reason, right before a Python or
    shell block."""
    for page in pages():
        skipped = {(block.line, block.kind) for block in blocks(page) if block.skip is not None}
        lines = page.read_text().splitlines()
        for number, text in directives(page):
            after = number
            while after < len(lines) and not lines[after].strip():
                after += 1
            fence = after + 2  # the first line of the block that follows, 1-based
            assert (fence, "python") in skipped or (fence, "shell") in skipped, (
                f"{page.name}:{number}: {text!r} is not right before a Python or shell block"
            )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- docs: skip -->", "unknown docs directive"),
        ("<!-- docs: skip () -->", "unknown docs directive"),
        ("<!-- docs: skip ( ) -->", "unknown docs directive"),
        ("<!-- docs: slow -->", "unknown docs directive"),
    ],
    ids=["no-reason", "empty-reason", "blank-reason", "unknown"],
)
def test_a_skip_without_a_reason_fails(text: str, message: str, tmp_path: Path) -> None:
    """A skip must say why; an unknown directive is an error, not ignored."""
    page = tmp_path / "page.md"
    page.write_text(f"{text}\n```python\nprint(1)\n```\n")
    with pytest.raises(DirectiveError, match=message):
        blocks(page)


def test_blocks_are_parsed_with_their_kind_skip_and_commands(tmp_path: Path) -> None:
    """Tags choose the kind; a skip's reason is kept; a shell block's commands carry their
    expected exit status, continuation lines joined, comments left out."""
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nx = 1\n```\n\n<!-- docs: skip (needs a Ray cluster) -->\n```sh\n"
        "# a comment\nwasm-sandbox run a.wat  # exit 120\nwasm-sandbox run \\\n  b.wat\n```\n"
        "```json\n{}\n```\n"
    )
    python, shell, json = blocks(page)
    assert (python.kind, python.line, python.skip) == ("python", 2, None)
    assert (shell.kind, shell.skip) == ("shell", "needs a Ray cluster")
    assert shell.commands() == [
        ("wasm-sandbox run a.wat  # exit 120", 120),
        ("wasm-sandbox run b.wat", 0),
    ]
    assert json.kind is None
    assert Block(page, "console", 1, "", None).kind == "shell"


def test_the_api_reference_documents_every_public_name_once() -> None:
    """docs/reference/ has one ``::: wasm_sandbox.NAME`` per name of ``__all__``."""
    text = "".join(page.read_text() for page in (ROOT / "docs" / "reference").glob("*.md"))
    documented = re.findall(r"^::: wasm_sandbox\.(\w+)$", text, re.MULTILINE)
    assert sorted(documented) == sorted(ws.__all__)
