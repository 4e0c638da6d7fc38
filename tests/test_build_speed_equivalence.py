"""The fast paths of a heap build give exactly what the plain code gives (issue 4).

A new slab's free pointers are encoded with numpy, the ``struct page``
refcounts of a block are written in one call, the truth keeps a lone slot as
an int in its indexes (and a one-word piece as its slot alone), and bulk
operations hold off the garbage collector: each is compared here with the
scalar definition it replaces.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Callable

import numpy as np
import pytest

from kmemsim import Kernel
from kmemsim.experiments.heaps import build_heap
from kmemsim.layout import POISON_END, POISON_FREE, arch_by_name
from kmemsim.memory import AddressSpace, paused_gc
from kmemsim.mm.slab import KMALLOC_SIZES, SLAB_POISON, kmalloc_size_class
from kmemsim.truth.encodings import Xor
from kmemsim.truth.model import _slots


@pytest.mark.parametrize("arch", ["x86_64", "arm64", "i386"])
@pytest.mark.parametrize("cmdline", ["", "slub_debug=P", "init_on_free=1"])
@pytest.mark.parametrize("hardened", [True, False])
def test_new_slab_free_pointers_match_scalar_encoding(arch: str, cmdline: str,
                                                      hardened: bool) -> None:
    k = Kernel(arch=arch, cmdline=cmdline,
               config={"CONFIG_SLAB_FREELIST_HARDENED": hardened}, seed=3)
    for size in (24, 40, 200, 3000):
        cache = k.kmem_cache_create(f"eq_{size}", size)
        assert bool(cache.random) == hardened
        slab = cache._new_slab()
        assert slab is not None
        slots = slab.freelist[::-1]  # allocation order
        assert slots == [slab.base + cache.red_left_pad + i * cache.size
                         for i in range(cache.objects_per_slab)]
        for obj, nxt in zip(slots, [*slots[1:], 0], strict=True):
            ptr_addr = obj + cache.offset
            # the word is freelist_ptr_encode (scalar) of the next slot, and decodes to it
            assert k.memory.read_word(ptr_addr) == cache.freelist_ptr_encode(nxt, ptr_addr)
            assert cache.get_freepointer(obj) == nxt
            if cache.flags & SLAB_POISON:
                body = k.memory.read(obj, cache.object_size)
                assert body == bytes([POISON_FREE]) * (size - 1) + bytes([POISON_END])


@pytest.mark.parametrize("arch", ["x86_64", "arm64", "i386"])
def test_page_refcounts_written_for_every_page(arch: str) -> None:
    k = Kernel(arch=arch, seed=1)
    pa = k.page_allocator
    for order in (0, 1, 3):
        pfn = pa.alloc(order)
        for i in range(1 << order):
            ref = pa.struct_page(pfn + i) + {8: 52, 4: 20}[k.arch.word_size]
            assert k.memory.read(ref, 4) == (1).to_bytes(4, "little")


def test_write_each_equals_writes_one_by_one() -> None:
    heard: list[list[tuple[int, int]]] = [[], []]

    def hook(log: list[tuple[int, int]]) -> Callable[[int, int], None]:
        return lambda addr, n: log.append((addr, n))

    mems = [AddressSpace(arch_by_name("x86_64"), on_write=hook(h)) for h in heard]
    for m in mems:
        m.map(0x1000, 64, "a")
        m.map(0x1040, 64, "b")
    addrs = [0x1004, 0x1020, 0x1004, 0x103e]  # the last one runs into the next region
    mems[0].write_each(addrs, b"\xaa\xbb\xcc")
    mems[1].write_each(addrs[:3], b"\xaa\xbb\xcc")  # one region: the fast path
    mems[1].write(addrs[3], b"\xaa\xbb\xcc")
    assert [bytes(r.data) for r in mems[0].regions()] == [bytes(r.data) for r in mems[1].regions()]
    assert heard[0] == heard[1] == [(a, 3) for a in addrs]


def test_kmalloc_size_class_is_the_smallest_class_that_fits() -> None:
    for size in range(1, KMALLOC_SIZES[-1] + 1):
        assert kmalloc_size_class(size) == min(c for c in KMALLOC_SIZES if size <= c)


def test_paused_gc_restores_a_disabled_collector() -> None:
    gc.disable()
    try:
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(ZeroDivisionError), paused_gc():
        _ = 1 // 0
    assert gc.isenabled()


def _truth_state(k: Kernel) -> tuple[object, ...]:
    t = k.truth
    return (list(t.edges.items()), list(t.history.items()), list(t.blocks.items()),
            t.reachable_blocks(), [t.referrers(b) for b in t.blocks],
            [t.out_edges(b) for b in [None, *t.blocks]])


def test_compact_indexes_agree_with_the_edges_and_survive_a_save() -> None:
    """Blocks with one edge, with several, edges ended and rekeyed, multi-word pieces."""
    k = Kernel(seed=4)
    ws = k.arch.word_size
    objs = build_heap(k, 600, np.random.default_rng(4), leak_fraction=0.1)
    t = k.truth
    t._check()
    # all three forms of an index entry occur: an int, a tuple and a set
    assert any(isinstance(e, int) for e in t._by_target.values())
    assert any(isinstance(e, tuple) and len(e) == 2 for e in t._by_holder.values())
    roots = t._by_holder[None]
    assert isinstance(roots, set)
    assert len(roots) > 8
    # Reference indexes, built from the edge table the long way.
    for base in t.blocks:
        assert [e.slot for e in t.referrers(base)] == sorted(
            s for s, e in t.edges.items() if e.target_base == base)
    head = k.define_static("eq_head", 4 * ws)
    k.store(head, objs[5])
    k.store(head + ws, objs[5], encoding=Xor())
    k.store(objs[7] + 2 * ws, objs[5])       # a third referrer: the entry grows
    k.store(objs[7] + 2 * ws, objs[9])       # overwritten: back to two
    k.memory.write_word(head, 0)             # ended by a plain write
    k.kfree(objs[9])                         # target freed
    k.kfree(objs[8])                         # holder freed
    mb = k.memblock_alloc(8 * ws)
    k.store(mb + 6 * ws, objs[11])
    k.store(objs[12], mb + 6 * ws)
    k.memblock_free(mb, 2 * ws)              # the rest of the block keeps its edges (rekeyed)
    t._check()
    path = os.path.join(tempfile.mkdtemp(), "eq.kmemsim")
    k.save(path)
    k2 = Kernel.load(path)
    k2.truth._check()
    assert _truth_state(k2) == _truth_state(k)
    for kern in (k, k2):
        kern.kfree(objs[5])
        kern.truth._check()
    assert _truth_state(k2) == _truth_state(k)
    assert sorted(_slots(k.truth._by_holder.get(None))) == sorted(
        s for s, e in k.truth.edges.items() if e.holder is None)


def test_bulk_records_equal_dataclass_records_and_stay_frozen() -> None:
    import dataclasses

    from kmemsim.truth.model import Block, Edge

    k = Kernel(seed=2)
    a, b = k.kmalloc_bulk([64, 128])
    k.store_many([a], [b])
    block, edge = k.truth.blocks[b], k.truth.edges[a]
    assert block == Block(b, 128, "slab", "kmalloc-128")
    assert type(block) is Block
    assert hash(block) == hash(Block(b, 128, "slab", "kmalloc-128"))
    rebuilt = Edge(**{f.name: getattr(edge, f.name) for f in dataclasses.fields(Edge)})
    assert edge == rebuilt
    assert hash(edge) == hash(rebuilt)
    assert type(edge) is Edge
    with pytest.raises(dataclasses.FrozenInstanceError):
        block.size = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        edge.slot = 1  # type: ignore[misc]


def test_bulk_from_a_noleaktrace_cache_is_untracked_as_one_by_one() -> None:
    from kmemsim.mm.slab import SLAB_NOLEAKTRACE

    out = []
    for bulk in (False, True):
        k = Kernel(seed=6)
        quiet = k.kmem_cache_create("eq_quiet", 48, flags=SLAB_NOLEAKTRACE)
        loud = k.kmem_cache_create("eq_loud", 48)
        if bulk:
            objs = k.kmem_cache_alloc_bulk(quiet, 40) + k.kmem_cache_alloc_bulk(loud, 40)
        else:
            objs = ([k.kmem_cache_alloc(quiet) for _ in range(40)]
                    + [k.kmem_cache_alloc(loud) for _ in range(40)])
        out.append((objs, [k.kmemleak.find(p) is None for p in objs],
                    list(k.truth.blocks.items())))
    assert out[0] == out[1]
    assert out[0][1] == [True] * 40 + [False] * 40


@pytest.mark.parametrize("batch", [3, 400])
def test_store_many_into_a_larger_heap_equals_stores(batch: int) -> None:
    """A small batch adds its pieces to the index one by one, a large one re-sorts it."""
    states = []
    for bulk in (False, True):
        k = Kernel(seed=8)
        objs = build_heap(k, 900, np.random.default_rng(8))
        ws = k.arch.word_size
        fresh = k.kmalloc_bulk([64] * batch)
        # over old edges (the list links, word 1 of each node) and into fresh objects
        slots = [p + ws for p in objs[: batch // 2]] + [p + 4 * ws for p in fresh[batch // 2:]]
        targets = [fresh[i % batch] for i in range(len(slots))]
        if bulk:
            k.store_many(slots, targets)
        else:
            for s, t in zip(slots, targets, strict=True):
                k.store(s, t)
        k.truth._check()
        states.append((_truth_state(k), k.truth._piece_list()))
    assert states[0] == states[1]
