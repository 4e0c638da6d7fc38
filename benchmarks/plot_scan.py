"""Run the scan benchmark for several heap sizes, plot it, and write the results text.

    python benchmarks/plot_scan.py --run 10000 100000 1000000 --seed 1 --repeats 5
    python benchmarks/plot_scan.py --build-only 4000000 --timeout 1500
    python benchmarks/plot_scan.py            # re-plot from benchmarks/results/scan.jsonl

Each size runs ``benchmarks/scan.py`` in its own subprocess, so each peak RSS
is that size's alone; ``--reference`` is passed only up to
``--reference-max`` objects (the reference engine is slow) and ``--twice``
only up to ``--twice-max``.  The JSON lines go to ``results/scan.jsonl``
(a new line for a size and mode replaces the old one), each with the
machine it was taken on and the load average just before it ran (the
cores are shared, so noise is expected).  From the JSON lines the script
draws ``results/scan.png`` (scan time and peak RSS against N, log-log) and
writes ``results/README.md``: the figures per N, the targets of issue 4
marked met or missed, the growth of ``fast_s`` against N log N, and the
machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCAN = HERE / "scan.py"
RESULTS = HERE / "results"
GIB = 1 << 30
MIB = 1 << 20

Record = dict[str, Any]

#: (name, objects, field, comparison, bound, how the bound reads): issue 4's targets.
TARGETS: tuple[tuple[str, int, str, str, float, str], ...] = (
    ("scan at most 20 plain reads of the same bytes", 1_000_000,
     "ratio_fast_to_stream", "<=", 20.0, "ratio_fast_to_stream <= 20"),
    ("fast engine at least 50 times the reference", 100_000,
     "ratio_reference_to_fast", ">=", 50.0, "ratio_reference_to_fast >= 50"),
    ("1 M objects built in at most 30 s", 1_000_000, "build_s", "<=", 30.0, "build_s <= 30 s"),
    ("10 k objects built and scanned twice in at most 50 ms", 10_000,
     "build_and_two_scans_s", "<=", 0.050, "build_and_two_scans_s <= 0.050 s"),
    ("4 M objects in at most 3 GiB", 4_000_000, "peak_rss_bytes", "<=", 3.0 * GIB,
     "peak_rss_bytes <= 3 GiB"),
)


def host() -> Record:
    """The machine this process runs on: platform, CPU model, cores, RAM, versions.

    >>> sorted(host())[:3]
    ['cores_online', 'cores_usable', 'cpu_model']
    """
    import numpy as np

    cpu, ram = "unknown", 0
    try:
        cpu = next((line.split(":", 1)[1].strip()
                    for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
        ram = next((int(line.split()[1]) * 1024
                    for line in Path("/proc/meminfo").read_text().splitlines()
                    if line.startswith("MemTotal:")), 0)
    except OSError:  # not Linux: say so rather than guess
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": platform.platform(), "cpu_model": cpu,
            "cores_online": os.cpu_count(), "cores_usable": usable, "ram_bytes": ram,
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "numpy": np.__version__}


def code_digest() -> str:
    """A short digest of the ``kmemsim`` sources, to tell runs of different code apart.

    >>> len(code_digest())
    12
    """
    import hashlib

    h = hashlib.sha256()
    for f in sorted((HERE.parent / "kmemsim").rglob("*.py")):
        h.update(f.relative_to(HERE.parent).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def run_one(n: int, seed: int, repeats: int, *, reference: bool, twice: bool,
            build_only: bool, timeout: float | None, mem: str = "") -> Record:
    """Run ``scan.py`` for *n* objects in a subprocess; its JSON plus run metadata.

    On timeout the child is killed and the record says ``aborted_after_s``.
    """
    cmd = [sys.executable, str(SCAN), "--objects", str(n), "--seed", str(seed),
           "--repeats", str(repeats)]
    cmd += ["--reference"] * reference + ["--twice"] * twice + ["--build-only"] * build_only
    cmd += ["--mem", mem] * bool(mem)
    meta: Record = {"mode": "build-only" if build_only else "scan", "seed": seed,
                    "repeats": repeats, "mem": mem or "default", "kmemsim": code_digest(), "loadavg_before": round(os.getloadavg()[0], 2),
                    "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    "host": host()}
    print(f"running {' '.join(cmd[1:])} (load {meta['loadavg_before']})", file=sys.stderr,
          flush=True)
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"objects": n, **meta, "aborted_after_s": round(time.perf_counter() - t0, 1)}
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        return {"objects": n, **meta, "failed": done.stderr.strip().splitlines()[-1:]}
    out: Record = json.loads(done.stdout.strip().splitlines()[-1])
    return {**out, **meta, "wall_s": round(time.perf_counter() - t0, 1)}


def load(path: Path) -> list[Record]:
    """The JSON lines of *path*, or none if it does not exist."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def merge(old: Iterable[Record], new: Iterable[Record]) -> list[Record]:
    """*old* with each record of *new* replacing the one of the same size, mode and seed.

    >>> merge([{"objects": 1, "mode": "scan", "seed": 1, "x": 0}],
    ...       [{"objects": 1, "mode": "scan", "seed": 1, "x": 2}])
    [{'objects': 1, 'mode': 'scan', 'seed': 1, 'x': 2}]
    """
    def key(r: Record) -> tuple[int, str, int]:
        return int(r["objects"]), str(r.get("mode", "scan")), int(r.get("seed", 0))
    table = {key(r): r for r in old}
    table.update((key(r), r) for r in new)
    return [table[k] for k in sorted(table)]


