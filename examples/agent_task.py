"""The agent task of issue 14, end to end: an agent's "python" tool runs model-written code
on a mounted CSV with pandas, returns a JSON summary and saves a matplotlib chart as a PNG in
an output folder, under 10 s and 256 MiB. A runaway snippet and a failing one come back as
answers the model can act on, never as exceptions.

    PYTHONPATH=src .venv/bin/python examples/agent_task.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from wasm_sandbox import Mount, run_python

SALES = """region,month,amount
north,2024-01,120.5
south,2024-01,98.0
north,2024-02,130.25
south,2024-02,101.5
east,2024-02,87.0
east,2024-03,
north,2024-03,141.0
"""

# What a model might write for "summarise sales by region and plot them".
MODEL_CODE = """
import pandas as pd
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

sales = pd.read_csv("/data/sales.csv")
by_region = sales.groupby("region")["amount"].agg(["sum", "mean", "count"]).round(2)
print(f"{len(sales)} rows, {sales['amount'].isna().sum()} missing amounts")

ax = by_region["sum"].plot.bar(title="Sales by region")
ax.set_ylabel("amount")
plt.tight_layout()
plt.savefig("/out/sales_by_region.png", dpi=80)

{"regions": by_region.reset_index(), "total": sales["amount"].sum(),
 "missing": sales["amount"].isna().sum()}
"""


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def python_tool(code: str, data: Path, out: Path, timeout: float = 10) -> dict:
    """The agent's tool: one call, one JSON answer."""
    mounts = [Mount.directory(data, "/data"), Mount.directory(out, "/out", read_only=False)]
    return run_python(code, timeout=timeout, memory="256MiB", mounts=mounts).to_dict()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp, "data"), Path(tmp, "out")
        data.mkdir()
        out.mkdir()
        (data / "sales.csv").write_text(SALES)

        answer = python_tool(MODEL_CODE, data, out)
        assert answer["ok"], answer["error"]
        print("stdout:", answer["stdout"].strip())
        print("result:", json.dumps(answer["result"]))
        png = out / "sales_by_region.png"
        is_png = png.read_bytes().startswith(PNG_MAGIC)
        print(f"chart: {png.name}, {png.stat().st_size} bytes, a PNG: {is_png}")

        runaway = python_tool("print('thinking...')\nwhile True:\n    pass", data, out, timeout=2)
        print("runaway:", runaway["error"]["limit"], "-", runaway["error"]["message"])
        print("runaway printed:", repr(runaway["stdout"]))

        broken = python_tool("import pandas as pd\npd.read_csv('/data/missing.csv')", data, out)
        print("broken:", broken["error"]["type"], "-", broken["error"]["message"])


if __name__ == "__main__":
    main()
