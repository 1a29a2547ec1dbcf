"""Structure figures of the package (issue 11's before/after table): the classes with the most
mutable fields, the execution module's fan-out, private-member accesses across modules (ruff
SLF001), modules per subpackage and the longest modules.

    python scripts/structure_figures.py [SRC_DIR]     (default: src/wasm_sandbox)
"""

from __future__ import annotations

import ast
import collections
import subprocess
import sys
from pathlib import Path


def _is_frozen_dataclass(node: ast.ClassDef) -> bool:
    for deco in node.decorator_list:
        if isinstance(deco, ast.Call) and getattr(deco.func, "id", "") == "dataclass":
            return any(
                k.arg == "frozen" and isinstance(k.value, ast.Constant) and k.value.value
                for k in deco.keywords
            )
    return False


def _is_dataclass(node: ast.ClassDef) -> bool:
    return any(
        getattr(d, "id", "") == "dataclass"
        or getattr(getattr(d, "func", None), "id", "") == "dataclass"
        for d in node.decorator_list
    )


def mutable_fields(node: ast.ClassDef) -> int:
    """Fields an instance of the class may change: a non-frozen dataclass's fields and every
    attribute assigned through ``self`` in its methods (a frozen class: none)."""
    if _is_frozen_dataclass(node):
        return 0
    names: set[str] = set()
    if _is_dataclass(node):
        names.update(
            s.target.id
            for s in node.body
            if isinstance(s, ast.AnnAssign)
            and isinstance(s.target, ast.Name)
            and "ClassVar" not in ast.unparse(s.annotation)
        )
    for item in node.body:
        if isinstance(item, ast.FunctionDef):
            for sub in ast.walk(item):
                targets = []
                if isinstance(sub, ast.Assign):
                    targets = sub.targets
                elif isinstance(sub, ast.AnnAssign | ast.AugAssign):
                    targets = [sub.target]
                for t in targets:
                    for el in t.elts if isinstance(t, ast.Tuple) else [t]:
                        if isinstance(el, ast.Attribute) and getattr(el.value, "id", "") == "self":
                            names.add(el.attr)
    return len(names)


def fan_out(path: Path, root: Path) -> int:
    """Distinct package modules ``path`` imports."""
    rel = path.relative_to(root).with_suffix("").parts
    here = list(rel[:-1])
    seen: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
            if node.module:
                seen.add(".".join([*base, node.module]))
            else:
                seen.update(".".join([*base, a.name]) for a in node.names)
    return len(seen)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "src/wasm_sandbox")
    files = sorted(root.rglob("*.py"))
    classes = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                classes.append((mutable_fields(node), f"{path.relative_to(root)}:{node.name}"))
    classes.sort(reverse=True)
    print("classes with the most mutable fields:")
    for count, name in classes[:3]:
        print(f"  {count:3d}  {name}")
    for candidate in ("_execution.py", "_execution/_execute.py"):  # before / after the regroup
        if (root / candidate).exists():
            print(f"fan-out of {candidate}: {fan_out(root / candidate, root)}")
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "SLF001", "--output-format",
         "concise", "--no-cache", str(root)],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    hits = [line for line in out.splitlines() if "SLF001" in line]
    per_file = collections.Counter(line.split(":")[0].replace(str(root) + "/", "") for line in hits)
    print(f"private-member accesses (SLF001): {len(hits)}  {dict(per_file)}")
    groups: collections.Counter[str] = collections.Counter()
    for path in files:
        parts = path.relative_to(root).parts
        groups[parts[0] if len(parts) > 1 else "(top level)"] += 1
    print("modules per subpackage:", dict(sorted(groups.items())))
    longest = sorted(
        ((len(p.read_text().splitlines()), str(p.relative_to(root))) for p in files), reverse=True
    )
    print("longest modules:", ", ".join(f"{name} {n}" for n, name in longest[:3]))


if __name__ == "__main__":
    main()
