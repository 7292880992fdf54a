"""`python -m bench [--quick] [--only TOPIC] [--markdown]`: run every benchmark, print one table.

Each row: what was measured, the baseline measured in the same run, their ratio, and the aim.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import platform
import sys
import time
from pathlib import Path

COLUMNS = ("name", "measured_s", "baseline_name", "baseline_s", "ratio", "aim")


def discover() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)])
                  if m.name.startswith("bench_"))


def machine() -> str:
    import os

    cores = os.cpu_count()
    memory = ""
    try:
        with open("/proc/meminfo") as meminfo:
            kb = int(meminfo.readline().split()[1])
            memory = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    return (f"{platform.machine()} {cores} cores{memory}, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def format_row(row: dict) -> list[str]:
    def seconds(value: float) -> str:
        return f"{value * 1000:.2f} ms" if value < 1 else f"{value:.2f} s"

    return [row["name"], seconds(row["measured_s"]), row["baseline_name"],
            seconds(row["baseline_s"]), f"{row['ratio']:.2f}×", str(row["aim"])]


def render(rows: list[dict], markdown: bool) -> str:
    header = ["measured", "time", "baseline (same run)", "baseline time", "ratio", "aim"]
    table = [header] + [format_row(r) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in table[1:]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                     for r in table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", action="append", default=[],
                        help="run only bench_<TOPIC> (repeatable)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    started = time.perf_counter()
    for name in discover():
        if args.only and name.removeprefix("bench_") not in args.only:
            continue
        print(f"running {name} …", file=sys.stderr, flush=True)
        module = importlib.import_module(f"bench.{name}")
        rows.extend(module.run(quick=args.quick))
    print(render(rows, args.markdown))
    print(f"\nMachine: {machine()}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
