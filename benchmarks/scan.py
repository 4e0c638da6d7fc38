"""Benchmark the scan engines on a deterministic kernel-like heap.

    python benchmarks/scan.py --objects 100000 --seed 1 [--reference] [--repeats 5]

The heap: slab objects in a size mix like ``/proc/slabinfo`` (many small
objects, fewer large), linked as lists, binary trees and hash tables of plain
pointers hanging off kernel statics, random data words, a few task stacks,
and some leaked lists.  Prints one JSON object with medians of the repeats:

* ``stream_s``: one plain numpy read of exactly the bytes the scan reads
  (a reduction over zero-copy views of the same ranges), the floor;
* ``fast_s``, ``reference_s``: one full scan with each engine;
* ``ratio_fast_to_stream``, ``ratio_reference_to_fast``;
* ``build_s``, ``peak_rss_bytes``, ``bytes_per_object``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import statistics
import sys
import time

import numpy as np

from kmemsim import Kernel
from kmemsim.kmemleak.object import OBJECT_FULL_SCAN, OBJECT_NO_SCAN, OBJECT_PERCPU, OBJECT_PHYS

# (object size, weight): a desktop kernel's slabinfo is dominated by small objects.
SIZE_MIX = ((32, 20), (64, 25), (96, 8), (128, 12), (192, 10), (256, 10), (512, 8),
            (1024, 4), (2048, 2), (4096, 1))


def build(n: int, seed: int) -> Kernel:
    rng = random.Random(seed)
    k = Kernel(seed=seed)
    ws = k.arch.word_size
    sizes, weights = zip(*SIZE_MIX, strict=True)
    nbuckets = 1024
    list_head = k.define_static("bench_list", ws)
    buckets = k.define_static("bench_hash", nbuckets * ws)
    tree_root = k.define_static("bench_tree", ws)
    objs: list[int] = []
    tree: list[int] = []
    last = list_head
    for i in range(n):
        p = k.kmalloc(rng.choices(sizes, weights)[0])
        objs.append(p)
        k.memory.write_word(p, rng.getrandbits(8 * ws))  # a data word: hash, counter, flags
        shape = i % 3
        if shape == 0:                          # a list: the previous node links to it
            k.store(last if last == list_head else last + ws, p)
            last = p
        elif shape == 1:                        # a binary tree: the parent links to it
            if not tree:
                k.store(tree_root, p)
            elif rng.random() < 0.995:          # 0.5% of tree links dropped: leaked subtrees
                parent = tree[(len(tree) - 1) // 2]
                k.store(parent + ws * (2 + len(tree) % 2), p)
            tree.append(p)
        else:                                   # a hash table: pushed on a bucket's chain
            bucket = buckets + ws * rng.randrange(nbuckets)
            old = k.memory.read_word(bucket)
            if old:
                k.store(p + ws, old)
            k.store(bucket, p)
    for _ in range(4):
        t = k.spawn("kworker/u8:1")
        with k.task_context(t), k.stack_frame(16) as f:
            for j in range(16):
                k.store(f.slot(j), rng.choice(objs))
    return k


def scanned_ranges(k: Kernel) -> list[tuple[int, int]]:
    """Exactly what a scan reads: the root ranges and every gray object's ranges."""
    from kmemsim.kmemleak.scan import direct_root_ranges

    kl = k.kmemleak
    out = [(r.start, r.end) for r in direct_root_ranges(kl)]
    for o in kl.object_list.values():
        if o.flags & OBJECT_NO_SCAN or o.color != "gray":
            continue
        if o.flags & OBJECT_PERCPU:
            out += [(o.pointer + k.per_cpu_offset(c), o.pointer + k.per_cpu_offset(c) + o.size)
                    for c in k.possible_cpus()]
        elif o.areas and not o.flags & OBJECT_FULL_SCAN:
            out += [(a.start, a.start + a.size) for a in o.areas]
        else:
            s = k.phys_to_virt(o.pointer) if o.flags & OBJECT_PHYS else o.pointer
            out.append((s, s + o.size))
    return out


def stream(k: Kernel, ranges: list[tuple[int, int]]) -> tuple[float, int]:
    """One numpy reduction over zero-copy views of the same bytes, per region."""
    starts = np.array(sorted(s for s, _ in ranges), dtype=np.uint64)
    nbytes = sum(e - s for s, e in ranges)
    t0 = time.perf_counter()
    total = np.uint64(0)
    for region in k.memory.regions():
        lo = int(np.searchsorted(starts, np.uint64(region.start)))
        hi = int(np.searchsorted(starts, np.uint64(region.end)))
        if lo == hi:
            continue
        first = int(starts[lo]) - region.start
        view = np.frombuffer(region.data, dtype="<u8", count=(len(region.data) - first) // 8,
                             offset=first)
        total ^= np.bitwise_xor.reduce(view)
    return time.perf_counter() - t0, nbytes


def timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reference", action="store_true", help="also time the reference engine")
    args = ap.parse_args()
    t0 = time.perf_counter()
    k = build(args.objects, args.seed)
    build_s = time.perf_counter() - t0
    k.sleep(6)
    k.kmemleak.scan(engine="fast")  # settle checksums; later scans are steady state
    ranges = scanned_ranges(k)
    stream_s = statistics.median(stream(k, ranges)[0] for _ in range(args.repeats))
    scanned_bytes = sum(e - s for s, e in ranges)
    fast_s = timed(lambda: k.kmemleak.scan(engine="fast"), args.repeats)
    last = k.kmemleak.last_scan
    out = {
        "objects": args.objects,
        "tracked": len(k.kmemleak),
        "leaked": len(last.unreferenced) if last else 0,
        "scanned_bytes": scanned_bytes,
        "build_s": round(build_s, 3),
        "stream_s": round(stream_s, 5),
        "fast_s": round(fast_s, 4),
        "ratio_fast_to_stream": round(fast_s / stream_s, 1),
    }
    if args.reference:
        ref_s = timed(lambda: k.kmemleak.scan(engine="reference"), max(1, args.repeats // 2))
        out["reference_s"] = round(ref_s, 3)
        out["ratio_reference_to_fast"] = round(ref_s / fast_s, 1)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin"
                                                                else 1024)
    out["peak_rss_bytes"] = rss
    out["bytes_per_object"] = round(rss / args.objects)
    out["machine"] = f"{platform.machine()} {platform.python_implementation()} " \
                     f"{platform.python_version()} numpy {np.__version__}"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
