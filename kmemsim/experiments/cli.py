"""``kmemsim sweep NAME [--param value ...]``: the built-in experiments from the command line.

Parameters are given as ``--name value`` (comma-separated for several
values, each converted to the type of the grid's defaults); they replace
that axis of the grid.  Unknown experiments and parameters exit with
status 2.

>>> import argparse
>>> p = argparse.ArgumentParser(prog="kmemsim sweep"); add_sweep_arguments(p)
>>> run_sweep_command(p.parse_args(["--list"]), [])  # doctest: +ELLIPSIS
false_positives          False positives by cause, and what annotations buy back
...
0
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import KmemsimError


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``kmemsim sweep`` (parameters of the experiment are parsed later)."""
    p.add_argument("name", nargs="?", metavar="NAME", help="the experiment (see --list)")
    p.add_argument("--list", action="store_true",
                   help="list the experiments and their parameters, then exit")
    p.add_argument("--trials", type=int, default=None,
                   help="trials per grid point (default: the experiment's)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes; more than 1 uses a process pool (default 1: serial)")
    p.add_argument("--dask", action="store_true",
                   help="run on a local dask cluster of --workers processes "
                        "(needs the 'cluster' extra)")
    p.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    p.add_argument("--quick", action="store_true",
                   help="the small grid and trial count (as KMEMSIM_QUICK=1)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write rows.jsonl, results.csv and results.json here, and resume "
                        "from them")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _params(exp_name: str, extra: Sequence[str]) -> dict[str, list[Any]]:
    from . import EXPERIMENTS

    exp = EXPERIMENTS[exp_name]
    out: dict[str, list[Any]] = {}
    i = 0
    while i < len(extra):
        word = extra[i]
        if not word.startswith("--") or len(word) < 3:
            raise _Usage(f"unexpected argument {word!r} (parameters are --name value)")
        name, eq, value = word[2:].partition("=")
        name = name.replace("-", "_")
        if not eq:
            if i + 1 >= len(extra):
                raise _Usage(f"--{name} needs a value")
            value = extra[i + 1]
            i += 1
        i += 1
        if name not in exp.full_grid:
            raise _Usage(f"{exp_name} has no parameter {name!r} (parameters: "
                         f"{', '.join(exp.full_grid)})")
        try:
            out[name] = exp.parse_value(name, value)
        except KmemsimError as exc:
            raise _Usage(str(exc)) from None
    return out


class _Usage(Exception):
    pass


def _format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c)
              for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths, strict=True)).rstrip()
              for b in body]
    return "\n".join(lines)


def run_sweep_command(args: argparse.Namespace, extra: Sequence[str],
                      argv: Sequence[str] | None = None) -> int:
    """Run ``kmemsim sweep`` with parsed *args* and the experiment parameters in *extra*."""
    from . import EXPERIMENTS, quick_mode, run_experiment

    if args.list:
        width = max(len(n) for n in EXPERIMENTS)
        for exp in EXPERIMENTS.values():
            print(f"{exp.name:<{width}}  {exp.title}")
            for pname, values in exp.full_grid.items():
                print(f"{'':<{width}}    --{pname} {','.join(str(v) for v in values)}")
        return 0
    if args.name is None:
        print("kmemsim sweep: name an experiment (kmemsim sweep --list)", file=sys.stderr)
        return 2
    if args.name not in EXPERIMENTS:
        print(f"kmemsim sweep: no experiment named {args.name!r} (experiments: "
              f"{', '.join(EXPERIMENTS)})", file=sys.stderr)
        return 2
    try:
        params = _params(args.name, extra)
    except _Usage as exc:
        print(f"kmemsim sweep: {exc}", file=sys.stderr)
        return 2
    if args.workers < 1 or (args.trials is not None and args.trials < 1) or args.seed < 0:
        print("kmemsim sweep: --workers and --trials must be at least 1, --seed at least 0",
              file=sys.stderr)
        return 2
    quick = args.quick or quick_mode()
    command = ["kmemsim", *(sys.argv[1:] if argv is None else argv)]
    progress = not args.no_progress and sys.stderr.isatty()
    executor: Any = None
    closers: list[Any] = []
    try:
        if args.dask:
            try:  # the optional 'cluster' extra; untyped, so looked up at run time
                distributed: Any = importlib.import_module("dask.distributed")
            except ImportError:
                print("kmemsim sweep: --dask needs dask.distributed (pip install "
                      "'kmemsim[cluster]')", file=sys.stderr)
                return 2
            cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                   processes=True, host="127.0.0.1", dashboard_address=None)
            client = distributed.Client(cluster)
            closers += [client, cluster]
            executor = client.get_executor()
        elif args.workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            executor = ProcessPoolExecutor(args.workers)
            closers.append(executor)
        sweep = run_experiment(args.name, quick=quick, trials=args.trials, seed=args.seed,
                               executor=executor, progress=progress, out=args.out,
                               command=command, **params)
    except KmemsimError as exc:
        print(f"kmemsim sweep: {exc}", file=sys.stderr)
        return 1
    finally:
        for c in closers:
            if hasattr(c, "shutdown"):
                c.shutdown()
            else:
                c.close()
    summary = sweep.summary()
    grid = sweep.metadata["grid"]
    varying = [p for p, v in grid.items() if len(v) > 1]
    first = summary[0] if summary else {}
    metrics = ["n", *(c for c in first if f"{c}_lo" in first or c == "model")]  # not sums
    print(f"{args.name}: {len(sweep.rows)} trials, {len(summary)} grid points, seed {args.seed}")
    fixed = {p: v[0] for p, v in grid.items() if len(v) == 1}
    if fixed:
        print("fixed: " + ", ".join(f"{p}={v}" for p, v in fixed.items()))
    print(_format_table(summary, [*varying, *metrics]))
    if args.name == "false_negatives_density":
        from .false_negatives import boehm_table

        table = boehm_table(summary)
        if any(r["kmemleak_pct"] is not None for r in table):
            print("\nBoehm PLDI'93 Table 1 (32-bit, 200 lists of 100 KB) beside the model and "
                  "kmemleak:")
            print(_format_table(table, ["machine", "paper_pct_lo", "paper_pct_hi",
                                        "random_words", "model_pct", "kmemleak_pct",
                                        "kmemleak_pct_lo", "kmemleak_pct_hi"]))
    if args.out:
        print(f"\nrows: {args.out}/results.csv; metadata: {args.out}/results.json")
    else:
        print("\nmetadata: " + json.dumps({k: sweep.metadata[k] for k in ("seed", "trials",
                                                                          "versions")}))
    return 0
