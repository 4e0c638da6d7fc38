"""Bulk paths give exactly what the calls one by one give (issue 4: building big heaps).

``kmalloc_bulk``, ``kmem_cache_alloc_bulk`` and ``store_many`` batch the
bookkeeping; every byte, kmemleak record, truth edge, history entry, report
and verdict must equal the one-by-one result, on every architecture, with
and without poisoning, across frees that refill the freelists.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmemsim import Kernel, KmemsimTypeError, KmemsimValueError
from kmemsim.truth import judge

KMEMLEAK = "/sys/kernel/debug/kmemleak"
SIZES = [8, 16, 24, 32, 64, 96, 100, 192, 256, 512, 1024, 4096, 8192]


def fingerprint(k: Kernel) -> tuple[Any, ...]:
    k.sleep(6)
    k.write(KMEMLEAK, "scan")
    k.sleep(6)
    k.write(KMEMLEAK, "scan")
    objs = [(o.serial, o.pointer, o.size, o.trace, o.comm, o.pid, o.jiffies, o.count, o.flags,
             o.checksum) for o in k.kmemleak.object_list.values()]
    verdicts = sorted((v.pointer, v.kind, v.cause) for v in judge(k).verdicts.values())
    return (objs, [bytes(r.data) for r in k.memory.regions()], list(k.truth.edges.items()),
            list(k.truth.history.items()), sorted(k.truth.blocks.keys()), k.read(KMEMLEAK),
            k.read("/proc/meminfo"), k.read("/proc/slabinfo"), k.dmesg(), verdicts)


def build(k: Kernel, script: list[tuple[str, list[int], bool]], bulk: bool) -> None:
    ws = k.arch.word_size
    cache = k.kmem_cache_create("bulk_test", 40)
    statics = k.define_static("bulk_roots", 32 * ws)
    live: list[int] = []
    for op, values, zero in script:
        if op == "alloc":
            sizes = [SIZES[v % len(SIZES)] for v in values]
            if bulk:
                live += k.kmalloc_bulk(sizes, zero=zero)
            else:
                live += [(k.kzalloc if zero else k.kmalloc)(n) for n in sizes]
        elif op == "cache":
            if bulk:
                live += k.kmem_cache_alloc_bulk(cache, len(values), zero=zero)
            else:
                alloc = k.kmem_cache_zalloc if zero else k.kmem_cache_alloc
                live += [alloc(cache) for _ in values]
        elif op == "free" and live:
            for v in sorted({v % len(live) for v in values}, reverse=True):
                p = live.pop(v)
                if k.slab.cache_of(p) is cache:
                    k.kmem_cache_free(cache, p)
                else:
                    k.kfree(p)
        elif op == "store" and live:
            slots = [statics + ws * (v % 32) if v % 5 == 0 else live[v % len(live)] + ws * (v % 3)
                     for v in values]
            targets = [0 if v % 17 == 16 else live[(v * 7) % len(live)] for v in values]
            if bulk:
                k.store_many(slots, targets)
            else:
                for s, t in zip(slots, targets, strict=True):
                    k.store(s, t)


script_strategy = st.lists(
    st.tuples(st.sampled_from(["alloc", "cache", "free", "store"]),
              st.lists(st.integers(0, 1 << 12), min_size=0, max_size=60), st.booleans()),
    min_size=1, max_size=8)


@settings(max_examples=40)
@given(script=script_strategy, arch=st.sampled_from(["x86_64", "arm64", "i386"]),
       cmdline=st.sampled_from(["", "slub_debug=P", "init_on_free=1", "slub_debug=U",
                                "slub_debug=FZPU", "init_on_alloc=1"]))
def test_bulk_paths_equal_one_by_one(script: list[tuple[str, list[int], bool]], arch: str,
                                     cmdline: str) -> None:
    a, b = Kernel(arch=arch, cmdline=cmdline, seed=5), Kernel(arch=arch, cmdline=cmdline, seed=5)
    build(a, script, bulk=False)
    build(b, script, bulk=True)
    assert fingerprint(a) == fingerprint(b)


def test_bulk_traces_name_the_module_line_like_one_by_one(tmp_path: Any) -> None:
    k = Kernel(seed=1)
    for name, body in (("bulk_leak", "self.k.kmalloc_bulk([64] * 3)"),
                       ("loop_leak", "for n in [64] * 3: self.k.kmalloc(n)")):
        path = tmp_path / f"{name}.py"
        path.write_text("from kmemsim import Module\n"
                        f"class Leak(Module):\n    name = {name!r}\n"
                        f"    def init(self):\n        {body}\n        return 0\n")
        k.insmod(path)
    objs = list(k.kmemleak.object_list.values())
    for mod in ("bulk_leak", "loop_leak"):
        group = [o for o in objs if len(o.trace) > 1 and k.symbolize(o.trace[1]).endswith(
            f"[{mod}]")]
        assert len(group) == 3
        assert len({o.trace for o in group}) == 1  # one call site, one trace
        assert k.symbolize(group[0].trace[0]).startswith("__kmalloc_cache_noprof+")
        assert [o.serial for o in group] == [group[0].serial + i for i in range(3)]
        if mod == "bulk_leak":
            bulk = group
        else:
            loop = group
    # the same depth and the same kernel frames below the module line
    assert len(bulk[0].trace) == len(loop[0].trace)
    assert bulk[0].trace[2:] == loop[0].trace[2:]


def test_bulk_falls_back_when_a_registration_overlaps() -> None:
    """An overlap during a bulk call gives the kernel's warning, as the calls one by one do."""
    outs = []
    for bulk in (False, True):
        k = Kernel(seed=2)
        c = k.kmem_cache_create("ov", 64)
        p = k.kmem_cache_alloc(c)
        k.kmem_cache_free(c, p)
        k.kmemleak.kmemleak_alloc(p + 128, 16, 1)   # a manual object inside the next slot
        objs = k.kmem_cache_alloc_bulk(c, 4) if bulk else [k.kmem_cache_alloc(c) for _ in range(4)]
        outs.append((objs, k.dmesg(), k.kmemleak.kmemleak_enabled))
    assert outs[0] == outs[1]
    assert "overlaps existing" in outs[1][1]
    assert outs[1][2] is False


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda k: k.kmalloc_bulk(64), KmemsimTypeError, "sizes"),
    (lambda k: k.kmalloc_bulk("abc"), KmemsimTypeError, "sizes"),
    (lambda k: k.kmalloc_bulk([32, -1]), KmemsimValueError, r"sizes\[1\]"),
    (lambda k: k.kmalloc_bulk([32, "x"]), KmemsimTypeError, r"sizes\[1\]"),
    (lambda k: k.kmem_cache_alloc_bulk("cache", 3), KmemsimTypeError, "cache"),
    (lambda k: k.kmem_cache_alloc_bulk(k.kmem_cache_create("c", 8), -2), KmemsimValueError, "n"),
    (lambda k: k.store_many([1], [1, 2]), KmemsimValueError, "differ in length"),
    (lambda k: k.store_many(5, [1]), KmemsimTypeError, "slots"),
    (lambda k: k.store_many([k.kmalloc(8)], [-1]), KmemsimValueError, r"targets\[0\]"),
])
def test_bulk_bad_input_is_refused_clearly(call: Any, error: type[Exception], match: str) -> None:
    k = Kernel(seed=0)
    with pytest.raises(error, match=match):
        call(k)
    assert k.kmalloc_bulk([32, 64])  # the kernel still works


