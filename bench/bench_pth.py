"""What ``pytest-fastcollect.pth`` costs every other Python process: ``python -c pass`` A/B.

Alternates ``python -c pass`` (the interpreter given, default this one) with
the ``.pth`` file in place and with it renamed away, ``--reps`` times each
(default 300), and prints medians and the difference. It renames the file in
that interpreter's site-packages, so point it at a scratch virtualenv:

    python -m venv /tmp/v && /tmp/v/bin/pip install . && python bench/bench_pth.py --python /tmp/v/bin/python

The file is always put back, even on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PTH = "pytest-fastcollect.pth"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--reps", type=int, default=300)
    args = parser.parse_args(argv)
    purelib = subprocess.run(
        [args.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    pth = Path(purelib) / PTH
    off = pth.with_suffix(".pth-off")
    if not pth.exists():
        print(f"{pth} is not installed", file=sys.stderr)
        return 1
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    samples: dict[str, list[float]] = {"with": [], "without": []}

    def once() -> float:
        started = time.perf_counter()
        subprocess.run([args.python, "-c", "pass"], env=env, check=True)
        return time.perf_counter() - started

    try:
        for _ in range(20):  # warm the page cache and bytecode
            once()
        for rep in range(args.reps):
            for variant in ("with", "without") if rep % 2 else ("without", "with"):
                if variant == "without":
                    pth.rename(off)
                try:
                    samples[variant].append(once())
                finally:
                    if variant == "without":
                        off.rename(pth)
    finally:
        if off.exists() and not pth.exists():
            off.rename(pth)
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    result = {
        "python": args.python,
        "reps": args.reps,
        "median_ms": med,
        "difference_us": (med["with"] - med["without"]) * 1000,
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
