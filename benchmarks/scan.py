"""Benchmark the scan engines on a deterministic kernel-like heap.

    python benchmarks/scan.py --objects 100000 --seed 1 [--reference] [--repeats 5]

The heap: slab objects in a size mix like ``/proc/slabinfo`` (many small
objects, fewer large), linked as lists, binary trees and hash tables of plain
pointers hanging off kernel statics, random data words, a few task stacks,
and some leaked lists.  Prints one JSON object with medians of the repeats:

* ``stream_s``: one plain numpy read of exactly the words the scan reads
  (a reduction over zero-copy views of the scanned ranges, merged into
  spans), the floor; ``stream_bytes`` (equal to ``scanned_bytes``) says
  how much it read;
* ``fast_s``, ``reference_s``: one full scan with each engine;
* ``ratio_fast_to_stream``, ``ratio_reference_to_fast``;
* ``build_s``, ``peak_rss_bytes``, ``bytes_per_object``;
* with ``--twice``, ``build_and_two_scans_s``: a fresh heap built, aged past
  the minimum age and scanned twice (fast engine), as one sweep trial does;
* with ``--build-only``, only the build: ``build_s`` and peak RSS (for the
  memory figure at sizes where scanning is not the question).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import statistics
import sys
import time

import numpy as np

from kmemsim import Kernel
from kmemsim.experiments.heaps import build_heap
from kmemsim.kmemleak.object import OBJECT_FULL_SCAN, OBJECT_NO_SCAN, OBJECT_PERCPU, OBJECT_PHYS


def build(n: int, seed: int, mem: str = "") -> Kernel:
    """The heap of :func:`kmemsim.experiments.heaps.build_heap` (shared with the sweeps).

    *mem* is the kernel's ``mem=`` (simulated RAM; the default 1 GiB holds
    about 2 M objects of this mix).
    """
    k = Kernel(seed=seed, cmdline=f"mem={mem}" if mem else "")
    build_heap(k, n, np.random.default_rng(seed))
    return k


def build_and_scan_twice(n: int, seed: int, mem: str = "") -> None:
    """A sweep trial's cost: build, age past the 5 s minimum age, scan twice."""
    k = build(n, seed, mem)
    k.sleep(6)
    k.kmemleak.scan(engine="fast")
    k.kmemleak.scan(engine="fast")


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


def coalesce(k: Kernel, ranges: list[tuple[int, int]]) -> list[tuple[object, int, int]]:
    """The scanned bytes as few spans as possible: ``(region, first word, words)``.

    Ranges are cut to whole aligned words (what the scan reads), sorted, and
    merged where they touch or overlap; a span never leaves its region.
    """
    ws = k.arch.word_size
    spans: list[list[int]] = []
    for s, e in sorted(((s + ws - 1) & ~(ws - 1), e & ~(ws - 1)) for s, e in ranges):
        if e <= s:
            continue
        if spans and s <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], e)
        else:
            spans.append([s, e])
    out = []
    for s, e in spans:
        while s < e:
            region = k.memory.region_at(s)
            if region is None:
                break
            stop = min(e, region.end)
            out.append((region, (s - region.start) // ws, (stop - s) // ws))
            s = stop
    return out


def stream(k: Kernel, ranges: list[tuple[int, int]]) -> tuple[float, int]:
    """One numpy reduction over zero-copy views of exactly the scanned words; (seconds, bytes).

    The ranges are merged into spans first (outside the timing), so the
    stream reads each scanned word once and nothing else.
    """
    spans = coalesce(k, ranges)
    dt = "<u8" if k.arch.word_size == 8 else "<u4"
    nbytes = 0
    t0 = time.perf_counter()
    total = 0
    for region, first, count in spans:
        view = np.frombuffer(region.data, dtype=dt, count=count,  # type: ignore[attr-defined]
                             offset=first * k.arch.word_size)
        total ^= int(np.bitwise_xor.reduce(view))
        nbytes += view.nbytes
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
    ap.add_argument("--twice", action="store_true",
                    help="also time building a fresh heap and scanning it twice")
    ap.add_argument("--build-only", "--no-scan", action="store_true",
                    help="only build: report build_s and peak RSS")
    ap.add_argument("--mem", default="", metavar="SIZE",
                    help="simulated RAM, the kernel's mem= (e.g. 4G; default 1 GiB)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    k = build(args.objects, args.seed, args.mem)
    build_s = time.perf_counter() - t0
    if args.build_only:
        print(json.dumps({"objects": args.objects, "tracked": len(k.kmemleak),
                          "build_s": round(build_s, 3), **memory(args.objects)}))
        return
    k.sleep(6)
    k.kmemleak.scan(engine="fast")  # settle checksums; later scans are steady state
    ranges = scanned_ranges(k)
    streams = [stream(k, ranges) for _ in range(args.repeats)]
    stream_s = statistics.median(t for t, _ in streams)
    scanned_bytes = sum(e - s for s, e in ranges)
    fast_s = timed(lambda: k.kmemleak.scan(engine="fast"), args.repeats)
    last = k.kmemleak.last_scan
    out = {
        "objects": args.objects,
        "tracked": len(k.kmemleak),
        "leaked": len(last.unreferenced) if last else 0,
        "scanned_bytes": scanned_bytes,
        "stream_bytes": streams[0][1],
        "build_s": round(build_s, 3),
        "stream_s": round(stream_s, 5),
        "fast_s": round(fast_s, 4),
        "ratio_fast_to_stream": round(fast_s / stream_s, 1),
    }
    if args.reference:
        ref_s = timed(lambda: k.kmemleak.scan(engine="reference"), max(1, args.repeats // 2))
        out["reference_s"] = round(ref_s, 3)
        out["ratio_reference_to_fast"] = round(ref_s / fast_s, 1)
    out.update(memory(args.objects))
    if args.twice:
        # Measured after the main heap is dropped, so it does not raise the peak RSS.
        del k, last
        gc.collect()
        out["build_and_two_scans_s"] = round(
            timed(lambda: build_and_scan_twice(args.objects, args.seed, args.mem),
                  args.repeats), 4)
    print(json.dumps(out))


def memory(n: int) -> dict[str, object]:
    """Peak RSS so far, per object, and the machine it was taken on."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin"
                                                                else 1024)
    return {"peak_rss_bytes": rss, "bytes_per_object": round(rss / n),
            "machine": f"{platform.machine()} {platform.python_implementation()} "
                       f"{platform.python_version()} numpy {np.__version__}"}


if __name__ == "__main__":
    main()
