"""Summarize benchmark JSON files (bench_daemon, bench_runs, bench_reload, bench_warm,
bench_overhead, bench_early, bench_parallel, bench_watch) in one table.

Run: ``python bench/report.py bench-results/*.json``. Exits 1 when a file is
missing, recorded an error, or has a failed sanity check (targets that are
missed are reported, not failed: these are benchmarks, not timed tests).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import benchlib as b


def _median(mode: dict[str, Any], key: str) -> float | None:
    value = mode["results"].get(key, {}).get("median_ms")
    return None if value is None else float(value)


def rows_daemon(mode: dict[str, Any]) -> list[list[str]]:
    d = mode["derived"]
    return [
        ["pytest --daemon-status", b.fmt(_median(mode, "status_cli"), " ms")],
        ["  pytest --version (floor)", b.fmt(_median(mode, "version_cli"), " ms")],
        ["DaemonClient.get_status() round trip", b.fmt(_median(mode, "get_status"), " ms")],
        ["DaemonClient.collect", b.fmt(_median(mode, "daemon_collect"), " ms")],
        ["cold pytest --collect-only -q", b.fmt(_median(mode, "cold_collect_cli"), " ms")],
        ["  cold / DaemonClient.collect", b.fmt(d["cold_collect_over_daemon_collect"], "x")],
        [
            "  cold / warm pytest --collect-only -q",
            b.fmt(d["cold_collect_over_warm_collect_cli"], "x"),
        ],
    ]


def rows_runs(mode: dict[str, Any]) -> list[list[str]]:
    d, t, f = mode["derived"], mode["targets"], mode["first_after_start"]
    return [
        ["pytest --version (floor)", b.fmt(_median(mode, "version"), " ms")],
        ["cold pytest FILE", b.fmt(_median(mode, "cold"), " ms")],
        ["warm pytest FILE", b.fmt(_median(mode, "warm"), " ms")],
        ["thin pytest-fastcollect run FILE", b.fmt(_median(mode, "thin"), " ms")],
        ["test bodies, cold run (junitxml)", b.fmt(mode["body_ms"], " ms")],
        ["test bodies, warm run (junitxml)", b.fmt(mode.get("warm_body_ms"), " ms")],
        [
            "  cold / warm, cold / thin",
            f"{b.fmt(d['cold_over_warm'], 'x')}, {b.fmt(d['cold_over_thin'], 'x')}",
        ],
        [
            "  warm - --version - bodies (<= 100 ms)",
            f"{b.fmt(d['warm_over_version_minus_body_ms'], ' ms')} "
            f"{_mark(t['warm_within_100ms_of_version_plus_body'])}",
        ],
        [
            "  thin - bodies (<= 60 ms)",
            f"{b.fmt(d['thin_minus_body_ms'], ' ms')} {_mark(t['thin_within_60ms_of_body'])}",
        ],
        [
            "  strict: the same against the warm run's bodies",
            f"{b.fmt(d.get('warm_over_version_minus_warm_body_ms'), ' ms')} "
            f"{_mark(t.get('strict_warm_within_100ms'))}, "
            f"{b.fmt(d.get('thin_minus_warm_body_ms'), ' ms')} "
            f"{_mark(t.get('strict_thin_within_60ms'))}",
        ],
        [
            "  first run after start vs cold",
            f"{b.fmt(f['first_median_ms'], ' ms')} vs {b.fmt(f['cold_median_ms'], ' ms')} "
            f"{_mark(t['first_run_after_start_never_slower_than_cold'])}",
        ],
    ]


def rows_reload(mode: dict[str, Any]) -> list[list[str]]:
    d, t = mode["derived"], mode["targets"]
    return [
        [
            "save-to-ready, leaf test edit (<= 100 ms)",
            f"{b.fmt(_median(mode, 'save_to_ready_leaf'), ' ms')} "
            f"{_mark(t['leaf_ready_within_100ms'])}",
        ],
        ["  daemon reload duration", b.fmt(_median(mode, "reload_duration_leaf"), " ms")],
        ["save-to-ready, core module edit", b.fmt(_median(mode, "save_to_ready_core"), " ms")],
        ["  daemon reload duration", b.fmt(_median(mode, "reload_duration_core"), " ms")],
        ["  core reload / full replacement", b.fmt(d["core_reload_over_full_replacement"], "x")],
        [
            "run right after leaf / core save",
            f"{b.fmt(_median(mode, 'run_after_leaf_save'), ' ms')} / "
            f"{b.fmt(_median(mode, 'run_after_core_save'), ' ms')}",
        ],
        ["  run with no edit", b.fmt(_median(mode, "run_no_edit"), " ms")],
        [
            "ordinary edits replaced the warm process",
            "never" if t["ordinary_edits_never_replace"] else "YES",
        ],
    ]


def rows_watch(mode: dict[str, Any]) -> list[list[str]]:
    d, t = mode["derived"], mode["targets"]
    rows = []
    for kind in ("test", "leaf"):
        rows += [
            [
                f"watch: save to footer, {kind} edit (<= 300 ms + bodies)",
                f"{b.fmt(_median(mode, f'watch_{kind}'), ' ms')} "
                f"(bodies {b.fmt(mode['bodies_ms'][kind], ' ms')}) "
                f"{_mark(t[f'{kind}_within_300ms_plus_bodies'])}",
            ],
            [
                f"  cold rerun of the same selection, {kind} edit",
                f"{b.fmt(_median(mode, f'cold_{kind}'), ' ms')} "
                f"({b.fmt(d[f'cold_over_watch_{kind}'], 'x')} watch)",
            ],
        ]
    return rows


def rows_warm(mode: dict[str, Any]) -> list[list[str]]:
    d = mode["derived"]
    rows = [
        ["steady warm ms", b.fmt(mode["steady"]["warm"]["median_ms"])],
        ["cold / warm", b.fmt(d["cold_over_warm"], "x")],
        ["cold / thin", b.fmt(d["cold_over_thin"], "x")],
    ]
    for kind, value in d["first_over_paired_cold"].items():
        rows.append([f"first after {kind} / paired cold", b.fmt(value, "x")])
    for target, ok in d["targets"].items():
        rows.append([f"target: {target}", _mark(ok)])
    return rows


def rows_overhead(mode: dict[str, Any]) -> list[list[str]]:
    d, t, g = mode["derived"], mode["targets"], mode["standby_gain_ms"]
    return [
        [
            "thin - bodies (<= 40 ms)",
            f"{b.fmt(d['thin_minus_bodies_ms'], ' ms')} {_mark(t['thin'])}; CPU "
            f"{b.fmt(d['thin_overhead_cpu_ms'], ' ms')}",
        ],
        [
            "pytest FILE - bodies (<= 70 ms)",
            f"{b.fmt(d['warm_minus_bodies_ms'], ' ms')} {_mark(t['warm'])}; CPU "
            f"{b.fmt(d['warm_overhead_cpu_ms'], ' ms')}",
        ],
        [
            "repeated collect (<= 10 ms)",
            f"{b.fmt(d['repeated_collect_ms'], ' ms')} {_mark(t['collect'])}",
        ],
        [
            "--daemon-status - python -c pass (<= 100 ms)",
            f"{b.fmt(d['status_over_python_ms'], ' ms')} {_mark(t['status'])}; CPU "
            f"{b.fmt(d.get('status_over_python_cpu_ms'), ' ms')}",
        ],
        [
            "--daemon-status, plugin / start-up hook",
            b.fmt(d.get("status_plugin_over_status"), "x"),
        ],
        [
            "standby saves (off - on), pytest FILE / thin",
            f"{b.fmt(g['warm'], ' ms')} / {b.fmt(g['thin'], ' ms')}",
        ],
    ]


def rows_early(mode: dict[str, Any]) -> list[list[str]]:
    d = mode["derived"]
    return [
        ["pytest FILE, start-up hook", b.fmt(_median(mode, "early"), " ms")],
        ["pytest FILE, plugin hand-off", b.fmt(_median(mode, "plugin"), " ms")],
        ["pytest-fastcollect run FILE", b.fmt(_median(mode, "thin"), " ms")],
        ["cold pytest --no-daemon FILE", b.fmt(_median(mode, "cold"), " ms")],
        [
            "  plugin / early, early / thin",
            f"{b.fmt(d['plugin_over_early'], 'x')}, {b.fmt(d['early_over_thin'], 'x')}",
        ],
    ]


def rows_parallel(mode: dict[str, Any]) -> list[list[str]]:
    d, t, n = mode["derived"], mode["targets"], mode["workers"]
    return [
        [f"warm pytest -n {n} (forked workers)", b.fmt(_median(mode, "warm_parallel"), " ms")],
        ["warm pytest (serial)", b.fmt(_median(mode, "warm_serial"), " ms")],
        [f"cold pytest -n {n}", b.fmt(_median(mode, "cold_parallel"), " ms")],
        ["cold pytest (serial)", b.fmt(_median(mode, "cold_serial"), " ms")],
        ["test bodies, cold serial run (junitxml)", b.fmt(mode["body_ms"], " ms")],
        [
            f"  warm serial / warm -n {n} (>= 1.6x)",
            f"{b.fmt(d['warm_serial_over_warm_parallel'], 'x')} "
            f"{_mark(t['warm_parallel_1_6x_faster_than_warm_serial'])}",
        ],
        [
            f"  cold -n {n} / warm -n {n} (>= 2x)",
            f"{b.fmt(d['cold_parallel_over_warm_parallel'], 'x')} "
            f"{_mark(t['warm_parallel_2x_faster_than_cold_parallel'])}",
        ],
    ]


ROWS = {
    "daemon": rows_daemon,
    "runs": rows_runs,
    "reload": rows_reload,
    "warm": rows_warm,
    "watch": rows_watch,
    "overhead": rows_overhead,
    "early": rows_early,
    "parallel": rows_parallel,
}


def _mark(ok: bool | None) -> str:
    return "(?)" if ok is None else "(met)" if ok else "(missed)"


def main(argv: list[str]) -> int:
    failed = []
    for name in argv:
        path = Path(name)
        if not path.exists():
            failed.append(f"{name}: missing")
            continue
        data = json.loads(path.read_text())
        env = data["environment"]
        rows: list[list[str]] = []
        for mode_name, mode in data["modes"].items():
            for label, value in ROWS[data["benchmark"]](mode):
                rows.append([mode_name, label, value])
        b.print_table(
            f"{data['benchmark']} (issue {data['issue']}; reps {data['config']['reps']}; "
            f"Python {env['python']}, pytest {env['pytest']}, {env['cpus']} cpus, "
            f"load {env['loadavg_at_start']})",
            ["mode", "measurement", "median"],
            rows,
            left=2,
        )
        if "error" in data:
            failed.append(f"{name}: {data['error'].splitlines()[0]}")
        for mode_name, mode in data["modes"].items():
            failed += [
                f"{name} [{mode_name}]: {c['name']}: {c['detail']}"
                for c in mode["checks"]
                if not c["ok"]
            ]
    if failed:
        print("\nFAILED sanity checks (the figures above may not mean what they say):")
        for line in failed:
            print(f"  {line}")
        return 1
    print("\nall sanity checks passed (absolute figures depend on machine load; compare ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
