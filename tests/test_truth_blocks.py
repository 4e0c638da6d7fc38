"""The block table (``kmemsim.truth.model.BlockTable``): bulk-allocated blocks as columns.

``Truth.blocks`` keeps the blocks of a bulk allocation as rows of sorted
runs (base, size, kind-and-cache code, live byte) and every other block as
a record in a ``SortedDict``; these tests hold it to a plain ``SortedDict``
under random operations, check that a bulk heap's blocks are rows that cost
a few bytes each, and that a truth saved with its blocks in a ``SortedDict``
(every save before the table) loads and behaves the same.
"""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sortedcontainers import SortedDict
from test_truth_compact import NOBJ, Program, views

from kmemsim import Kernel
from kmemsim._sorted import floor_key
from kmemsim.errors import KmemsimTypeError, KmemsimValueError
from kmemsim.experiments.heaps import build_heap
from kmemsim.truth import model
from kmemsim.truth.model import Block, BlockTable

NAMES = ["kmalloc-32", "kmalloc-64", "dentry"]


def _same(t: BlockTable, ref: SortedDict, rng: random.Random) -> None:
    """*t* answers as the ``SortedDict`` *ref* does (and is consistent)."""
    t._check()
    assert len(t) == len(ref)
    assert list(t) == list(ref)
    assert list(t.keys()) == list(ref.keys())
    assert list(t.values()) == list(ref.values())
    assert list(t.items()) == list(ref.items())
    if ref:
        assert t.peekitem(-1) == ref.peekitem(-1)
        assert t.peekitem(0) == ref.peekitem(0)
    for _ in range(40):
        a = rng.randrange(0, 0x4000)
        assert (a in t) == (a in ref)
        assert t.get(a) == ref.get(a)
        assert t.floor_key(a) == floor_key(ref, a)
        f = floor_key(ref, a)
        want = ref[f] if f is not None and a < ref[f].end else None
        assert t.block_at(a) == want


@pytest.mark.parametrize("seed", range(6))
def test_the_table_behaves_as_a_sorted_dict(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "_COMPACT_MIN", 8)  # compact often
    rng = random.Random(seed)
    t, ref = BlockTable(), SortedDict()
    for step in range(120):
        op = rng.randrange(6)
        if op == 0:  # a bulk allocation (repeats and 0 included: the last one counts)
            n = rng.randrange(0, 40)
            bases = [rng.randrange(0, 0x400) * 16 for _ in range(n)]
            sizes = [rng.randrange(1, 64) for _ in range(n)]
            caches = [rng.randrange(len(NAMES)) for _ in range(n)]
            t.add_rows(np.array(bases, dtype=np.uint64), sizes, "slab", caches, NAMES)
            for b, s, c in zip(bases, sizes, caches, strict=True):
                if b:
                    ref[b] = Block(b, s, "slab", NAMES[c])
        elif op == 1:  # one by one
            b = rng.randrange(1, 0x400) * 16
            t[b] = ref[b] = Block(b, rng.randrange(1, 64), rng.choice(["vmalloc", "percpu"]))
        elif op in (2, 3) and ref:
            b = rng.choice(list(ref)) if rng.random() < 0.9 else 0x9999
            if op == 2:
                assert t.pop(b, None) == ref.pop(b, None)
            elif b in ref:
                del t[b], ref[b]
            else:
                with pytest.raises(KeyError):
                    del t[b]
        elif op == 4 and ref:  # a row turned record
            b = rng.choice(list(ref))
            t[b] = ref[b] = Block(b, 8, "memblock")
        if step % 10 == 0 or op == 5:
            _same(t, ref, rng)
    _same(t, ref, rng)
    assert t.rows
    assert t.rows < len(t)
    t.clear()
    assert not t
    assert list(t) == []
    t._check()


def test_bad_rows_are_refused() -> None:
    t = BlockTable()
    with pytest.raises(KmemsimValueError, match="names"):
        t.add_rows([16], [8], "slab", [0], [])
    with pytest.raises(KmemsimValueError, match="length"):
        t.add_rows([16, 32], [8], "slab", [0, 0], NAMES)
    with pytest.raises(KmemsimValueError, match="code"):
        t.add_coded([16], [8], [5])
    with pytest.raises(KeyError):
        t.pop(16)
    with pytest.raises(KeyError):
        t[16]
    assert t.get(16, "none") == "none"
    assert len(t) == 0


def test_a_bulk_heap_keeps_its_blocks_as_rows() -> None:
    k = Kernel(seed=3)
    objs = build_heap(k, 3000, np.random.default_rng(3))
    t = k.truth
    assert all(t.blocks.is_row(o) for o in objs)
    assert t.blocks.rows >= len(objs)
    caches = {t.blocks[o].cache for o in objs}
    assert len(caches) > 3
    assert all(c.startswith("kmalloc-") for c in caches)
    assert t.block_at(objs[7] + 1) == t.blocks[objs[7]]
    key: Any = np.uint64(objs[8])  # (a numpy integer finds a row as an int does)
    assert key in t.blocks
    popped = t.blocks.pop(key)
    assert t.blocks.get(key) is None
    assert objs[8] not in t.blocks
    t.blocks[objs[8]] = popped  # (back, as a record: the truth's edges into it stay whole)
    assert t.blocks[key] == popped
    assert not t.blocks.is_row(objs[8])
    k.kfree(objs[7])
    assert objs[7] not in t.blocks
    assert t.block_at(objs[7] + 1) is None
    t._check()


