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
import random
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from kmemsim import Kernel
from kmemsim.experiments.heaps import build_heap
from kmemsim.layout import POISON_END, POISON_FREE, arch_by_name
from kmemsim.memory import AddressSpace, paused_gc
from kmemsim.mm.page_alloc import MAX_PAGE_ORDER
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
        slots = cache.freelist_of(slab)[::-1]  # allocation order
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
            # (as lists: the walk's discovery order too; a one-by-one heap has records
            # alone, walked over the holder index, a bulk one rows, laid out as arrays)
            list(t.reachable_blocks().items()),
            list(t.reachable_blocks(edges=False).items()), [t.referrers(b) for b in t.blocks],
            [t.out_edges(b) for b in [None, *t.blocks]])


def test_compact_indexes_agree_with_the_edges_and_survive_a_save() -> None:
    """Blocks with one edge, with several, edges ended and rekeyed, multi-word pieces."""
    k = Kernel(seed=4)
    ws = k.arch.word_size
    objs = build_heap(k, 600, np.random.default_rng(4), leak_fraction=0.1)
    t = k.truth
    t._check()
    # The slot indexes hold the record edges (the bulk stores' are rows of the edge table):
    # all three forms of an entry occur, an int, a tuple and a set.
    k.store(objs[6] + 2 * ws, objs[4])
    k.store(objs[6] + 3 * ws, objs[3])
    assert any(isinstance(e, int) for e in t._rec_by_target.values())
    assert any(isinstance(e, tuple) and len(e) == 2 for e in t._rec_by_holder.values())
    roots = t._rec_by_holder[None]
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
    assert sorted(_slots(k.truth._rec_by_holder.get(None))) == sorted(
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


# -- new slabs made in bulk (slab_alloc_bulk) ---------------------------------------------

def _slab_state(k: Kernel) -> tuple[object, ...]:
    """Everything SLUB and the page allocator keep, and the bytes of every region."""
    pa = k.page_allocator
    caches = [(c.name, c.active_objects, sorted(c.lost), list(c.allocated),
               [(b, s.pfn, s.order, s.fresh, bytes(s.state), list(s.free), c.freelist_of(s))
                for b, s in c.slabs.items()],
               None if c.cpu_slab is None else c.cpu_slab.base, [s.base for s in c.partial])
              for c in k.slab.caches.values()]
    return (caches, [(pfn, c.name) for pfn, c in k.slab.by_slab_pfn.items()],
            [list(fl) for fl in pa.free_area], list(pa.allocated.items()), pa.free_pages,
            pa.charged_pages, [(r.name, r.start, bytes(r.data)) for r in k.memory.regions()])


def _everything(k: Kernel, objs: list[int]) -> tuple[object, ...]:
    k.slab._check()
    k._check()
    kl = [(o.serial, o.pointer, o.size, o.trace) for o in k.kmemleak.object_list.values()]
    return objs, _slab_state(k), kl, _truth_state(k), k.dmesg()


def _scenario(k: Kernel, bulk: bool, rounds: int) -> list[int]:
    """Batches over several caches, with frees (partial slabs, a used CPU slab) and
    stores (edges in slabs that are freed and whose pages come back) in between."""
    rng = np.random.default_rng(11)
    named = k.kmem_cache_create("eq_named", 120)
    ws = k.arch.word_size
    got: list[int] = []
    live: list[int] = []
    for r in range(rounds):
        sizes = rng.choice([24, 64, 96, 192, 512, 2048, 8192], size=int(rng.integers(1, 400)))
        nnamed = int(rng.integers(0, 60))
        if bulk:
            new = k.kmalloc_bulk(sizes.tolist()) + k.kmem_cache_alloc_bulk(named, nnamed)
        else:
            new = [k.kmalloc(int(n)) for n in sizes] + [k.kmem_cache_alloc(named)
                                                        for _ in range(nnamed)]
        got += new
        live += [p for p in new if p]
        if len(live) > 2:  # some stores, then frees: whole slabs go back to the page allocator
            for i in rng.integers(0, len(live), size=20).tolist():
                k.store(live[i] + ws, live[(i * 7) % len(live)])
            gone = set(rng.choice(len(live), size=len(live) * (r % 3 + 1) // 4,
                                  replace=False).tolist())
            for i in sorted(gone, reverse=True):
                p = live.pop(i)
                if p in named.allocated:
                    k.kmem_cache_free(named, p)
                else:
                    k.kfree(p)
    return got


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
@pytest.mark.parametrize("cmdline", ["", "slub_debug=P", "init_on_free=1",
                                     "init_on_alloc=1"])
@pytest.mark.parametrize("hardened", [True, False])
def test_bulk_new_slabs_equal_one_by_one(arch: str, cmdline: str, hardened: bool) -> None:
    out = []
    for bulk in (False, True):
        k = Kernel(arch=arch, cmdline=cmdline, seed=12,
                   config={"CONFIG_SLAB_FREELIST_HARDENED": hardened})
        out.append(_everything(k, _scenario(k, bulk, 6)))
    assert out[0] == out[1]


@pytest.mark.parametrize(("chunk", "run_bytes"), [(1, 1 << 20), (3, 8192), (7, 1)])
def test_bulk_new_slabs_in_small_chunks_and_runs_equal_one_by_one(
        monkeypatch: pytest.MonkeyPatch, chunk: int, run_bytes: int) -> None:
    """Slabs initialised a few at a time, in short runs: the same as one by one."""
    import kmemsim.mm.slab as slab_module

    monkeypatch.setattr(slab_module, "_BULK_SLABS", chunk)
    monkeypatch.setattr(slab_module, "_BULK_RUN_BYTES", run_bytes)
    out = []
    for bulk in (False, True):
        k = Kernel(cmdline="slub_debug=P", seed=16)
        out.append(_everything(k, _scenario(k, bulk, 3)))
    assert out[0] == out[1]


@pytest.mark.parametrize("size", [40_000, 300_000, 2_000_000])
def test_bulk_slabs_of_large_objects_equal_one_by_one(size: int) -> None:
    """High-order slabs (above SLUB_MAX_ORDER), one object or a few each."""
    out = []
    for bulk in (False, True):
        k = Kernel(seed=17, cmdline="slub_debug=P")
        c = k.kmem_cache_create("eq_large", size)
        objs = k.kmem_cache_alloc_bulk(c, 5) if bulk else [k.kmem_cache_alloc(c)
                                                            for _ in range(5)]
        k.kmem_cache_free(c, objs[1])
        objs += k.kmem_cache_alloc_bulk(c, 3) if bulk else [k.kmem_cache_alloc(c)
                                                             for _ in range(3)]
        out.append(_everything(k, objs))
    assert out[0] == out[1]


def test_bulk_new_slabs_over_reused_pages_keep_the_stale_bytes_alike() -> None:
    """New slabs over pages that held other objects: what ``_new_slab`` does not write
    (the bytes between free pointers, a slab's tail past its last object) stays."""
    out = []
    for bulk in (False, True):
        k = Kernel(seed=13)
        c = k.kmem_cache_create("eq_old", 256)
        old = k.kmem_cache_alloc_bulk(c, 6 * c.objects_per_slab)
        k.memory.write_words(old, list(range(1, len(old) + 1)))
        for p in old:
            k.memory.write_word(p + 248, 0xABCD)
            k.kmem_cache_free(c, p)
        sizes = [64, 192, 96] * 300
        objs = k.kmalloc_bulk(sizes) if bulk else [k.kmalloc(n) for n in sizes]
        out.append(_everything(k, objs))
        reused = {getattr(k.slab.cache_of(p), "name", None) for p in old}
        assert {"kmalloc-96", "kmalloc-192"} <= reused  # caches whose slabs have a tail
    assert out[0] == out[1]


@pytest.mark.parametrize("spare", [0, 40, 400, 4000])
def test_bulk_when_memory_is_nearly_full_equals_one_by_one(spare: int) -> None:
    """Close to OOM the batch falls back to one-by-one (failures warn in between);
    a little further from it, the slabs are made in bulk: both as one by one."""
    out = []
    for bulk in (False, True):
        k = Kernel(seed=14, cmdline="mem=128M")
        pa = k.page_allocator
        # Eat memory with order-0 and order-3 blocks, leaving about `spare` pages.
        while pa.free_pages > spare + 600:
            if not k.alloc_pages(3):
                break
        while pa.free_pages > spare and k.alloc_pages(0):
            pass
        sizes = [32, 512, 2048, 96] * 150
        batches: list[int] = []

        def alloc_many(orders: list[int], real: Any = pa.alloc_many,
                       seen: list[int] = batches) -> list[int] | None:
            seen.append(len(orders))
            return real(orders)  # type: ignore[no-any-return]

        pa.alloc_many = alloc_many  # type: ignore[method-assign]
        objs = k.kmalloc_bulk(sizes) if bulk else [k.kmalloc(n) for n in sizes]
        out.append(_everything(k, objs))
    assert out[0] == out[1]
    assert (objs.count(0) > 0) == (spare < 400)  # too little memory: some fail, and warn
    assert (len(batches) == 1) == (spare >= 400)  # else the calls were made one by one


def test_alloc_many_does_nothing_when_a_block_cannot_be_served() -> None:
    k = Kernel(seed=15, cmdline="mem=128M")
    pa = k.page_allocator
    while pa.alloc(MAX_PAGE_ORDER):
        pass
    before = ([list(fl) for fl in pa.free_area], dict(pa.allocated), pa.free_pages,
              [bytes(r.data) for r in k.memory.regions()])
    assert pa.free_pages >= 2  # order-0 blocks remain, none of order 10
    assert pa.alloc_many([0, 0, MAX_PAGE_ORDER]) is None
    assert pa.alloc_many([0] * (pa.free_pages + 1)) is None
    assert before == ([list(fl) for fl in pa.free_area], dict(pa.allocated), pa.free_pages,
                      [bytes(r.data) for r in k.memory.regions()])
    twin = Kernel(seed=15, cmdline="mem=128M")
    while twin.page_allocator.alloc(MAX_PAGE_ORDER):
        pass
    orders = [0] * (pa.free_pages // 2)
    assert pa.alloc_many(orders) == [twin.page_allocator.alloc(o) for o in orders]
    assert [bytes(r.data) for r in k.memory.regions()] == [
        bytes(r.data) for r in twin.memory.regions()]


def test_reachable_blocks_walks_each_holder_by_slot_whether_rows_or_records() -> None:
    """A heap stored one by one (records, walked over the holder index) and the same heap
    stored in bulk (rows, laid out as arrays) are walked alike: breadth first, each
    block's edges by slot, each block's parent the first edge to reach it."""
    walks = []
    for bulk in (False, True):
        k = Kernel(seed=2)
        objs = k.kmalloc_bulk([128] * 40)
        k.store(k.define_static("walk_root", 8), objs[0])
        pairs = [(objs[0] + 8 * j, objs[1 + j]) for j in random.Random(5).sample(range(15), 15)]
        # the second level shares targets: which holder reaches each first is the question
        pairs += [(objs[j] + 8 * (j % 4), objs[16 + (j * 7) % 24]) for j in range(1, 16)]
        if bulk:
            k.store_many([s for s, _ in pairs], [t for _, t in pairs])
        else:
            for slot, target in pairs:
                k.store(slot, target)
        assert k.truth.edges.rows == (len(pairs) if bulk else 0)
        walks.append(list(k.truth.reachable_blocks().items()))
    assert walks[0] == walks[1]
    order = [base for base, _ in walks[0]]
    first = order.index(objs[1])  # (blocks the kernel itself holds come first)
    assert order[first:first + 15] == objs[1:16]  # block 0's targets, by slot