def test_bulk_edge_cases() -> None:
    k = Kernel(seed=0)
    assert k.kmalloc_bulk([]) == []
    assert k.kmalloc_bulk([0]) == [16]          # ZERO_SIZE_PTR, as kmalloc(0)
    big = k.kmalloc_bulk([100_000])[0]          # above the caches: kmalloc_large
    assert k.kmemleak.find(big).size == 100_000
    k.store_many([], [])


@settings(max_examples=30)
@given(picks=st.lists(st.tuples(st.integers(0, 1 << 12), st.integers(0, (1 << 32) - 1)),
                      min_size=1, max_size=80),
       arch=st.sampled_from(["x86_64", "i386"]))
def test_write_words_equals_write_word_loop(picks: list[tuple[int, int]], arch: str) -> None:
    """Data words written in one batch end exactly the edges they overwrite, in order."""
    outs = []
    for bulk in (False, True):
        k = Kernel(arch=arch, seed=7)
        ws = k.arch.word_size
        objs = k.kmalloc_bulk([64] * 32)
        for i, p in enumerate(objs):                    # edges everywhere, some unaligned
            k.store(p + ws * (i % 4), objs[(i * 5) % 32])
        addrs = list(dict.fromkeys(objs[a % 32] + ws * (a // 32 % (64 // ws)) for a, _ in picks))
        values = [v for _, v in picks][:len(addrs)]
        if bulk:
            k.memory.write_words(addrs, values)
        else:
            for a, v in zip(addrs, values, strict=True):
                k.memory.write_word(a, v)
        outs.append(([bytes(r.data) for r in k.memory.regions()], list(k.truth.edges),
                     list(k.truth.history.items())))
    assert outs[0] == outs[1]


def test_write_words_refuses_bad_batches_and_writes_nothing() -> None:
    k = Kernel(seed=0)
    p = k.kmalloc(64)
    before = k.memory.read(p, 64)
    for addrs, values, match in (([p, p], [1, 2], "distinct"), ([p + 1], [1], "aligned"),
                                 ([p, 0x10], [1, 2], "mapped"), ([p], [-1], "unsigned"),
                                 ([p], [1, 2], "length"),
                                 ([p], np.array([-1]), "unsigned"),
                                 ([p], np.array([1.5]), "unsigned")):
        with pytest.raises(KmemsimValueError, match=match):
            k.memory.write_words(addrs, values)
        assert k.memory.read(p, 64) == before
    k.memory.write_words([p, p + 8], np.array([3, 1 << 63], dtype=np.uint64))  # no ints needed
    assert (k.memory.read_word(p), k.memory.read_word(p + 8)) == (3, 1 << 63)


def test_kmemleak_alloc_bulk_registers_as_one_by_one_and_checks_its_arguments() -> None:
    from kmemsim.errors import KmemsimError

    def registered(bulk: bool) -> list[tuple[int, int, int, int]]:
        k = Kernel(seed=3)
        base = k.arch.page_offset + 0x3000_0000     # plain addresses kmemleak never saw
        mask = k.arch.word_mask
        ptrs = [base, 0, base + 0x40, mask - 5, base + 0x100, base + 0x200]   # NULL, IS_ERR
        sizes = [0x40, 8, 0x20, 8, 0, 0x10]                                  # one zero-size
        kl = k.kmemleak
        if bulk:
            kl.kmemleak_alloc_bulk(ptrs, sizes, 1)
        else:
            for p, n in zip(ptrs, sizes, strict=True):
                kl.kmemleak_alloc(p, n, 1)
        kl._check()
        return [(o.serial, o.pointer, o.size, o.min_count) for o in kl.object_list.values()
                if o.pointer >= base]

    assert registered(True) == registered(False)
    assert [p for _, p, _, _ in registered(True)][-1] > 0
    k = Kernel(seed=3)
    kl = k.kmemleak
    before = len(kl)
    for bad_ptrs, bad_sizes, match in (([1.5], [8], r"ptrs\[0\] must be an int"),
                                       ([8], ["8"], r"sizes\[0\] must be an int"),
                                       ([8, 16], [8], "differ in length"),
                                       ([-8], [8], r"ptrs\[0\] must be at least 0")):
        with pytest.raises(KmemsimError, match=match):
            kl.kmemleak_alloc_bulk(bad_ptrs, bad_sizes, 1)  # type: ignore[arg-type]
    assert len(kl) == before                                # nothing half-registered
    assert k.kmalloc(32)                                    # and the kernel still works


@settings(max_examples=50, deadline=None)
@given(before=st.integers(0, 100), count=st.integers(0, 100),
       nbytes=st.sampled_from([248, 256, 1024]))
def test_metadata_alloc_many_charges_what_the_calls_charge(before: int, count: int,
                                                           nbytes: int) -> None:
    bulk, twin = Kernel(), Kernel()
    for k in (bulk, twin):
        for _ in range(before):
            k.metadata_alloc(nbytes)
    assert bulk.metadata_alloc_many(nbytes, count)
    assert all(twin.metadata_alloc(nbytes) for _ in range(count))
    assert bulk.page_allocator.charged_pages == twin.page_allocator.charged_pages
    assert bulk.page_allocator.free_pages == twin.page_allocator.free_pages
    assert bulk._meta_objects == twin._meta_objects
