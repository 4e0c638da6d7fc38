"""The benchmark heap links its objects as the plain walk over them describes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kmemsim import Kernel
from kmemsim.experiments.heaps import NBUCKETS, SIZE_MIX, build_heap


def walk(k: Kernel, objs: list[int], rng: np.random.Generator, leak_fraction: float
         ) -> tuple[list[int], list[int]]:
    """The stores of ``build_heap``, object by object (its docstring, spelled out)."""
    ws = k.arch.word_size
    n = len(objs)
    weights = np.array([w for _, w in SIZE_MIX], dtype=float)
    rng.choice(len(SIZE_MIX), size=n, p=weights / weights.sum())  # the size draw
    rng.integers(0, 1 << (8 * ws - 2), size=n)  # the data words
    drop = rng.random(n) < leak_fraction
    bucket_of = rng.integers(0, NBUCKETS, size=n)
    list_head = k.statics["bench_list"]
    buckets = k.statics["bench_hash"]
    tree_root = k.statics["bench_tree"]
    slots: list[int] = []
    targets: list[int] = []
    heads: dict[int, int] = {}
    tree: list[int] = []
    last = list_head
    for i, p in enumerate(objs):
        if i % 3 == 0:
            slots.append(last if last == list_head else last + ws)
            targets.append(p)
            last = p
        elif i % 3 == 1:
            if not tree:
                slots.append(tree_root)
                targets.append(p)
            elif not drop[i]:
                slots.append(tree[(len(tree) - 1) // 2] + ws * (2 + len(tree) % 2))
                targets.append(p)
            tree.append(p)
        else:
            bucket = buckets + ws * int(bucket_of[i])
            if bucket in heads:
                slots.append(p + ws)
                targets.append(heads[bucket])
            heads[bucket] = p
    return slots + list(heads), targets + list(heads.values())


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 400), seed=st.integers(0, 2**32 - 1),
       arch=st.sampled_from(["x86_64", "arm64", "i386"]),
       leak_fraction=st.sampled_from([0.0, 0.005, 0.3, 1.0]))
def test_build_heap_stores_what_the_walk_describes(n: int, seed: int, arch: str,
                                                   leak_fraction: float) -> None:
    k = Kernel(seed=1, arch=arch)
    batches: list[tuple[list[int], list[int]]] = []
    store_many = k.store_many

    def spy(slots: list[int], targets: list[int]) -> None:
        batches.append((list(slots), list(targets)))
        store_many(slots, targets)

    k.store_many = spy  # type: ignore[method-assign]
    objs = build_heap(k, n, np.random.default_rng(seed), leak_fraction=leak_fraction)
    assert batches == [walk(k, objs, np.random.default_rng(seed), leak_fraction)]
    for slot, target in zip(*batches[0], strict=True):
        assert k.memory.read_word(slot) == target
