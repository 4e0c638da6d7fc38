"""Time ``truth.judge`` against the reference scan on one heap.

Builds a deterministic heap of ``--objects`` kzalloc'd objects linked into
lists hanging off kernel statics (plain pointers), leaks a fraction of the
lists, scans twice and judges.  Prints one JSON object: ``ratio_judge_to_scan``
against the default (fast) engine and ``ratio_judge_to_reference_scan``
against the kernel-order walk; below 1, judging costs less than the scan.

    python benchmarks/judge.py --objects 100000 --seed 1
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time

from kmemsim import Kernel
from kmemsim.truth import judge


def build(n: int, seed: int, leak_fraction: float) -> tuple[Kernel, int]:
    rng = random.Random(seed)
    k = Kernel(seed=seed)
    nlists = max(1, n // 100)
    heads = k.define_static("bench_heads", 8 * nlists)
    sizes = (32, 64, 96, 128, 192, 256)
    prev = [0] * nlists
    for i in range(n):
        lst = i % nlists
        p = k.kzalloc(rng.choice(sizes))
        if prev[lst]:
            k.store(p, prev[lst])  # each new node points at the previous one
        prev[lst] = p
    leaked = 0
    for lst in range(nlists):
        if rng.random() < leak_fraction:
            leaked += 1  # this list's head is never stored: the whole list leaks
        else:
            k.store(heads + 8 * lst, prev[lst])
    return k, leaked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--leak-fraction", type=float, default=0.05)
    args = ap.parse_args()
    t0 = time.perf_counter()
    k, leaked_lists = build(args.objects, args.seed, args.leak_fraction)
    build_s = time.perf_counter() - t0
    k.sleep(6)
    k.kmemleak.scan()
    scan_times, judge_times = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        k.kmemleak.scan()
        scan_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        j = judge(k)
        judge_times.append(time.perf_counter() - t0)
    scan_s, judge_s = statistics.median(scan_times), statistics.median(judge_times)
    t0 = time.perf_counter()
    k.kmemleak.scan(engine="reference")
    reference_s = time.perf_counter() - t0
    print(json.dumps({
        "objects": args.objects,
        "tracked": len(k.kmemleak),
        "leaked_lists": leaked_lists,
        "verdicts": dict(j.counts),
        "build_s": round(build_s, 3),
        "scan_s": round(scan_s, 3),
        "judge_s": round(judge_s, 3),
        "ratio_judge_to_scan": round(judge_s / scan_s, 3),
        "reference_scan_s": round(reference_s, 3),
        "ratio_judge_to_reference_scan": round(judge_s / reference_s, 3),
        "machine": f"{platform.machine()} {platform.python_implementation()} "
                   f"{platform.python_version()}",
    }))


if __name__ == "__main__":
    main()
