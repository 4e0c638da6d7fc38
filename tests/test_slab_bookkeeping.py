"""SLUB's per-slab bookkeeping: one byte a slot, a freelist of freed slots over the
never-used ones, ``cache.allocated`` a view (issue 4: 4 M objects in 3 GiB).

The freelist order is checked against a plain model of the old list freelists
(and against the free-pointer chain in simulated memory), the view against
sets, ``_check`` against corrupted bookkeeping, and saves written before this
layout (slab freelists as lists, ``cache.allocated`` a set) against the
kernel they came from.
"""

from __future__ import annotations

import random
import sys
from array import array
from typing import Any

import pytest
from savefiles import join, split

from kmemsim import Kernel, KernelOops
from kmemsim.errors import KmemsimFormatError
from kmemsim.mm.slab import SLOT_FREE, SLOT_LOST, KmemCache, Slab
from kmemsim.persist import dumps, loads


def chain(cache: KmemCache, slab: Slab) -> list[int]:
    """The freelist as the kernel sees it: the head, then each decoded free pointer."""
    out, obj = [], cache.freelist_head(slab)
    while obj:
        out.append(obj)
        obj = cache.get_freepointer(obj)
        assert len(out) <= cache.objects_per_slab
    return out


class Model:
    """The old bookkeeping: a list freelist per slab (head last) and a set of objects."""

    def __init__(self, cache: KmemCache) -> None:
        self.cache = cache
        self.free: dict[int, list[int]] = {}
        self.cpu: int | None = None
        self.partial: list[int] = []
        self.allocated: set[int] = set()

    def alloc(self) -> int:
        c = self.cache
        if self.cpu is None or not self.free[self.cpu]:
            if self.partial:
                self.cpu = self.partial.pop(0)
            else:  # a new slab: its slots in address order, the first one the head
                new = [b for b in c.slabs if b not in self.free]
                assert len(new) == 1
                first = new[0] + c.red_left_pad
                self.free[new[0]] = [first + i * c.size for i in range(c.objects_per_slab)][::-1]
                self.cpu = new[0]
        obj = self.free[self.cpu].pop()
        self.allocated.add(obj)
        return obj

    def release(self, obj: int) -> None:
        c = self.cache
        slab = c.slab_of(obj)
        assert slab is not None
        fl = self.free[slab.base]
        self.allocated.discard(obj)
        if not fl and slab.base != self.cpu:
            self.partial.append(slab.base)
        fl.append(obj)
        if len(fl) == c.objects_per_slab and slab.base != self.cpu:
            if slab.base in self.partial:
                self.partial.remove(slab.base)
            del self.free[slab.base]


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
@pytest.mark.parametrize("cmdline", ["", "slub_debug=P", "init_on_free=1"])
def test_alloc_and_free_follow_the_list_model_and_the_memory_chain(arch: str,
                                                                   cmdline: str) -> None:
    k = Kernel(arch=arch, cmdline=cmdline, seed=9)
    c = k.kmem_cache_create("model", 200)
    model = Model(c)
    rng = random.Random(9)
    live: list[int] = []
    for step in range(1500):
        if live and rng.random() < 0.45:
            p = live.pop(rng.randrange(len(live)))
            k.kmem_cache_free(c, p)
            model.release(p)
        else:
            p = k.kmem_cache_alloc(c) if step % 7 else k.kmem_cache_alloc_bulk(c, 1)[0]
            assert p == model.alloc()
            live.append(p)
        if step % 50 == 0:
            assert set(c.slabs) == set(model.free)
            for base, slab in c.slabs.items():
                assert c.freelist_of(slab) == model.free[base]
                assert chain(c, slab) == model.free[base][::-1]  # the words in memory agree
            assert c.cpu_slab is not None
            assert c.cpu_slab.base == model.cpu
            assert [s.base for s in c.partial] == model.partial
            assert c.allocated == model.allocated
            k.slab._check()


