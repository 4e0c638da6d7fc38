"""A kernel-like random heap, and a trial that builds, scans twice and judges one.

The heap is the one ``benchmarks/scan.py`` times: slab objects in a size
mix like ``/proc/slabinfo``, a data word in each, linked as a list, a
binary tree (a share ``leak_fraction`` of its links dropped: leaked
subtrees) and a hash table of plain pointers hanging off kernel statics,
plus a few task stacks holding pointers.  :func:`heap_trial` is the unit of
``benchmarks/sweep.py`` (1,000 trials of 10,000 objects) and a plain sweep
of kmemleak's precision and recall on such heaps.

>>> import numpy as np
>>> row = heap_trial({"objects": 300, "leak_fraction": 0.05, "arch": "x86_64"},
...                  np.random.SeedSequence(0))
>>> row["fp"], row["recall"] <= 1.0, row["leaked"] > 0
(0, True, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import KmemsimValueError
from ..kernel import Kernel
from ..truth import judge
from ..truth.judge import FALSE_NEGATIVE, FALSE_POSITIVE, TRUE_POSITIVE
from ._common import age_and_scan_twice, boot, rng_of
from .experiment import Experiment
from .stats import Row, summarize_rows

#: (object size, weight): a desktop kernel's slabinfo is dominated by small objects.
SIZE_MIX = ((32, 20), (64, 25), (96, 8), (128, 12), (192, 10), (256, 10), (512, 8),
            (1024, 4), (2048, 2), (4096, 1))
NBUCKETS = 1024
STACKS = 4
STACK_WORDS = 16


def build_heap(k: Kernel, n: int, rng: np.random.Generator, *,
               leak_fraction: float = 0.005) -> list[int]:
    """Allocate and link *n* objects on *k*; return their addresses in allocation order.

    Object ``i`` is a list node when ``i % 3 == 0``, a tree node when
    ``i % 3 == 1`` (its link from the parent dropped with probability
    *leak_fraction*), a hash-chain node otherwise.
    """
    if n < 1 or not 0.0 <= leak_fraction <= 1.0:
        raise KmemsimValueError("n must be at least 1 and leak_fraction in [0, 1]")
    ws = k.arch.word_size
    sizes = np.array([s for s, _ in SIZE_MIX])
    weights = np.array([w for _, w in SIZE_MIX], dtype=float)
    draw_size = rng.choice(sizes, size=n, p=weights / weights.sum())
    data = rng.integers(0, (1 << (8 * ws - 2)), size=n)  # data words, never addresses
    drop = rng.random(n) < leak_fraction
    bucket_of = rng.integers(0, NBUCKETS, size=n)
    list_head = k.define_static("bench_list", ws)
    buckets = k.define_static("bench_hash", NBUCKETS * ws)
    tree_root = k.define_static("bench_tree", ws)
    # All at once: the same objects, records and traces as n kmalloc calls.
    objs = k.kmalloc_bulk(draw_size.tolist())
    if not all(objs):
        raise KmemsimValueError(f"out of simulated memory after {objs.index(0)} of {n} objects: "
                                f"boot with a larger mem= (now {k.ram_bytes >> 20}M)")
    k.memory.write_words(objs, data)
    # Each object's link, as one batch in object order (the buckets' heads last), worked
    # out with numpy: the same stores, in the same order, as walking the objects.
    p = np.array(objs, dtype=np.uint64)
    w = np.uint64(ws)
    i = np.arange(n)
    slot = np.zeros(n, dtype=np.uint64)
    linked = np.zeros(n, dtype=bool)
    # a list: the previous list node links to each (the first hangs off the static head)
    lst = i[i % 3 == 0]
    slot[lst[1:]] = p[lst[:-1]] + w
    slot[lst[0]] = list_head
    linked[lst] = True
    # a binary tree: the parent of the t-th node links to it, unless the link is dropped
    tree = i[i % 3 == 1]
    if len(tree):
        rank = np.arange(len(tree))
        slot[tree[1:]] = p[tree[(rank[1:] - 1) // 2]] + w * (2 + rank[1:] % 2).astype(np.uint64)
        slot[tree[0]] = tree_root
        linked[tree[1:]] = ~drop[tree[1:]]
        linked[tree[0]] = True
    # a hash table: each node is pushed on its bucket's chain, holding the previous head
    chained = i[i % 3 == 2]
    target = p.copy()
    if len(chained):
        b = bucket_of[chained]
        order = np.argsort(b, kind="stable")  # per bucket, in push order
        same = np.zeros(len(chained), dtype=bool)
        same[1:] = b[order][1:] == b[order][:-1]
        pushed = chained[order][same]  # nodes pushed onto a non-empty chain
        slot[pushed] = p[pushed] + w
        target[pushed] = p[chained[order][:-1][same[1:]]]
        linked[pushed] = True
        # each used bucket ends holding its last push; buckets in order of first use
        first_use: dict[int, int] = {}
        last_push: dict[int, int] = {}
        for node, bk in zip(chained.tolist(), b.tolist(), strict=True):
            first_use.setdefault(bk, node)
            last_push[bk] = node
        used = sorted(first_use, key=first_use.__getitem__)
        head_slots = [buckets + ws * bk for bk in used]
        head_targets = [objs[last_push[bk]] for bk in used]
    else:
        head_slots = head_targets = []
    slots = slot[linked].tolist() + head_slots
    targets = target[linked].tolist() + head_targets
    k.store_many(slots, targets)
    store = k.store
    picks = rng.integers(0, n, size=(STACKS, STACK_WORDS))
    for s in range(STACKS):
        t = k.spawn("kworker/u8:1")
        with k.task_context(t), k.stack_frame(STACK_WORDS) as f:
            for j in range(STACK_WORDS):
                store(f.slot(j), objs[int(picks[s, j])])
    return objs


def heap_trial(params: dict[str, Any], seed: np.random.SeedSequence) -> dict[str, Any]:
    """Build a heap of ``objects``, age it, scan twice, judge: kmemleak's counts."""
    n = int(params["objects"])
    rng = rng_of(seed)
    # RAM sized to the heap (about 1 KiB per object, 128M at least): booting zeroes it all
    k = boot(seed, arch=str(params["arch"]), cmdline=f"mem={max(128, n >> 10)}M")
    objs = build_heap(k, n, rng, leak_fraction=float(params["leak_fraction"]))
    age_and_scan_twice(k)
    j = judge(k)
    kinds = [j[p].kind for p in objs]
    tp, fp, fn = (kinds.count(x) for x in (TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE))
    leaked = sum(1 for p in objs if not j[p].reachable)
    return {"leaked": leaked, "tp": tp, "fp": fp, "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0}


def summarize(rows: Any) -> list[Row]:
    """Per point: pooled ``precision`` and ``recall`` with Wilson bounds."""
    extended = [{**r, "reported": r["tp"] + r["fp"], "reportable": r["tp"] + r["fn"]}
                for r in rows]
    return summarize_rows(extended, ["objects", "leak_fraction", "arch"], rates={
        "precision": ("tp", "reported"), "recall": ("tp", "reportable")})


#: Not in :data:`~kmemsim.experiments.EXPERIMENTS` (it answers no new question); the
#: benchmark's unit, usable with :func:`~kmemsim.experiments.run_sweep`.
EXPERIMENT = Experiment(
    name="heap",
    title="kmemleak's precision and recall on random kernel-like heaps",
    trial=heap_trial,
    full_grid={"objects": [10_000], "leak_fraction": [0.005], "arch": ["x86_64"]},
    quick_grid={"objects": [1_000], "leak_fraction": [0.005], "arch": ["x86_64"]},
    full_trials=1_000,
    quick_trials=4,
    summarizer=summarize,
    description=__doc__ or "",
)
