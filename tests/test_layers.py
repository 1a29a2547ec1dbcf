"""The package's layers, kept true by tests: each subpackage imports only from the layers below
it (or its own), and the code that runs many executions reaches a sandbox through its named
internal API, never through its private members."""

from __future__ import annotations

import ast
from pathlib import Path

import wasm_sandbox

PACKAGE = Path(wasm_sandbox.__file__).parent

# Lowest first. A module may import from its own layer and the layers below it.
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"_errors", "_platform", "_units"}),
    ("config", {"_config"}),
    ("observe", {"_observe"}),
    ("wasi", {"_wasi"}),
    ("runtime", {"_runtime"}),
    ("guests", {"_guests"}),
    ("execution", {"_execution"}),
    (
        "api",
        {"__init__", "__main__", "_builder", "_bundle", "_cli", "_invocation", "_mcp", "_oneliners", "_prepare",
         "_sandbox", "_scaling", "_session", "_sessionfile"},
    ),
]  # fmt: skip
RANK = {top: rank for rank, (_, tops) in enumerate(LAYERS) for top in tops}


def _module(path: Path) -> tuple[list[str], bool]:
    """(the dotted parts of ``path``'s module inside the package, whether it is a package)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        return parts[:-1], True
    return parts, False


def _imported(path: Path) -> set[str]:
    """The package's top-level names (``_config``, ``_errors``...) that ``path`` imports,
    anywhere in it (module level, functions, TYPE_CHECKING blocks)."""
    parts, is_package = _module(path)
    return _imports_in(path.read_text(), parts if is_package else parts[:-1])


def _imports_in(text: str, here: list[str]) -> set[str]:
    """The top-level names the code ``text``, in the package ``here``, imports."""
    tops: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
            target = [*base, *(node.module.split(".") if node.module else [])]
            if target:
                tops.add(target[0])
            else:  # from . import a, b (the package itself): each name is a top-level one
                tops.update(alias.name for alias in node.names if alias.name.startswith("_"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            dotted = node.module.split(".")
            if dotted[0] == "wasm_sandbox" and len(dotted) > 1:
                tops.add(dotted[1])
    return tops


def _top(path: Path) -> str:
    parts, _ = _module(path)
    return parts[0] if parts else "__init__"


def test_every_module_belongs_to_a_layer() -> None:
    """A new module or subpackage is placed in a layer on purpose (add it to LAYERS)."""
    unplaced = {_top(path) for path in PACKAGE.rglob("*.py")} - set(RANK)
    assert not unplaced


def test_modules_import_only_from_their_layer_and_below() -> None:
    """No import goes up: config never imports the runtime, the WASI layer never imports
    the engine or the API, the runtime never imports a guest or an execution."""
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        top = _top(path)
        for imported in _imported(path):
            if imported in RANK and RANK[imported] > RANK[top]:
                upward.append(f"{path.relative_to(PACKAGE)} imports {imported}")
    assert upward == []


def test_the_import_walker_sees_every_shape_of_import() -> None:
    """The check above can fail: relative imports of every shape, lazy ones inside functions
    and absolute ones are all seen."""
    code = (
        "from .._runtime import _engine\n"
        "from .. import _sandbox, _errors as e\n"
        "from ._limits import X\n"
        "def f():\n    from wasm_sandbox._scaling._balancer import LoadBalancer\n"
    )
    assert _imports_in(code, ["_config"]) == {"_runtime", "_sandbox", "_errors", "_config",
                                              "_scaling"}  # fmt: skip


NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}  # public, despite the underscore
SCALE_OUT = ("_scaling", "_session.py", "_oneliners.py", "_cli.py")


def test_scale_out_code_uses_no_private_member_of_another_object() -> None:
    """The balancer, the backends, sessions, the one-liners and the CLI reach a sandbox only
    through its named internal API (``_invocation``): no ``other._private`` access."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        if not rel.startswith(SCALE_OUT):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in NAMEDTUPLE_API
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                offenders.append(f"{rel}:{node.lineno} .{node.attr}")
    assert offenders == []