def test_rows_cost_a_few_bytes_a_block() -> None:
    n = 100_000
    bases = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(64)
    sizes = np.full(n, 64, dtype=np.uint64)
    caches = np.zeros(n, dtype=np.intp)
    t = BlockTable()
    tracemalloc.start()
    try:
        for i in range(0, n, 10_000):  # batches, merged as they come
            t.add_rows(bases[i:i + 10_000], sizes[i:i + 10_000], "slab", caches[i:i + 10_000],
                       ["kmalloc-64"])
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(t) == n
    assert kept / n < 24  # 17 bytes of columns a block, and the runs' spare capacity
    assert t.block_at(64 * 500 + 3) == Block(64 * 500, 64, "slab", "kmalloc-64")


def _to_old_layout(t: model.Truth) -> None:
    """Put *t*'s blocks in the layout saved before the block table: one ``SortedDict``."""
    blocks = SortedDict(t.blocks.items())
    del t.__dict__["_blocks"]
    t.__dict__["blocks"] = blocks


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_a_truth_of_the_old_layout_is_converted(tmp_path: Path, arch: str) -> None:
    a, b = Program(arch, bulk=True), Program(arch, bulk=True)
    for p in (a, b):
        p.run(("bulk", [(i, j, (i + 3) % NOBJ, 0) for i in range(NOBJ) for j in (1, 5)]))
        p.run(("free_part", 6, 2))
    _to_old_layout(a.k.truth)
    a.k.save(tmp_path / "old.kmem")
    loaded = Kernel.load(tmp_path / "old.kmem")
    assert "blocks" in a.k.truth.__dict__
    for k in (a.k, loaded):
        assert views(k.truth) == views(b.k.truth)  # converted on first use (or load)
        assert "blocks" not in k.truth.__dict__
        assert not k.truth.blocks.rows  # the old blocks stay records
        k.truth._check()
    b.run(("free", 4))
    for k in (a.k, loaded):
        k.kfree(a.objs[4])
        assert views(k.truth) == views(b.k.truth)
        k.truth._check()


def test_a_table_with_rows_saves_and_loads(tmp_path: Path) -> None:
    k = Kernel(seed=5)
    objs = build_heap(k, 400, np.random.default_rng(5))
    k.kfree(objs[3])
    k.save(tmp_path / "k.kmem")
    loaded = Kernel.load(tmp_path / "k.kmem")
    assert list(loaded.truth.blocks.items()) == list(k.truth.blocks.items())
    assert loaded.truth.blocks.rows == k.truth.blocks.rows > 0
    loaded.truth._check()


@pytest.mark.parametrize(("n", "seed"), [(1, 0), (3, 1), (4, 2), (8, 3), (12, 4), (8, 5)])
def test_write_each_tells_the_truth_at_once_and_ends_the_same_edges(n: int, seed: int) -> None:
    kernels = [Kernel(seed=seed) for _ in range(2)]
    for k in kernels:
        objs = build_heap(k, 300, np.random.default_rng(seed))
        ws = k.arch.word_size
        k.store(objs[1] + 3, objs[2])  # an unaligned record
        k.store_many([objs[4] + 5 * ws, objs[5]], [objs[6], objs[7]])
    rng = random.Random(seed)
    # many writes of one length in the slab memory, aligned or not (a few at the same place)
    addrs = [rng.choice(objs) + rng.randrange(0, 64) for _ in range(400)]
    addrs += [*addrs[:5], objs[1] + 1, objs[4] + 5 * ws + 7, objs[5] - n + 1]
    data = bytes(range(1, n + 1))
    batched: list[int] = []
    hook = kernels[0].truth.on_write_words

    def spy(addrs: Sequence[int], length: int) -> None:
        batched.append(len(addrs))
        hook(addrs, length)

    kernels[0].memory._on_write_words = spy
    kernels[0].memory.write_each(addrs, data)
    for a in addrs:
        kernels[1].memory.write(a, data)
    assert batched == [len(addrs)]  # the truth heard of them at once
    ta, tb = (k.truth for k in kernels)
    assert list(ta.history.items()) == list(tb.history.items())
    assert list(ta.edges.items()) == list(tb.edges.items())
    assert len(ta.history) > 10  # (edges ended: rows and records)
    ta._check()


def test_on_alloc_many_is_on_alloc_for_each() -> None:
    entries = [(0x1000 + 32 * i, 32 - i % 3, "slab" if i % 4 else "pages", f"c{i % 2}")
               for i in range(40)]
    entries += [(0, 8, "slab", "c0"), (0x1000, 99, "vmalloc", "")]  # base 0; a repeat
    many, one = Kernel(seed=1).truth, Kernel(seed=1).truth
    many.on_alloc_many(iter(entries))
    for e in entries:
        one.on_alloc(*e)
    assert list(many.blocks.items()) == list(one.blocks.items())
    assert many.blocks.rows == 40
    many.on_alloc_many(entries[:3])  # a few: records
    for e in entries[:3]:
        one.on_alloc(*e)
    assert not many.blocks.is_row(0x1000)
    assert list(many.blocks.items()) == list(one.blocks.items())
    many._check()
    with pytest.raises(KmemsimTypeError, match="blocks"):
        many.blocks = {}