def measured(records: Sequence[Record]) -> list[Record]:
    """The records that finished (not aborted, not failed)."""
    return [r for r in records if "aborted_after_s" not in r and "failed" not in r]


def growth(scans: Sequence[Record], field: str = "fast_s") -> list[Record]:
    """Between successive sizes: the slope of log time against log N, and the N log N ratio.

    ``nlogn_ratio`` is the measured growth ``t2/t1`` divided by
    ``(N2 log N2)/(N1 log N1)``: at most 1 means no worse than N log N, that
    is ``slope <= nlogn_slope`` (1 plus the log N correction).

    >>> g = growth([{"objects": 10, "fast_s": 1.0}, {"objects": 100, "fast_s": 10.0}])
    >>> g[0]["slope"], g[0]["nlogn_slope"], g[0]["nlogn_ratio"], g[0]["no_worse_than_nlogn"]
    (1.0, 1.301, 0.5, True)
    """
    pts = sorted((int(r["objects"]), float(r[field])) for r in scans if r.get(field))
    out = []
    for (n1, t1), (n2, t2) in itertools.pairwise(pts):
        slope = math.log(t2 / t1) / math.log(n2 / n1)
        ratio = (t2 / t1) / ((n2 * math.log(n2)) / (n1 * math.log(n1)))
        bound = math.log((n2 * math.log(n2)) / (n1 * math.log(n1))) / math.log(n2 / n1)
        out.append({"from": n1, "to": n2, "slope": round(slope, 3), "nlogn_slope": round(bound, 3),
                    "nlogn_ratio": round(ratio, 3), "no_worse_than_nlogn": ratio <= 1.0})
    return out


def check(records: Sequence[Record]) -> list[Record]:
    """Each target of issue 4 with the measured value, ``met`` True/False, or None if absent."""
    done = measured(records)
    rows = []
    for name, n, field, op, bound, reads in TARGETS:
        # A full scan run wins over a build-only run for the same size.
        cands = sorted((r for r in done if int(r["objects"]) == n and field in r),
                       key=lambda r: r.get("mode") != "scan")
        value = cands[0][field] if cands else None
        met = None if value is None else (value <= bound if op == "<=" else value >= bound)
        aborted = [r for r in records if int(r["objects"]) == n and "aborted_after_s" in r]
        rows.append({"target": name, "objects": n, "field": field, "reads": reads,
                     "value": value, "met": met,
                     "aborted_after_s": aborted[0]["aborted_after_s"] if aborted else None})
    return rows