def test_allocated_is_a_set_like_view() -> None:
    k = Kernel(seed=3)
    c = k.kmem_cache_create("view", 512)
    objs = k.kmem_cache_alloc_bulk(c, 3 * c.objects_per_slab)
    freed = objs[1::3]
    for p in freed:
        k.kmem_cache_free(c, p)
    kept = [p for p in objs if p not in freed]
    view = c.allocated
    assert len(view) == len(kept)
    assert list(view) == sorted(kept)  # slab by slab (made in address order here), by address
    assert all(p in view for p in kept)
    assert not any(p in view for p in freed)
    assert kept[0] + 8 not in view                       # an interior pointer
    assert k.kmalloc(512) not in view                    # another cache's object
    assert "x" not in view
    assert float(kept[0]) not in view
    assert view == set(kept)
    assert set(kept) == view
    assert view & {kept[0], freed[0]} == {kept[0]}
    assert {kept[0], freed[0]} & view == {kept[0]}
    assert view | {freed[0]} == {*kept, freed[0]}
    assert view - set(kept[1:]) == {kept[0]}
    assert type(view | set()) is set
    assert repr(view) == f"<allocated objects of view: {len(kept)}>"


def test_lost_objects_are_neither_allocated_nor_free() -> None:
    k = Kernel(cmdline="slub_debug=FP", seed=4)
    c = k.slab.kmalloc_caches[32]
    keep = k.kmalloc(32)
    p = k.kmalloc(32)
    k.kfree(p)
    k.memory.write(p + 3, b"AB")  # use after free: the next allocation gives up the slab
    q = k.kmalloc(32)
    slab = c.slab_of(p)
    assert slab is not None
    assert slab.nfree == 0
    assert p in c.lost
    assert p not in c.allocated
    assert keep in c.allocated
    assert q not in c.lost
    assert q in c.allocated
    assert c.slab_of(q) is not slab
    assert slab.state[c.slot_index(slab, p)] == SLOT_LOST
    assert len(c.allocated) + len(c.lost) == c.active_objects
    k.slab._check()


def test_double_and_invalid_frees_still_oops() -> None:
    def oops(ptr: int) -> str:
        with pytest.raises(KernelOops) as info:
            k.kfree(ptr)
        return info.value.lines[1]

    k = Kernel(seed=5)
    a, b = k.kmalloc(64), k.kmalloc(64)
    k.kfree(a)
    assert "Object already free" in oops(a)
    assert "Invalid object pointer" in oops(b + 8)
    c = k.slab.kmalloc_caches[64]
    slab = c.slab_of(b)
    assert slab is not None
    assert slab.fresh < c.objects_per_slab
    assert "Object already free" in oops(c.freelist_of(slab)[0])  # never handed out
    k.kfree(b)
    k.slab._check()


@pytest.mark.parametrize("corrupt", ["state", "twice", "fresh_in_free", "lost", "count"])
def test_check_finds_corrupted_bookkeeping(corrupt: str) -> None:
    k = Kernel(seed=6)
    c = k.kmem_cache_create("corrupt", 96)
    objs = k.kmem_cache_alloc_bulk(c, 10)
    k.kmem_cache_free(c, objs[2])
    k.slab._check()
    slab = c.slab_of(objs[0])
    assert slab is not None
    if corrupt == "state":
        slab.state[0] = SLOT_FREE               # allocated, but not on the freelist
    elif corrupt == "twice":
        slab.free.append(objs[2])               # on the freelist twice
    elif corrupt == "fresh_in_free":
        slab.free.append(slab.base + slab.fresh * c.size)  # a never-used slot freed
    elif corrupt == "lost":
        slab.state[1] = SLOT_LOST               # lost, but not in cache.lost
    else:
        c.active_objects += 1
    with pytest.raises(AssertionError):
        k.slab._check()


