"""The fast and the reference scan engines give one answer (design rule 5).

Both engines run the same random sequence of kernel operations on two
kernels booted alike; after every scan the whole detector state must be
equal: colours, counts, checksums, flags, ``min_count``, the scan result
(everything but the engine's name and the word it chose to explain each
gray object), the kernel log and the debugfs listing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmemsim import Kernel
from kmemsim.truth import Interior, LowBitTag, OnePastTheEnd, Plain, TopByteTag, Unaligned, Xor
from kmemsim.workloads.gallery import GALLERY

KMEMLEAK = "/sys/kernel/debug/kmemleak"
ENCODINGS = [Plain(), Interior(offset=8), OnePastTheEnd(), Xor(key=0x5A), TopByteTag(tag=0x3C),
             LowBitTag(tag=1), Unaligned(shift=4)]


def state(k: Kernel) -> list[tuple[int, ...]]:
    return [(o.pointer, o.size, o.count, o.flags, o.checksum, o.min_count, o.excess_ref)
            for o in k.kmemleak.object_list.values()]


def result_fields(k: Kernel) -> dict[str, Any]:
    r = k.kmemleak.last_scan
    assert r is not None
    return {f: getattr(r, f) for f in ("jiffies", "new_leaks", "unreferenced", "checksum_spared",
                                        "too_young", "gray", "white", "black", "words_scanned",
                                        "root_ranges", "interrupted")}


Op = tuple[str, int, int, int]

ops_strategy = st.lists(
    st.tuples(
        st.sampled_from(["kmalloc", "kzalloc", "vmalloc", "percpu", "pages", "store", "data",
                         "free", "not_leak", "ignore", "no_scan", "scan_area", "transient",
                         "frame", "sleep", "scan", "clear", "stack", "cache_alloc",
                         "store_vm_struct"]),
        st.integers(0, 1 << 16), st.integers(0, 1 << 16), st.integers(0, 6)),
    min_size=1, max_size=40)


def replay(k: Kernel, ops: list[Op], on_scan: Callable[[Kernel], None]) -> None:
    """Apply *ops* deterministically; the arguments pick among live blocks."""
    ws = k.arch.word_size
    statics = k.define_static("engine_roots", 16 * ws)
    blocks: list[tuple[int, int, str]] = []  # (addr, size, kind)
    cache = k.kmem_cache_create("engine_cache", 72)
    worker = k.spawn("worker")
    for name, a, b, c in ops:
        pick = blocks[a % len(blocks)] if blocks else None
        other = blocks[b % len(blocks)] if blocks else None
        if name in ("kmalloc", "kzalloc"):
            size = (8, 24, 64, 100, 256, 1000, 5000, 9000)[a % 8]
            p = (k.kmalloc if name == "kmalloc" else k.kzalloc)(size)
            blocks.append((p, k.kmemleak.find(p).size, "slab"))
            if b % 3 == 0:
                k.store(statics + ws * (c % 16), p)
        elif name == "cache_alloc":
            blocks.append((k.kmem_cache_alloc(cache), 72, "cache"))
        elif name == "vmalloc":
            p = k.vmalloc(64 + a % 9000)
            blocks.append((p, k.kmemleak.find(p).size, "vmalloc"))
        elif name == "percpu":
            p = k.alloc_percpu(8 * (1 + a % 8))
            blocks.append((p, 8 * (1 + a % 8), "percpu"))
        elif name == "pages":
            blocks.append((k.alloc_pages(0), 4096, "pages"))
        elif name == "store" and pick and other:
            slot_base = pick[0] if pick[2] != "percpu" else k.per_cpu_ptr(pick[0], a % k.ncpus)
            slot = slot_base + ws * (b % max(1, pick[1] // ws - 1))
            k.store(slot, other[0], encoding=ENCODINGS[c % len(ENCODINGS)])
        elif name == "store_vm_struct" and pick and other and other[2] == "vmalloc":
            # a second pointer to a vm_struct: surplus references are forwarded
            # through excess_ref to the vmalloc block
            vm = k.vmalloc_allocator.areas[other[0]].vm_struct
            slot = statics + ws * (a % 16) if b % 2 or pick[2] == "percpu" else pick[0]
            k.store(slot, vm if c % 4 else vm + 8)
        elif name == "data" and pick:
            slot = statics + ws * (a % 16) if b % 2 else pick[0] if pick[2] != "percpu" else statics
            value = (other[0] + c * 8) if other and b % 3 else a * 7919
            k.memory.write_word(slot, value & k.arch.word_mask)
        elif name == "free" and pick:
            blocks.remove(pick)
            {"slab": k.kfree, "vmalloc": k.vfree, "percpu": k.free_percpu,
             "pages": lambda p: k.free_pages(p, 0),
             "cache": lambda p: k.kmem_cache_free(cache, p)}[pick[2]](pick[0])
        elif name == "not_leak" and pick:
            k.kmemleak.kmemleak_not_leak(pick[0])
        elif name == "ignore" and pick:
            k.kmemleak.kmemleak_ignore(pick[0])
        elif name == "no_scan" and pick:
            k.kmemleak.kmemleak_no_scan(pick[0])
        elif name == "scan_area" and pick and pick[2] != "percpu":
            off = ws * (b % max(1, pick[1] // ws))
            k.kmemleak.kmemleak_scan_area(pick[0] + off, ws * (1 + c) if c < 6 else -1)
        elif name == "transient" and pick:
            k.kmemleak.kmemleak_transient_leak(pick[0])
        elif name == "frame" and other:
            with k.task_context(worker), k.stack_frame(1 + c) as f:
                k.store(f.slot(a % (1 + c)), other[0])
        elif name == "sleep":
            k.sleep(1 + a % 7)
        elif name == "scan":
            k.write(KMEMLEAK, "scan")
            on_scan(k)
        elif name == "clear":
            k.write(KMEMLEAK, "clear")
        elif name == "stack":
            k.write(KMEMLEAK, "stack=off" if a % 2 else "stack=on")
    k.sleep(6)
    k.write(KMEMLEAK, "scan")
    on_scan(k)


def run_both(arch: str, ops: list[Op]) -> None:
    snaps: list[list[Any]] = []
    for engine in ("reference", "fast"):
        k = Kernel(arch=arch, cmdline="slub_debug=P" if len(ops) % 2 else "")
        k.kmemleak.default_engine = engine
        seen: list[Any] = []

        def snapshot(k: Kernel, seen: list[Any] = seen) -> None:
            seen.append((state(k), result_fields(k), k.read(KMEMLEAK)))

        replay(k, ops, snapshot)
        seen.append(k.dmesg())
        snaps.append(seen)
    assert snaps[0] == snaps[1]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=st.sampled_from(["x86_64", "arm64", "i386"]), ops=ops_strategy)
def test_fast_and_reference_engines_agree_on_random_heaps(arch: str, ops: list[Op]) -> None:
    run_both(arch, ops)


@pytest.mark.parametrize("name", sorted(GALLERY))
@pytest.mark.parametrize("arch", ["x86_64", "arm64", "i386"])
def test_fast_and_reference_engines_agree_on_every_gallery_scenario(name: str, arch: str) -> None:
    outs = []
    for engine in ("reference", "fast"):
        sc = GALLERY[name]
        k = sc.boot(arch=arch)
        k.kmemleak.default_engine = engine
        sc.build(k)
        outs.append((state(k), k.read(KMEMLEAK), k.dmesg()))
    assert outs[0] == outs[1]


def test_fast_and_reference_engines_agree_on_the_article() -> None:
    outs = []
    for engine in ("reference", "fast"):
        k = Kernel(cmdline="slub_debug=P")
        k.kmemleak.default_engine = engine
        k.modprobe("article_leak")
        for _ in range(2):
            k.sleep(6)
            k.write(KMEMLEAK, "scan")
        k.rmmod("article_leak")
        for _ in range(2):
            k.sleep(6)
            k.write(KMEMLEAK, "scan")
        assert k.kmemleak.last_scan is not None
        assert k.kmemleak.last_scan.engine == engine
        outs.append((state(k), result_fields(k), k.read(KMEMLEAK), k.dmesg()))
    assert outs[0] == outs[1]


def test_fast_engine_records_a_word_that_grayed_each_gray_object() -> None:
    k = Kernel()
    head = k.define_static("head", 8)
    a, b = k.kzalloc(64), k.kzalloc(64)
    k.store(head, a)
    k.store(a + 16, b)
    r = k.kmemleak.scan(engine="fast")
    assert r.engine == "fast"
    ga, gb = r.grayed_by[a], r.grayed_by[b]
    assert (ga.address, ga.value, ga.holder) == (head, a, k.kmemleak.find(head).pointer)
    assert (gb.address, gb.value, gb.holder) == (a + 16, b, a)


def test_unknown_engine_is_refused() -> None:
    from kmemsim import KmemsimValueError

    k = Kernel()
    with pytest.raises(KmemsimValueError, match="engine"):
        k.kmemleak.scan(engine="turbo")
    k.kmemleak.scan(engine="fast")
