#!/usr/bin/env python
"""The agent toolkit: what an agent's "python" tool costs to write and to run.

    PYTHONPATH=src .venv/bin/python bench/bench_agent.py [--quick] [--json FILE]

Figures:

* ``tool lines``: lines of code (no docstrings, comments or blank lines) of the same agent
  tool written on wasm-sandbox (``bench/agent_tools/ours.py``) and on pyeryx 0.11
  (``bench/agent_tools/pyeryx.py``): run a snippet with 10 s and 256 MiB, a CSV folder
  read-only at /data and an output folder at /out, and answer stdout, stderr, the result and
  the error as JSON whatever happens. The ratio is ours / pyeryx's.
* ``fresh run_python, numpy + pandas`` (milliseconds, medians): a snippet that imports numpy
  and pandas and summarises a DataFrame, each run in a fresh interpreter: by
  ``run_python(code)`` (every run imports both), and by ``run_code`` on a sandbox built once
  with ``preinitialize("import numpy as np, pandas as pd")``. The two alternate in rounds.
* ``fresh run_python, print``: ``run_python("print('hi')")``, the one-call path's floor (a
  build from the in-process cache, then a fresh interpreter from the boot snapshot).
"""

from __future__ import annotations

import ast
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
try:
    import wasm_sandbox as ws
except ImportError:  # run without PYTHONPATH=src: use the checkout's sources
    sys.path.insert(0, str(REPO / "src"))
    import wasm_sandbox as ws

from bench._args import bench_parser  # noqa: E402 - after the path is set

SNIPPET = (
    "import numpy as np, pandas as pd\n"
    "df = pd.DataFrame({'region': ['n', 's', 'n', 'e'] * 16, 'amount': np.arange(64.0)})\n"
    "df.groupby('region')['amount'].sum()"
)
EXPECTED = {"e": 528.0, "n": 992.0, "s": 496.0}


def code_lines(path: Path) -> int:
    """Lines of ``path`` that are code: not blank, not a comment, not a docstring."""
    text = path.read_text()
    tree = ast.parse(text)
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                doc_lines.update(range(body[0].lineno, (body[0].end_lineno or 0) + 1))
    return sum(
        1
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.strip().startswith("#") and number not in doc_lines
    )


def timed(run: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = run()
    return (time.perf_counter() - start) * 1000, value


def main() -> int:
    args = bench_parser(__doc__ or "", "agent").parse_args()
    rounds = 3 if args.quick else 9
    figures: dict[str, Any] = {}

    ours = code_lines(HERE / "agent_tools" / "ours.py")
    peer = code_lines(HERE / "agent_tools" / "pyeryx.py")
    figures["tool_lines"] = {"ours": ours, "pyeryx": peer, "ratio": round(ours / peer, 2)}
    print(f"agent tool, lines of code: ours {ours}, pyeryx {peer} ({ours / peer:.2f}x)")

    prepared = (
        ws.WasmSandbox.builder()
        .language("python")
        .source("")
        .memory_limit("256MiB")
        .preinitialize("import numpy as np, pandas as pd")
        .build()
    )
    plain: list[float] = []
    preinit: list[float] = []
    for _ in range(rounds):
        ms, result = timed(lambda: ws.run_python(SNIPPET))
        assert result.result == EXPECTED, result
        plain.append(ms)
        for _ in range(3):
            ms, result = timed(lambda: prepared.run_code(SNIPPET))
            assert result.result == EXPECTED, result
            preinit.append(ms)
    without, with_ = statistics.median(plain), statistics.median(preinit)
    figures["fresh_numpy_pandas_ms"] = {
        "run_python": round(without, 2),
        "preinitialized_run_code": round(with_, 2),
        "ratio": round(with_ / without, 4),
    }
    print(
        f"fresh numpy + pandas snippet: run_python {without:.1f} ms, preinitialised sandbox "
        f"{with_:.2f} ms (1/{without / with_:.0f})"
    )

    ws.run_python("print('hi')")  # the build cached in this process
    hi = [timed(lambda: ws.run_python("print('hi')"))[0] for _ in range(rounds * 10)]
    figures["fresh_print_ms"] = round(statistics.median(hi), 3)
    print(f"fresh run_python(\"print('hi')\"): {statistics.median(hi):.2f} ms")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