def test_bookkeeping_is_a_few_bytes_an_object() -> None:
    k = Kernel(seed=7)
    objs = k.kmalloc_bulk([64] * 20_000)
    c = k.slab.kmalloc_caches[64]
    held = sum(sys.getsizeof(s) + sys.getsizeof(s.state) + sys.getsizeof(s.free)
               for s in c.slabs.values())
    assert c.active_objects >= len(objs)
    # one byte a slot and ~250 bytes a slab of 64 objects (was a set entry and an int
    # per object, ~100 B)
    assert held / c.active_objects < 6


def _legacy(k: Kernel) -> bytes:
    """*k* saved as kmemsim wrote saves before the per-slot states: each slab holds its
    freelist as a list (``base, pfn, order, freelist``) and each cache ``allocated``,
    a set."""
    head, doc, blobs = split(dumps(k))
    objs: list[Any] = doc["objects"]
    slabs = {s.base: (c, s) for c in k.slab.caches.values() for s in c.slabs.values()}
    caches = {c.name: c for c in k.slab.caches.values()}
    for e in list(objs):
        if e.get("t") != "obj":
            continue
        q = objs[e["c"][0]].get("q")
        if q == "Slab":
            fields = dict(e["s"])
            c, s = slabs[fields["base"]]
            objs.append({"t": "list", "v": c.freelist_of(s)})
            e["s"] = [["base", fields["base"]], ["pfn", fields["pfn"]],
                      ["order", fields["order"]], ["freelist", [len(objs) - 1]]]
        elif q == "KmemCache":
            c = caches[dict(e["d"])["name"]]
            objs.append({"t": "set", "v": sorted(c.allocated)})
            e["d"].append(["allocated", [len(objs) - 1]])
    return join(head, doc, blobs)


@pytest.mark.parametrize("cmdline", ["", "slub_debug=FP"])
def test_saves_from_before_the_slot_states_load_and_continue_alike(cmdline: str) -> None:
    k = Kernel(cmdline=cmdline, seed=8)
    c = k.kmem_cache_create("legacy", 72)
    live = k.kmalloc_bulk([32, 64, 96, 32] * 40) + k.kmem_cache_alloc_bulk(c, 60)
    for p in live[::5]:
        if p in c.allocated:
            k.kmem_cache_free(c, p)
        else:
            k.kfree(p)
    if cmdline:  # a slab SLUB gave up on
        p = k.kmalloc(32)
        k.kfree(p)
        k.memory.write(p + 3, b"AB")
        k.kmalloc(32)
        assert k.slab.kmalloc_caches[32].lost
    k2 = loads(_legacy(k))
    k2.slab._check()
    for kern in (k, k2):
        assert "_saved_allocated" not in kern.slab.caches["legacy"].__dict__
    for name, c1 in k.slab.caches.items():
        c2 = k2.slab.caches[name]
        assert c2.allocated == c1.allocated
        assert c2.lost == c1.lost
        for s1, s2 in zip(c1.slabs.values(), c2.slabs.values(), strict=True):
            assert c2.freelist_of(s2) == c1.freelist_of(s1)
            assert isinstance(s2.free, array)
    # the same next allocations and frees
    for kern in (k, k2):
        cache = kern.slab.caches["legacy"]
        got = [kern.kmalloc(n) for n in (32, 64, 96, 32, 4096)] + [
            kern.kmem_cache_alloc(cache) for _ in range(30)]
        kern.kfree(got[1])
        kern.slab._check()
        kern.got = got  # type: ignore[attr-defined]
    assert k.got == k2.got  # type: ignore[attr-defined]
    assert k2.dmesg() == k.dmesg()


def test_a_forged_legacy_freelist_is_refused() -> None:
    k = Kernel(seed=10)
    a = k.kmalloc(64)
    data = _legacy(k)
    head, doc, blobs = split(data)
    lists = [e for e in doc["objects"] if e.get("t") == "list" and a + 64 in e["v"]]
    lists[0]["v"].append(a + 1)  # not a slot
    with pytest.raises(KmemsimFormatError, match="not at a slot"):
        loads(join(head, doc, blobs))