def plot(records: Sequence[Record], path: Path) -> None:
    """Scan time and peak RSS against N, log-log, into *path* (Agg, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    done = measured(records)
    scans = sorted((r for r in done if r.get("mode", "scan") == "scan"),
                   key=lambda r: int(r["objects"]))
    fig = Figure(figsize=(11, 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_t, ax_m = fig.subplots(1, 2)
    series = (("fast_s", "fast scan", "o-"), ("reference_s", "reference scan", "s-"),
              ("stream_s", "stream (plain read)", "^--"), ("build_s", "build", "d:"),
              ("build_and_two_scans_s", "build + 2 scans", "x:"))
    for field, label, style in series:
        pts = [(int(r["objects"]), float(r[field])) for r in scans if r.get(field)]
        if pts:
            ax_t.plot(*zip(*pts, strict=True), style, label=label)
    ax_t.plot([10_000], [0.050], "*", color="purple", markersize=11,
              label="target: 10 k built + 2 scans in 50 ms")
    ax_t.plot([1_000_000], [30.0], "*", color="red", markersize=11,
              label="target: 1 M built in 30 s")
    ax_t.set(xscale="log", yscale="log", xlabel="objects N", ylabel="seconds (median)",
             title="time against heap size")
    ax_t.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=2)
    for mode, style, label in (("scan", "o-", "build + scans"), ("build-only", "s", "build only")):
        pts = sorted((int(r["objects"]), r["peak_rss_bytes"] / GIB)
                     for r in done if r.get("mode", "scan") == mode and "peak_rss_bytes" in r)
        if pts:
            ax_m.plot(*zip(*pts, strict=True), style, label=f"peak RSS, {label}")
    ax_m.plot([4_000_000], [3.0], "r*", markersize=12, label="target: 4 M objects in 3 GiB")
    ax_m.set(xscale="log", yscale="log", xlabel="objects N", ylabel="peak RSS (GiB)",
             title="memory against heap size")
    ax_m.grid(True, which="both", alpha=0.3)
    ax_m.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or v == "":
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def per_byte_ratio(r: Record) -> float | None:
    """``fast_s`` over ``stream_s`` rescaled to the bytes the scan reads (an estimate).

    >>> per_byte_ratio({"fast_s": 1.0, "stream_s": 0.5, "scanned_bytes": 10,
    ...                 "stream_bytes": 40})
    8.0
    """
    if not all(r.get(f) for f in ("fast_s", "stream_s", "scanned_bytes", "stream_bytes")):
        return None
    scale = float(r["scanned_bytes"]) / float(r["stream_bytes"])
    return float(r["fast_s"]) / (float(r["stream_s"]) * scale)


def readme(records: Sequence[Record]) -> str:
    """The results text: figures per N, targets, growth, machine, how to regenerate."""
    done = measured(records)
    scans = sorted((r for r in done if r.get("mode", "scan") == "scan"),
                   key=lambda r: int(r["objects"]))
    builds = sorted((r for r in done if r.get("mode") == "build-only"),
                    key=lambda r: int(r["objects"]))
    lines = ["# Scan benchmark results", "",
             "Generated by `benchmarks/plot_scan.py` from `scan.jsonl` (do not edit by hand;",
             "re-run the script). Plot: `scan.png`. Times are medians of the repeats, in",
             "seconds; every ratio is measured within one run of `benchmarks/scan.py`.", "",
             "## Figures per N", "",
             "| N | tracked | scanned MiB | stream read MiB | build_s | stream_s | fast_s "
             "| reference_s | fast/stream | fast/stream per byte (est.) | reference/fast "
             "| build + 2 scans s | peak RSS MiB | bytes/object | load before |",
             "|" + "---:|" * 15]
    for r in scans:
        mem = r.get("mem", "default")
        lines.append("| " + " | ".join([
            _fmt(int(r["objects"])) + (f" (mem={mem})" if mem != "default" else ""),
            _fmt(r.get("tracked")),
            _fmt(r["scanned_bytes"] / MIB if "scanned_bytes" in r else None),
            _fmt(r["stream_bytes"] / MIB if "stream_bytes" in r else None),
            _fmt(r.get("build_s")), _fmt(r.get("stream_s")), _fmt(r.get("fast_s")),
            _fmt(r.get("reference_s")), _fmt(r.get("ratio_fast_to_stream")),
            _fmt(per_byte_ratio(r), 3),
            _fmt(r.get("ratio_reference_to_fast")), _fmt(r.get("build_and_two_scans_s")),
            _fmt(r["peak_rss_bytes"] / MIB), _fmt(r.get("bytes_per_object")),
            _fmt(r.get("loadavg_before"))]) + " |")
    lines += ["", "`stream_s` is one numpy reduction over zero-copy views of exactly the words",
              "the scan reads (its ranges merged into spans), so `stream read MiB` equals",
              "`scanned MiB`. Older records read whole regions from the first scanned address,",
              "gaps included; for those, `fast/stream per byte (est.)` rescales the stream",
              "time to the scanned bytes (an estimate). The targets use the measured ratio."]
    if builds:
        lines += ["", "Build only (`scan.py --build-only`: no scan, for the memory figure):", "",
                  "| N | tracked | mem= | build_s | peak RSS MiB | bytes/object | load before |",
                  "|" + "---:|" * 7]
        lines += ["| " + " | ".join([_fmt(int(r["objects"])), _fmt(r.get("tracked")),
                                     _fmt(r.get("mem")), _fmt(r.get("build_s")), _fmt(r["peak_rss_bytes"] / MIB),
                                     _fmt(r.get("bytes_per_object")),
                                     _fmt(r.get("loadavg_before"))]) + " |" for r in builds]
    for r in records:
        if "aborted_after_s" in r:
            lines += ["", f"Aborted: {r.get('mode', 'scan')} run of {int(r['objects']):,} "
                          f"objects killed after {r['aborted_after_s']} s (time limit), "
                          "no figures."]
        elif "failed" in r:
            lines += ["", f"Failed: {r.get('mode', 'scan')} run of {int(r['objects']):,} "
                          f"objects: {' '.join(r['failed'])}"]
    lines += ["", "## Targets of issue 4", "", "| target | at N | bound | measured | status |",
              "|---|---:|---|---:|---|"]
    for t in check(records):
        value = t["value"]
        shown = (f"{value / GIB:.3g} GiB" if t["field"] == "peak_rss_bytes" and value is not None
                 else _fmt(value))
        status = ("met" if t["met"] else "missed") if t["met"] is not None else (
            f"not measured (aborted after {t['aborted_after_s']} s)"
            if t["aborted_after_s"] is not None else "not measured")
        lines.append(f"| {t['target']} | {t['objects']:,} | `{t['reads']}` | {shown} "
                     f"| {status} |")
    lines += ["", "## Growth of the fast scan", "",
              "Between successive N: the slope of log `fast_s` against log N (1 is linear),",
              "the slope N log N would give (1 plus the log correction), and the N log N",
              "ratio `(t2/t1) / ((N2 ln N2)/(N1 ln N1))`: at most 1 means no worse than",
              "N log N. Shared cores make single steps noisy.", "",
              "| from N | to N | slope (exponent) | N log N slope | N log N ratio "
              "| no worse than N log N |",
              "|---:|---:|---:|---:|---:|---|"]
    for g in growth(scans):
        lines.append(f"| {g['from']:,} | {g['to']:,} | {g['slope']} | {g['nlogn_slope']} "
                     f"| {g['nlogn_ratio']} "
                     f"| {'yes' if g['no_worse_than_nlogn'] else 'no'} |")
    hosts = {json.dumps(r["host"], sort_keys=True) for r in records if "host" in r}
    lines += ["", "## Machine", ""]
    for h in (json.loads(s) for s in sorted(hosts)):
        lines += [f"- platform: {h['platform']}", f"- CPU: {h['cpu_model']}",
                  f"- cores: {h['cores_online']} online, {h['cores_usable']} usable by the "
                  "process (shared with other work while measuring)",
                  f"- RAM: {h['ram_bytes'] / GIB:.1f} GiB",
                  f"- Python: {h['python']}, numpy {h['numpy']}"]
    dates = sorted({str(r["date"]) for r in records if "date" in r})
    if dates:
        lines.append(f"- taken: {dates[0]}" + (f" to {dates[-1]}" if len(dates) > 1 else ""))
    digests = sorted({str(r["kmemsim"]) for r in records if "kmemsim" in r})
    if digests:
        lines.append(f"- kmemsim sources (sha256 prefix of `kmemsim/**/*.py`): "
                     f"{', '.join(digests)}" + (" (runs of different code: compare with care)"
                                                if len(digests) > 1 else ""))
    lines.append("- simulated RAM (`mem=`): the kernel's default (1 GiB) unless the table "
                 "says otherwise")
    seeds = sorted({int(r["seed"]) for r in records if "seed" in r})
    repeats = sorted({int(r["repeats"]) for r in records if "repeats" in r})
    lines += [f"- seed {', '.join(map(str, seeds))}; repeats "
              f"{', '.join(map(str, repeats))} (reference engine: half as many, at least 1)",
              "", "Regenerate: `python benchmarks/plot_scan.py --run 10000 100000 1000000",
              "--build-only 1000000 --seed 1 --repeats 5`, then `python benchmarks/plot_scan.py",
              "--build-only 4000000 --mem 4G` (the default 1 GiB of simulated RAM holds about",
              "2 M objects of this mix); `python benchmarks/plot_scan.py` alone re-plots from",
              "`scan.jsonl`.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, run what it asks, then plot and write the results text."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--run", type=int, nargs="+", default=[], metavar="N",
                    help="run the full benchmark for these object counts")
    ap.add_argument("--build-only", type=int, nargs="+", default=[], metavar="N",
                    help="run scan.py --build-only (build time and peak RSS) for these counts")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference-max", type=int, default=100_000,
                    help="pass --reference only up to this many objects")
    ap.add_argument("--twice-max", type=int, default=100_000,
                    help="pass --twice only up to this many objects")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per run; a run that takes longer is killed and noted")
    ap.add_argument("--mem", default="", metavar="SIZE",
                    help="simulated RAM for every run, the kernel's mem= (default 1 GiB)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if any(n < 1 for n in args.run + args.build_only):
        ap.error("--run and --build-only: object counts must be at least 1")
    if args.repeats < 1:
        ap.error(f"--repeats must be at least 1, not {args.repeats}")
    jsonl = args.results / "scan.jsonl"
    new = [run_one(n, args.seed, args.repeats, reference=n <= args.reference_max,
                   twice=n <= args.twice_max, build_only=False, timeout=args.timeout,
                   mem=args.mem)
           for n in args.run]
    new += [run_one(n, args.seed, args.repeats, reference=False, twice=False, build_only=True,
                    timeout=args.timeout, mem=args.mem) for n in args.build_only]
    records = merge(load(jsonl), new)
    if not records:
        ap.error(f"no results in {jsonl}: run with --run N ... first")
    args.results.mkdir(parents=True, exist_ok=True)
    if new:
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    plot(records, args.results / "scan.png")
    (args.results / "README.md").write_text(readme(records))
    for r in new:
        print(json.dumps({k: v for k, v in r.items() if k != "host"}))


if __name__ == "__main__":
    main()
