"""Benchmark a sweep: many trials of kernel-like heaps (build, two scans, judge) on a pool.

    python benchmarks/sweep.py [--trials 1000] [--objects 10000] [--workers 2] [--seed 0]

Each trial is :func:`kmemsim.experiments.heaps.heap_trial`: boot a kernel,
build a heap of ``--objects`` slab objects (lists, trees, hash chains, data
words, stacks; 0.5% of tree links dropped), age it, scan twice, judge every
object.  The trials run through :func:`kmemsim.experiments.run_sweep` on a
``ProcessPoolExecutor`` of ``--workers`` processes (1: serial).  Prints one
JSON object:

* ``sweep_s``: wall time of the whole sweep; ``trials_per_s``;
* ``projected_1000_s``: the same rate for 1,000 trials (the target is 60 s
  with 2 workers);
* ``phases``: one trial's build, scans and judge, timed in this process
  (median of ``--phase-repeats``), and ``ratio_pool_to_serial``: the
  pool's time per trial over one serial trial's time (2 workers on 2
  cores cannot go below 0.5);
* ``precision``, ``recall``: pooled over the sweep (a sanity check).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from kmemsim.experiments import run_sweep
from kmemsim.experiments._common import boot, rng_of
from kmemsim.experiments.heaps import build_heap, heap_trial
from kmemsim.truth import judge


def phases(objects: int, seed: int, repeats: int) -> dict[str, float]:
    """Median build, two-scan and judge times of one trial, in this process."""
    build, scan, judged = [], [], []
    for r in range(repeats):
        ss = np.random.SeedSequence(seed, spawn_key=(1_000_000 + r,))
        t0 = time.perf_counter()
        k = boot(ss)
        build_heap(k, objects, rng_of(ss))
        t1 = time.perf_counter()
        k.sleep(6)
        k.kmemleak.scan()
        k.kmemleak.scan()
        t2 = time.perf_counter()
        judge(k)
        t3 = time.perf_counter()
        build.append(t1 - t0)
        scan.append(t2 - t1)
        judged.append(t3 - t2)
    b, s, j = (statistics.median(x) for x in (build, scan, judged))
    return {"build_s": round(b, 4), "two_scans_s": round(s, 4), "judge_s": round(j, 4),
            "trial_s": round(b + s + j, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--objects", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--phase-repeats", type=int, default=3)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    grid = {"objects": [args.objects], "leak_fraction": [0.005], "arch": ["x86_64"]}
    one = phases(args.objects, args.seed, args.phase_repeats)
    t0 = time.perf_counter()
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            sweep = run_sweep(heap_trial, grid, trials=args.trials, seed=args.seed,
                              executor=pool, progress=args.progress)
    else:
        sweep = run_sweep(heap_trial, grid, trials=args.trials, seed=args.seed,
                          progress=args.progress)
    elapsed = time.perf_counter() - t0
    tp = sum(r["tp"] for r in sweep.rows)
    fp = sum(r["fp"] for r in sweep.rows)
    fn = sum(r["fn"] for r in sweep.rows)
    out = {
        "trials": args.trials,
        "objects": args.objects,
        "workers": args.workers,
        "sweep_s": round(elapsed, 2),
        "trials_per_s": round(args.trials / elapsed, 3),
        "projected_1000_s": round(1000 * elapsed / args.trials, 1),
        "target_1000_s": 60,
        "phases": one,
        "ratio_pool_to_serial": round(elapsed / args.trials / one["trial_s"], 3),
        "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
        "cpus": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.python_implementation()} "
                   f"{platform.python_version()} numpy {np.__version__}",
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
