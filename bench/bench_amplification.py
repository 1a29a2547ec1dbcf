"""Host memory under amplification attacks: the host's peak RSS while a guest asks it to copy
far more than the guest holds (iovec floods to stdout, files and sockets, a stdin read naming
60 GiB of buffers, a fetch of a body three times the guest's cap, door frames piled up).

Each attack runs in a fresh process (``tests/amplification.py``), which resets the kernel's
peak-RSS mark after one harmless call and reports the peak's growth over the RSS just before
the attack. Prints a table (growth against the bound: the guest's memory cap + 64 MiB) and
writes bench/results/amplification.json. A measurement, not a test: exits 0 (1 with
``--check`` if an attack goes past the bound or ends in a HostError).

    PYTHONPATH=src .venv/bin/python bench/bench_amplification.py [--quick] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.amplification import SCENARIOS, measure_in_child  # noqa: E402

QUICK = ("fd-write-stdout", "fd-read-stdin-pipe", "sock-send", "js-fetch")
MiB = 1 << 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--check", action="store_true", help="exit 1 if a bound is missed")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="repeatable")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "amplification.json")
    args = parser.parse_args()
    names = args.only or (list(QUICK) if args.quick else sorted(SCENARIOS))
    rows = []
    print(f"{'attack':<30} {'cap':>8} {'peak growth':>12} {'bound':>8} {'time':>7}  outcome")
    for name in names:
        row = measure_in_child(name)
        rows.append(row)
        growth, cap = int(str(row["growth_bytes"])), int(str(row["cap_bytes"]))
        row["within_bound"] = growth <= int(str(row["bound_bytes"])) and not str(
            row["outcome"]
        ).startswith("HostError")
        print(
            f"{name:<30} {cap / MiB:>6.0f}Mi {growth / MiB:>9.1f} MiB"
            f" {int(str(row['bound_bytes'])) / MiB:>6.0f}Mi {float(str(row['seconds'])):>6.2f}s"
            f"  {'ok ' if row['within_bound'] else 'OVER'} {str(row['outcome'])[:70]}"
        )
    args.json.parent.mkdir(exist_ok=True)
    env = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    report = {"date": time.strftime("%Y-%m-%d"), "environment": env, "attacks": rows}
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {args.json}")
    return 1 if args.check and not all(row["within_bound"] for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
