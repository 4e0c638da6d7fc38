"""Tests of kmemsim.mm: what each allocator hands out and what it registers with kmemleak.

The registration table is spec section 4.2: the size kmemleak reports is the
cache's ``object_size`` for slab objects, the exact request above
``KMALLOC_MAX_CACHE_SIZE``, ``PAGE_ALIGN(size)`` for vmalloc; ``min_count``
is 1, 2 for vmalloc, 0 for memblock, module data and kernel sections; page
allocator memory is not tracked at all.  The bytes matter as much as the
sizes, because they are all the scan sees: poison, stale contents, freelist
words, zeroing.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmemsim import Kernel, KernelOops, KmemsimTypeError, KmemsimValueError
from kmemsim.kmemleak.object import (
    OBJECT_ALLOCATED,
    OBJECT_NO_SCAN,
    OBJECT_PERCPU,
    OBJECT_PHYS,
    KmemleakObject,
    ScanArea,
    crc32,
)
from kmemsim.layout import PAGE_SIZE, POISON_END, POISON_FREE, Arch
from kmemsim.mm.page_alloc import get_order
from kmemsim.mm.slab import KMALLOC_MAX_SIZE, KMALLOC_SIZES, ZERO_SIZE_PTR, KmemCache
from kmemsim.mm.vmalloc import vm_struct_layout, vmap_area_layout

ARCHES = ("x86_64", "arm64", "i386")
KMEMLEAK = "/sys/kernel/debug/kmemleak"


def assert_kernel_works(k: Kernel) -> None:
    """The same kernel still allocates, scans and frees, and its invariants hold."""
    before = len(k.kmemleak)
    p = k.kmalloc(64)
    assert p
    assert k.kmemleak.find(p).pointer == p
    k.write(KMEMLEAK, "scan")
    assert k.kmemleak.kmemleak_enabled
    k.kfree(p)
    assert len(k.kmemleak) == before
    check_allocators(k)


def check_allocators(k: Kernel) -> None:
    """``k._check()`` plus the slab bookkeeping the kernel keeps in ``struct slab``."""
    k._check()
    for cache in k.slab.caches.values():
        assert cache.active_objects == len(cache.allocated), cache
        free = sum(s.nfree for s in cache.slabs.values())
        assert free + cache.active_objects == cache.total_objects, cache
        for obj in cache.allocated:
            assert k.slab.cache_of(obj) is cache
    assert "overlaps existing" not in k.dmesg()


def obj_of(k: Kernel, ptr: int, tree: str = "virtual") -> KmemleakObject:
    """The object registered exactly at *ptr* (an exact lookup, as kmemleak_free does)."""
    obj = k.kmemleak.find(ptr, alias=False, tree=tree)
    assert obj is not None, f"{ptr:#x} is not tracked in the {tree} tree"
    return obj


def swab(value: int, nbytes: int) -> int:
    return int.from_bytes(value.to_bytes(nbytes, "little"), "big")


# ------------------------------------------------------------- size classes
def _class_requests() -> list[tuple[int, int]]:
    out, prev = [], 0
    for c in KMALLOC_SIZES:
        out += [(prev + 1, c), (c, c)]
        if c - prev > 2:
            out.append(((prev + c) // 2, c))
        prev = c
    return out


@pytest.mark.parametrize("arch", ARCHES)
def test_kmalloc_size_classes_register_the_object_size(arch: str) -> None:
    k = Kernel(arch=arch)
    assert tuple(sorted(k.slab.kmalloc_caches)) == KMALLOC_SIZES
    assert {96, 192} <= set(k.slab.kmalloc_caches)
    for request, cls in _class_requests():
        p = k.kmalloc(request)
        obj = obj_of(k, p)
        assert (obj.size, obj.min_count, obj.count) == (cls, 1, 0), (request, cls)
        assert obj.flags == OBJECT_ALLOCATED
        cache = k.slab.cache_of(p)
        assert cache is k.slab.kmalloc_caches[cls]
        assert cache.name == f"kmalloc-{cls}"
        assert p % (cls if cls & (cls - 1) == 0 else 8) == 0  # natural / minimum alignment
        k.kfree(p)
        assert k.kmemleak.find(p) is None
    check_allocators(k)


def test_the_spec_examples_129_and_248() -> None:
    k = Kernel()
    assert obj_of(k, k.kmalloc(129)).size == 192
    assert obj_of(k, k.kzalloc(248)).size == 256


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("size", [8193, 12288, 32760, 1 << 20])
def test_kmalloc_above_8192_registers_the_requested_size(arch: str, size: int) -> None:
    k = Kernel(arch=arch)
    p = k.kmalloc(size)
    obj = obj_of(k, p)
    assert (obj.size, obj.min_count) == (size, 1)
    assert p % PAGE_SIZE == 0
    assert k.slab.cache_of(p) is None  # page-allocator memory, not a slab
    pfn = k.page_allocator.virt_to_pfn(p)
    assert k.page_allocator.allocated[pfn] == get_order(size)
    assert k.memory.is_mapped(p, size)
    k.kfree(p)
    assert k.kmemleak.find(p) is None
    assert pfn not in k.page_allocator.allocated
    check_allocators(k)


def test_kmalloc_8192_is_still_a_slab_object() -> None:
    k = Kernel()
    p = k.kmalloc(8192)
    assert k.slab.cache_of(p) is k.slab.kmalloc_caches[8192]
    assert obj_of(k, p).size == 8192


def test_kmalloc_above_kmalloc_max_size_fails_with_a_warning() -> None:
    k = Kernel()
    before = len(k.kmemleak)
    assert k.kmalloc(KMALLOC_MAX_SIZE + 1) == 0
    assert "WARNING" in k.dmesg().splitlines()[-1]
    assert len(k.kmemleak) == before
    assert_kernel_works(k)


@pytest.mark.parametrize("arch", ARCHES)
def test_kmalloc_zero_is_zero_size_ptr_and_untracked(arch: str) -> None:
    k = Kernel(arch=arch)
    before, log = len(k.kmemleak), k.dmesg()
    assert k.kmalloc(0) == ZERO_SIZE_PTR == 16
    assert k.kzalloc(0) == ZERO_SIZE_PTR
    assert k.kmemleak.find(ZERO_SIZE_PTR) is None
    assert len(k.kmemleak) == before
    k.kfree(ZERO_SIZE_PTR)  # a no-op, as is kfree(NULL)
    k.kfree(0)
    assert len(k.kmemleak) == before
    assert k.dmesg() == log  # not even a warning
    assert_kernel_works(k)


# ------------------------------------------------------------------- zeroing
@pytest.mark.parametrize("arch", ARCHES)
def test_kzalloc_zeroes_a_dirty_reused_object(arch: str) -> None:
    k = Kernel(arch=arch)
    p = k.kmalloc(200)
    k.memory.fill(p, 256, 0xEE)
    k.kfree(p)
    q = k.kzalloc(200)
    assert q == p  # LIFO: the same slot comes back
    assert k.memory.read(q, 256) == bytes(256)  # the whole object, freelist word included


def test_kmem_cache_zalloc_zeroes_and_kmem_cache_alloc_does_not() -> None:
    k = Kernel()
    c = k.kmem_cache_create("dirty_cache", 48)
    p = k.kmem_cache_alloc(c)
    k.memory.fill(p, 48, 0x5A)
    k.kmem_cache_free(c, p)
    q = k.kmem_cache_alloc(c)
    assert q == p
    assert k.memory.read(q, 8) == b"\x5a" * 8  # stale bytes: not zeroed
    k.kmem_cache_free(c, q)
    r = k.kmem_cache_zalloc(c)
    assert r == p
    assert k.memory.read(r, 48) == bytes(48)


# ----------------------------------------------------------------- poisoning
@pytest.mark.parametrize("arch", ARCHES)
def test_slub_debug_p_poisons_new_objects(arch: str) -> None:
    k = Kernel(arch=arch, cmdline="slub_debug=P")
    for request, cls in ((20, 32), (32, 32), (100, 128), (129, 192), (4000, 4096)):
        p = k.kmalloc(request)
        expect = bytes([POISON_FREE]) * (cls - 1) + bytes([POISON_END])
        assert k.memory.read(p, cls) == expect, (request, cls)
    p32 = k.kmalloc(32)
    assert crc32(k.memory.read(p32, 32)) == 0x362C6625  # spec 9.1 test vector


@pytest.mark.parametrize("arch", ARCHES)
def test_slub_debug_p_repoisons_on_free_and_keeps_the_free_pointer_outside(arch: str) -> None:
    k = Kernel(arch=arch, cmdline="slub_debug=P")
    cache = k.slab.kmalloc_caches[64]
    assert cache.offset >= cache.object_size  # the free pointer lives after the object
    p = k.kmalloc(64)
    k.memory.write(p, bytes(range(64)))
    k.kfree(p)
    poisoned = b"\x6b" * 63 + b"\xa5"
    assert k.memory.read(p, 64) == poisoned  # no freelist word inside the object
    q = k.kmalloc(64)
    assert q == p
    assert k.memory.read(q, 64) == poisoned
    assert k.memory.read(k.kzalloc(64), 64) == bytes(64)  # kzalloc still zeroes


def test_slub_debug_on_config_poisons_too() -> None:
    k = Kernel(config={"CONFIG_SLUB_DEBUG_ON": True})
    assert k.memory.read(k.kmalloc(16), 16) == b"\x6b" * 15 + b"\xa5"


def test_named_caches_are_poisoned_with_their_object_size() -> None:
    k = Kernel(cmdline="slub_debug=P")
    c = k.kmem_cache_create("odd", 52)
    p = k.kmem_cache_alloc(c)
    assert k.memory.read(p, 52) == b"\x6b" * 51 + b"\xa5"


def test_slub_debug_f_does_not_poison() -> None:
    k = Kernel(cmdline="slub_debug=F")
    assert not k.slab.debug_poison


def test_without_slub_debug_objects_are_not_poisoned() -> None:
    k = Kernel()
    p = k.kmalloc(32)
    assert b"\x6b" not in k.memory.read(p, 32)


# --------------------------------------------------- stale bytes and freelists
@pytest.mark.parametrize("arch", ARCHES)
def test_freed_objects_keep_their_bytes_except_the_freelist_word(arch: str) -> None:
    k = Kernel(arch=arch)
    ws = k.arch.word_size
    cache = k.slab.kmalloc_caches[64]
    assert cache.offset == 32  # s->offset: the middle of the object
    p = k.kmalloc(64)
    pattern = bytes(range(0x40, 0x80))
    k.memory.write(p, pattern)
    k.kfree(p)
    after = k.memory.read(p, 64)
    off = cache.offset
    assert after[:off] == pattern[:off]
    assert after[off + ws:] == pattern[off + ws:]
    assert after[off:off + ws] != pattern[off:off + ws]  # the free pointer went there
    # LIFO: the next kmalloc of the class returns the same slot, stale contents and all.
    q = k.kmalloc(60)
    assert q == p
    assert k.memory.read(q, 64) == after


@pytest.mark.parametrize("arch", ARCHES)
def test_reuse_is_lifo(arch: str) -> None:
    k = Kernel(arch=arch)
    a, b, c = (k.kmalloc(128) for _ in range(3))
    k.kfree(a)
    k.kfree(c)
    k.kfree(b)
    assert [k.kmalloc(128) for _ in range(3)] == [b, c, a]


@pytest.mark.parametrize("arch", ARCHES)
def test_hardened_freelist_words_are_encoded(arch: str) -> None:
    k = Kernel(arch=arch)
    ws = k.arch.word_size
    cache = k.slab.kmalloc_caches[32]
    assert cache.random != 0
    a, b = k.kmalloc(32), k.kmalloc(32)
    k.kfree(b)
    k.kfree(a)  # a's free pointer now names b
    slot = a + cache.offset
    raw = k.memory.read_word(slot)
    assert raw != b  # not a plain pointer: kmemleak cannot follow it
    assert raw ^ cache.random ^ swab(slot, ws) == b  # freelist_ptr_decode
    assert cache.freelist_ptr_encode(b, slot) == raw


@pytest.mark.parametrize("arch", ARCHES)
def test_unhardened_freelist_words_are_plain_addresses(arch: str) -> None:
    k = Kernel(arch=arch, config={"CONFIG_SLAB_FREELIST_HARDENED": False})
    cache = k.slab.kmalloc_caches[32]
    assert cache.random == 0
    a, b = k.kmalloc(32), k.kmalloc(32)
    k.kfree(b)
    k.kfree(a)
    assert k.memory.read_word(a + cache.offset) == b


def test_the_last_free_object_of_a_new_slab_holds_an_encoded_null() -> None:
    k = Kernel(config={"CONFIG_SLAB_FREELIST_HARDENED": False})
    c = k.kmem_cache_create("tiny", 1024)
    first = k.kmem_cache_alloc(c)
    slab = c.slab_of(first)
    assert slab is not None
    last = slab.base + (c.objects_per_slab - 1) * c.size
    assert k.memory.read_word(last + c.offset) == 0  # end of the freelist: NULL


# --------------------------------------------------------------- kmem_cache
@pytest.mark.parametrize("arch", ARCHES)
def test_named_cache_objects_register_object_size(arch: str) -> None:
    k = Kernel(arch=arch)
    c = k.kmem_cache_create("my_objs", 100)
    assert isinstance(c, KmemCache)
    assert c.object_size == 100
    assert c.size >= 100
    p = k.kmem_cache_alloc(c)
    obj = obj_of(k, p)
    assert (obj.size, obj.min_count) == (100, 1)  # object_size, not the slot size
    z = k.kmem_cache_zalloc(c)
    assert obj_of(k, z).size == 100
    k.kmem_cache_free(c, p)
    assert k.kmemleak.find(p) is None
    k.kfree(z)  # kfree works on any slab object
    assert k.kmemleak.find(z) is None
    assert c.active_objects == 0
    check_allocators(k)


def test_kmem_cache_destroy_is_refused_while_objects_remain() -> None:
    k = Kernel()
    c = k.kmem_cache_create("busy_cache", 64)
    p = k.kmem_cache_alloc(c)
    before = len(k.kmemleak)
    k.kmem_cache_destroy(c)
    assert ("kmem_cache_destroy busy_cache: Slab cache still has objects when called from"
            in k.dmesg())
    assert k.slab.caches["busy_cache"] is c  # still there, still usable
    q = k.kmem_cache_alloc(c)
    assert len(k.kmemleak) == before + 1
    k.kmem_cache_free(c, p)
    k.kmem_cache_free(c, q)
    struct = c.pointer
    k.kmem_cache_destroy(c)
    assert "busy_cache" not in k.slab.caches
    assert k.kmemleak.find(struct) is None  # the struct kmem_cache is freed too
    with pytest.raises(KmemsimTypeError, match="cache"):
        k.kmem_cache_alloc(c)
    # The name can be used again.
    c2 = k.kmem_cache_create("busy_cache", 32)
    assert obj_of(k, k.kmem_cache_alloc(c2)).size == 32
    check_allocators(k)


def test_kmem_cache_free_into_the_wrong_cache_warns_and_frees_nothing() -> None:
    k = Kernel()
    a = k.kmem_cache_create("cache_a", 64)
    b = k.kmem_cache_create("cache_b", 64)
    p = k.kmem_cache_alloc(a)
    k.kmem_cache_free(b, p)
    assert "kmem_cache_free: Wrong slab cache. cache_b but object is from cache_a" in k.dmesg()
    assert obj_of(k, p).size == 64
    assert p in a.allocated


@pytest.mark.parametrize("size", [40000, 100_000])
def test_caches_of_large_objects_use_high_order_slabs(size: int) -> None:
    k = Kernel()
    c = k.kmem_cache_create("large_objs", size)
    assert c.order == get_order(size) > 3
    p = k.kmem_cache_alloc(c)
    assert k.slab.cache_of(p) is c
    assert k.slab.cache_of(p + size - 1) is c
    assert obj_of(k, p).size == size
    k.kmem_cache_free(c, p)
    assert k.kmemleak.find(p) is None
    q = k.kmem_cache_alloc(c)
    k.kfree(q)
    assert c.active_objects == 0
    k.kmem_cache_destroy(c)
    check_allocators(k)


def test_a_cache_too_large_for_any_slab_is_refused() -> None:
    k = Kernel()
    with pytest.raises(KmemsimValueError, match=r"kmem_cache_create\(huge\) failed"):
        k.kmem_cache_create("huge", 8 << 20)
    assert "huge" not in k.slab.caches
    assert_kernel_works(k)


# ------------------------------------------------------------------- vmalloc
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize(("request_size", "registered"),
                         [(1, 4096), (64, 4096), (4096, 4096), (5000, 8192), (3 * 4096 + 1, 16384)])
def test_vmalloc_registers_the_page_aligned_size_with_min_count_2(
    arch: str, request_size: int, registered: int
) -> None:
    k = Kernel(arch=arch)
    a: Arch = k.arch
    for alloc in (k.vmalloc, k.vzalloc):
        p = alloc(request_size)
        assert p % PAGE_SIZE == 0
        assert a.vmalloc_start <= p < a.vmalloc_end
        obj = obj_of(k, p)
        assert (obj.size, obj.min_count) == (registered, 2)
        assert k.vmalloc_allocator.areas[p].size == registered
        assert k.memory.is_mapped(p, registered)
        assert not k.memory.is_mapped(p + registered)  # the guard page
    check_allocators(k)


@pytest.mark.parametrize("arch", ARCHES)
def test_vmalloc_descriptors(arch: str) -> None:
    k = Kernel(arch=arch)
    ws = k.arch.word_size
    p = k.vmalloc(2 * PAGE_SIZE)
    area = k.vmalloc_allocator.areas[p]
    # vm_struct: a kmalloc object whose addr field is the block, with excess_ref set.
    vl = vm_struct_layout(ws)
    vm = obj_of(k, area.vm_struct)
    assert vm.excess_ref == p
    assert vm.size == k.slab.kmalloc_caches[64 if ws == 8 else 32].object_size
    assert k.memory.read_word(area.vm_struct + vl["addr"]) == p
    assert k.memory.read_word(area.vm_struct + vl["size"]) == 3 * PAGE_SIZE  # guard included
    assert k.memory.read_word(area.vm_struct + vl["pages"]) == area.pages_array
    # vmap_area: scanned only from rb_node onwards, so va_start is never a reference.
    lay = vmap_area_layout(ws)
    va = obj_of(k, area.vmap_area)
    assert va.min_count == 1
    assert va.areas == (ScanArea(area.vmap_area + lay["rb_node"],
                                 va.size - lay["rb_node"]),)
    assert k.memory.read_word(area.vmap_area + lay["va_start"]) == p
    assert k.memory.read_word(area.vmap_area + lay["va_end"]) == p + 3 * PAGE_SIZE
    assert k.memory.read_word(area.vmap_area + lay["vm"]) == area.vm_struct
    # the pages array holds struct page pointers of the backing pages
    for i, pfn in enumerate(area.pfns):
        assert (k.memory.read_word(area.pages_array + i * ws)
                == k.page_allocator.struct_page(pfn))


@pytest.mark.parametrize("arch", ARCHES)
def test_vfree_releases_everything(arch: str) -> None:
    k = Kernel(arch=arch)
    before = len(k.kmemleak)
    free_before = k.page_allocator.free_pages
    p = k.vmalloc(10000)
    area = k.vmalloc_allocator.areas[p]
    assert len(k.kmemleak) == before + 4  # block, vmap_area, vm_struct, pages array
    k.vfree(p)
    for addr in (p, area.vm_struct, area.vmap_area, area.pages_array):
        assert k.kmemleak.find(addr) is None
    assert len(k.kmemleak) == before
    assert p not in k.vmalloc_allocator.areas
    assert not k.memory.is_mapped(p)
    assert all(pfn not in k.page_allocator.allocated for pfn in area.pfns)
    # only slab pages kept by the caches remain in use
    assert free_before - k.page_allocator.free_pages <= 4
    assert k.vmalloc(10000) == p  # the range is reused
    check_allocators(k)


@pytest.mark.parametrize("arch", ARCHES)
def test_vfree_of_an_unknown_address_warns(arch: str) -> None:
    k = Kernel(arch=arch)
    p = k.vmalloc(100)
    k.vfree(p)
    log = k.dmesg()
    k.vfree(0)  # vfree(NULL): nothing
    assert k.dmesg() == log
    k.vfree(p)
    digits = 2 * k.arch.word_size  # %p: hashed, zero-padded, no 0x
    assert f"Trying to vfree() nonexistent vm area ({k.hash_pointer(p):0{digits}x})" in k.dmesg()
    k.vfree(0x1234)
    assert f"Trying to vfree() nonexistent vm area ({k.hash_pointer(0x1234):0{digits}x})" \
        in k.dmesg()
    assert_kernel_works(k)


def test_vmalloc_zero_and_vmalloc_larger_than_ram_return_null() -> None:
    k = Kernel()
    before = len(k.kmemleak)
    assert k.vmalloc(0) == 0
    assert k.vmalloc(4 << 30) == 0  # more than the 1 GiB machine has
    assert "bash: vmalloc error: size 4294967296, exceeds total pages" in k.dmesg()
    assert len(k.kmemleak) == before
    assert_kernel_works(k)


def _stale_page(k: Kernel, byte: int) -> int:
    """Dirty one page and give it back: the next order-0 allocation gets it."""
    # Warm the caches vmalloc needs so that it takes no slab page of its own.
    k.vfree(k.vmalloc(100))
    q = k.alloc_pages(0)
    k.memory.fill(q, PAGE_SIZE, byte)
    k.free_pages(q, 0)
    return k.page_allocator.virt_to_pfn(q)


@pytest.mark.parametrize("arch", ARCHES)
def test_stale_page_bytes_show_through_vmalloc_but_not_vzalloc(arch: str) -> None:
    k = Kernel(arch=arch)
    pfn = _stale_page(k, 0x41)
    v = k.vmalloc(100)
    assert k.vmalloc_allocator.areas[v].pfns == [pfn]
    assert k.memory.read(v, PAGE_SIZE) == b"A" * PAGE_SIZE
    k.vfree(v)
    pfn = _stale_page(k, 0x42)
    z = k.vzalloc(100)
    assert k.vmalloc_allocator.areas[z].pfns == [pfn]
    assert k.memory.read(z, PAGE_SIZE) == bytes(PAGE_SIZE)


@pytest.mark.parametrize("arch", ARCHES)
def test_what_was_written_through_vmalloc_stays_in_the_freed_pages(arch: str) -> None:
    k = Kernel(arch=arch)
    k.vfree(k.vmalloc(100))
    v = k.vmalloc(PAGE_SIZE)
    target = k.kmalloc(32)
    k.store(v + 64, target)  # a pointer, then the block is freed without clearing it
    pfn = k.vmalloc_allocator.areas[v].pfns[0]
    k.vfree(v)
    page = k.page_allocator.pfn_to_virt(pfn)
    assert k.memory.read_word(page + 64) == target
    v2 = k.vmalloc(PAGE_SIZE)
    assert k.vmalloc_allocator.areas[v2].pfns == [pfn]
    assert k.memory.read_word(v2 + 64) == target  # a stale pointer, visible to a scan


# --------------------------------------------------------------- page allocator
@pytest.mark.parametrize("arch", ARCHES)
def test_alloc_pages_is_untracked(arch: str) -> None:
    k = Kernel(arch=arch)
    before = len(k.kmemleak)
    for order in (0, 1, 3):
        addr = k.alloc_pages(order)
        assert addr % (PAGE_SIZE << order) == 0
        assert k.memory.is_mapped(addr, PAGE_SIZE << order)
        assert k.kmemleak.find(addr) is None
        assert k.kmemleak.find(addr + (PAGE_SIZE << order) - 1) is None
        assert len(k.kmemleak) == before
        k.free_pages(addr, order)
    assert len(k.kmemleak) == before
    check_allocators(k)


@pytest.mark.parametrize("arch", ARCHES)
def test_struct_pages_are_scan_roots_and_page_contents_are_not(arch: str) -> None:
    k = Kernel(arch=arch)
    addr = k.alloc_pages(0)
    pfn = k.page_allocator.virt_to_pfn(addr)
    struct_page = k.page_allocator.struct_page(pfn)
    block = k.kmalloc(64)
    k.store(addr, block)  # a pointer kept only in an untracked page
    k.sleep(10)
    k.write(KMEMLEAK, "scan")
    ranges = k.kmemleak.root_ranges()
    assert any(s <= struct_page < e for s, e in ranges)
    last = k.kmemleak.last_scan
    assert last is not None
    assert block not in last.grayed_by  # the page's words were never read
    k.write(KMEMLEAK, "scan")  # the first scan only recorded the checksum
    assert f"unreferenced object 0x{block:08x} (size 64):" in k.read(KMEMLEAK)
    k.free_pages(addr, 0)
    k.write(KMEMLEAK, "scan")
    assert not any(s <= struct_page < e for s, e in k.kmemleak.root_ranges())


def test_free_pages_checks_the_block() -> None:
    k = Kernel()
    addr = k.alloc_pages(1)
    with pytest.raises(KmemsimValueError, match="order 0"):
        k.free_pages(addr, 0)
    with pytest.raises(KmemsimValueError):
        k.free_pages(addr + PAGE_SIZE, 0)
    with pytest.raises(KmemsimValueError):
        k.free_pages(k.kmalloc(4096), 0)  # a slab page is not the caller's to free
    k.free_pages(addr, 1)
    with pytest.raises(KmemsimValueError):
        k.free_pages(addr, 1)  # double free
    assert_kernel_works(k)


def test_freed_pages_keep_their_bytes() -> None:
    k = Kernel()
    addr = k.alloc_pages(0)
    k.memory.fill(addr, PAGE_SIZE, 0x33)
    k.free_pages(addr, 0)
    assert k.memory.read(addr, 8) == b"\x33" * 8
    assert k.alloc_pages(0) == addr
    assert k.memory.read(addr, 8) == b"\x33" * 8


# -------------------------------------------------------------------- percpu
@pytest.mark.parametrize("arch", ARCHES)
def test_alloc_percpu_registers_one_percpu_object(arch: str) -> None:
    k = Kernel(arch=arch, ncpus=4)
    before = len(k.kmemleak)
    c = k.alloc_percpu(24)
    assert c
    obj = obj_of(k, c, tree="percpu")
    assert (obj.size, obj.min_count) == (24, 1)
    assert obj.flags & OBJECT_PERCPU
    assert k.kmemleak.find(c) is None  # not in the virtual tree
    assert len(k.kmemleak) == before + 1  # one object, not one per CPU
    # The per-CPU window is kept in untagged form (on arm64 untag sets the top byte).
    assert k.kmemleak.min_percpu_addr <= k.arch.untag(c)
    assert k.kmemleak.max_percpu_addr >= k.arch.untag(c) + 24
    k.free_percpu(c)
    assert k.kmemleak.find(c, tree="percpu") is None
    assert len(k.kmemleak) == before
    k.free_percpu(0)  # free_percpu(NULL)
    assert len(k.kmemleak) == before
    check_allocators(k)


@pytest.mark.parametrize("arch", ARCHES)
def test_percpu_memory_is_zeroed_on_every_cpu(arch: str) -> None:
    k = Kernel(arch=arch, ncpus=4)
    c = k.alloc_percpu(64)
    for cpu in range(4):
        k.memory.fill(k.per_cpu_ptr(c, cpu), 64, 0x10 + cpu)
    k.free_percpu(c)
    c2 = k.alloc_percpu(64)
    assert c2 == c  # first fit: the same dynamic area
    for cpu in range(4):
        assert k.memory.read(k.per_cpu_ptr(c2, cpu), 64) == bytes(64)
    assert obj_of(k, c2, tree="percpu").checksum == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_per_cpu_ptr_arithmetic(arch: str) -> None:
    k = Kernel(arch=arch, ncpus=3)
    c = k.alloc_percpu(16)
    unit = k.percpu.unit_size
    ptrs = [k.per_cpu_ptr(c, cpu) for cpu in range(3)]
    assert [p - ptrs[0] for p in ptrs] == [0, unit, 2 * unit]
    assert all(ptrs[cpu] == c + k.per_cpu_offset(cpu) for cpu in range(3))
    k.memory.write_word(ptrs[1], 0xBEEF)
    assert k.memory.read_word(ptrs[0]) == 0
    assert k.memory.read_word(ptrs[2]) == 0
    # Each CPU's copy is in the per-CPU units, which kmemleak paints black (phys tree).
    unit_obj = k.kmemleak.find(k.virt_to_phys(ptrs[0]), tree="phys")
    assert unit_obj is not None
    assert unit_obj.min_count == -1
    with pytest.raises(KmemsimValueError, match="cpu 3"):
        k.per_cpu_ptr(c, 3)


def test_free_percpu_of_an_unknown_cookie_warns() -> None:
    k = Kernel()
    k.free_percpu(0x1234)
    assert "free_percpu of unknown pointer 0x1234" in k.dmesg()
    assert_kernel_works(k)


# ------------------------------------------------------------------- memblock
@pytest.mark.parametrize("arch", ARCHES)
def test_memblock_alloc_is_a_phys_object_with_min_count_0(arch: str) -> None:
    k = Kernel(arch=arch)
    before = len(k.kmemleak)
    v = k.memblock_alloc(256, 64)
    assert v % 64 == 0
    assert k.memory.read(v, 256) == bytes(256)
    phys = k.virt_to_phys(v)
    obj = obj_of(k, phys, tree="phys")
    assert (obj.size, obj.min_count) == (256, 0)
    assert obj.flags & OBJECT_PHYS
    assert obj.color == "gray"
    assert k.kmemleak.find(v) is None  # the phys tree only
    assert len(k.kmemleak) == before + 1
    # memblock_free is kmemleak_free_part_phys: freeing the middle splits the object.
    k.memblock_free(v + 64, 64)
    left, right = obj_of(k, phys, tree="phys"), obj_of(k, phys + 128, tree="phys")
    assert (left.size, right.size, right.min_count) == (64, 128, 0)
    assert k.kmemleak.find(phys + 64, tree="phys") is None
    k.memblock_free(v, 64)
    k.memblock_free(v + 128, 128)
    assert len(k.kmemleak) == before
    check_allocators(k)


def test_memblock_alloc_without_leaktrace_is_not_registered() -> None:
    k = Kernel()
    before = len(k.kmemleak)
    v = k.memblock_alloc(512, leaktrace=False)
    assert v
    assert k.kmemleak.find(k.virt_to_phys(v), tree="phys") is None
    assert len(k.kmemleak) == before


def test_memblock_exhaustion_returns_null() -> None:
    k = Kernel()
    assert k.memblock_alloc(1 << 30) == 0
    assert_kernel_works(k)


# -------------------------------------------------------------------- modules
@pytest.mark.parametrize("arch", ARCHES)
def test_module_memory_is_a_gray_root_and_text_is_not_scanned(arch: str) -> None:
    k = Kernel(arch=arch)
    k.modprobe("article_leak")
    lm = k.modules["article_leak"]
    a = k.arch
    data, text = obj_of(k, lm.data), obj_of(k, lm.text)
    for obj in (data, text):
        assert a.modules_vaddr <= obj.pointer < a.modules_end
        assert obj.size % PAGE_SIZE == 0
        assert obj.min_count == 0  # kmemleak_not_leak
        assert obj.color == "gray"
        assert obj.comm == "modprobe"
    assert not data.flags & OBJECT_NO_SCAN
    assert text.flags & OBJECT_NO_SCAN
    head = lm.instance.static("memleak_list")
    assert lm.data <= head < lm.data + data.size
    assert not k.memory.is_mapped(lm.data + data.size)  # the guard page
    k.rmmod("article_leak")
    assert k.kmemleak.find(lm.data) is None
    assert k.kmemleak.find(lm.text) is None
    check_allocators(k)


@pytest.mark.parametrize(("arch", "node_size"), [("x86_64", 256), ("arm64", 256), ("i386", 192)])
def test_article_module_registers_what_spec_9_1_lists(arch: str, node_size: int) -> None:
    k = Kernel(arch=arch)
    before = {o.serial for o in k.kmemleak}
    k.modprobe("article_leak")
    lm = k.modules["article_leak"]
    internals = set()  # vmalloc's own descriptors
    for area in k.vmalloc_allocator.areas.values():
        internals |= {area.vm_struct, area.vmap_area, area.pages_array}
    new = [o for o in k.kmemleak if o.serial not in before and o.pointer not in internals]
    # 8 kmalloc blocks and 10 kzalloc'd nodes (248 bytes, 136 on i386: kmalloc-256/192)
    assert sorted(o.size for o in new if o.min_count == 1) == sorted(
        [32, 32, 1024, 1024, 2048, 2048, 4096, 4096] + [node_size] * 10)
    assert [o.size for o in new if o.min_count == 2] == [4096] * 5  # vmalloc(64) x 5
    assert sorted(o.pointer for o in new if o.min_count == 0) == sorted([lm.text, lm.data])
    assert all(o.comm == "modprobe" for o in new)


# -------------------------------------------------------------- kernel image
@pytest.mark.parametrize("arch", ARCHES)
def test_kernel_data_and_bss_are_gray_boot_objects(arch: str) -> None:
    k = Kernel(arch=arch)
    a = k.arch
    data = obj_of(k, a.kernel_data)
    bss = obj_of(k, a.kernel_data + data.size)
    for obj in (data, bss):
        assert obj.size == 32 * 1024
        assert (obj.min_count, obj.color) == (0, "gray")
        assert (obj.pid, obj.comm) == (0, "swapper/0")
        assert obj.jiffies == k.INITIAL_JIFFIES & a.word_mask  # created at boot
        assert not obj.flags & OBJECT_NO_SCAN
    assert k.kmemleak.find(k.statics["vmap_area_list"]) is bss  # a .bss static
    assert k.kmemleak.find(k.statics["slab_caches"]) is data  # a .data static
    k.define_static("my_static", 16)
    assert k.kmemleak.find(k.statics["my_static"]) is bss


# ----------------------------------------------------------- init_on_alloc/free
@pytest.mark.parametrize("arch", ARCHES)
def test_init_on_alloc_zeroes_everything_handed_out(arch: str) -> None:
    k = Kernel(arch=arch, cmdline="init_on_alloc=1")
    p = k.kmalloc(64)
    k.memory.fill(p, 64, 0x77)
    k.kfree(p)
    q = k.kmalloc(64)
    assert q == p
    assert k.memory.read(q, 64) == bytes(64)
    c = k.kmem_cache_create("zeroed", 40)
    r = k.kmem_cache_alloc(c)
    assert k.memory.read(r, 40) == bytes(40)
    large = k.kmalloc(9000)
    assert k.memory.read(large, 9000) == bytes(9000)
    pfn = _stale_page(k, 0x41)
    v = k.vmalloc(100)
    assert k.vmalloc_allocator.areas[v].pfns == [pfn]
    assert k.memory.read(v, PAGE_SIZE) == bytes(PAGE_SIZE)
    page = k.alloc_pages(0)
    assert k.memory.read(page, PAGE_SIZE) == bytes(PAGE_SIZE)


def test_init_on_alloc_beats_slub_poison() -> None:
    k = Kernel(cmdline="slub_debug=P init_on_alloc=1")
    assert k.memory.read(k.kmalloc(32), 32) == bytes(32)


@pytest.mark.parametrize("arch", ARCHES)
def test_init_on_free_zeroes_what_is_freed(arch: str) -> None:
    k = Kernel(arch=arch, cmdline="init_on_free=1")
    ws = k.arch.word_size
    cache = k.slab.kmalloc_caches[64]
    p = k.kmalloc(64)
    k.memory.fill(p, 64, 0x77)
    k.kfree(p)
    after = k.memory.read(p, 64)
    # All zero but the free pointer SLUB stores after zeroing.
    assert after[:cache.offset] == bytes(cache.offset)
    assert after[cache.offset + ws:] == bytes(64 - cache.offset - ws)
    # maybe_wipe_obj_freeptr(): the object comes back entirely zero.
    q = k.kmalloc(64)
    assert q == p
    assert k.memory.read(q, 64) == bytes(64)
    page = k.alloc_pages(0)
    k.memory.fill(page, PAGE_SIZE, 0x55)
    k.free_pages(page, 0)
    assert k.memory.read(page, PAGE_SIZE) == bytes(PAGE_SIZE)
    v = k.vmalloc(100)
    k.memory.fill(v, 100, 0x66)
    pfn = k.vmalloc_allocator.areas[v].pfns[0]
    k.vfree(v)
    assert k.memory.read(k.page_allocator.pfn_to_virt(pfn), 100) == bytes(100)


# --------------------------------------------------------------- double free
@pytest.mark.parametrize("arch", ARCHES)
def test_double_kfree_oopses_and_the_kernel_keeps_working(arch: str) -> None:
    k = Kernel(arch=arch)
    keep = k.kmalloc(64)  # keeps the slab in use
    p = k.kmalloc(64)
    k.kfree(p)
    before = len(k.kmemleak)
    with pytest.raises(KernelOops) as exc:
        k.kfree(p)
    digits = 2 * k.arch.word_size
    expect = f"BUG kmalloc-64 (Not tainted): Object already free 0x{p:0{digits}x}"
    assert expect in exc.value.lines
    assert expect in k.dmesg()
    assert len(k.kmemleak) == before
    # The freelist holds p once: it comes back once.
    assert k.kmalloc(64) == p
    assert k.kmalloc(64) != p
    assert obj_of(k, keep).size == 64
    assert_kernel_works(k)


def test_double_kmem_cache_free_oopses() -> None:
    k = Kernel()
    c = k.kmem_cache_create("twice", 96)
    p = k.kmem_cache_alloc(c)
    k.kmem_cache_free(c, p)
    with pytest.raises(KernelOops) as exc:
        k.kmem_cache_free(c, p)
    # SLUB's report starts with a rule of '=': the reason is on the second line.
    assert "Object already free" in exc.value.lines[1]
    assert "BUG twice (Not tainted): Object already free" in k.dmesg()
    assert_kernel_works(k)


def test_kfree_of_an_interior_pointer_oopses_and_frees_nothing() -> None:
    k = Kernel()
    p = k.kmalloc(64)
    with pytest.raises(KernelOops) as exc:
        k.kfree(p + 8)
    assert "BUG kmalloc-64 (Not tainted): Invalid object pointer" in exc.value.lines[1]
    assert obj_of(k, p).size == 64
    k.kfree(p)
    assert_kernel_works(k)


def test_kfree_of_memory_that_is_not_a_slab_object_oopses() -> None:
    k = Kernel()
    v = k.vmalloc(100)
    with pytest.raises(KernelOops, match="not a slab object"):
        k.kfree(v)
    assert_kernel_works(k)


# ------------------------------------------------------------------- invariants
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("kmalloc"), st.integers(0, 8192)),
        st.tuples(st.just("kzalloc"), st.integers(0, 300)),
        st.tuples(st.just("kmalloc"), st.integers(8193, 40000)),
        st.tuples(st.just("vmalloc"), st.integers(0, 3 * PAGE_SIZE)),
        st.tuples(st.just("alloc_percpu"), st.integers(1, 512)),
        st.tuples(st.just("free"), st.integers(0, 1 << 16)),
        st.tuples(st.just("free"), st.integers(0, 1 << 16)),
    ),
    max_size=60,
)


def _expected_size(kind: str, size: int) -> int:
    if kind == "vmalloc":
        return -(-size // PAGE_SIZE) * PAGE_SIZE
    if kind in ("kmalloc", "kzalloc") and size <= 8192:
        return next(c for c in KMALLOC_SIZES if size <= c)
    return size


def _run_sequence(arch: str, ops: list[tuple[str, int]]) -> None:
    k = Kernel(arch=arch)
    boot = len(k.kmemleak)
    live: list[tuple[str, int, int, int]] = []  # (kind, ptr, tracked objects, size)
    for kind, n in ops:
        if kind == "free":
            if not live:
                continue
            what, ptr, _, _ = live.pop(n % len(live))
            {"kmalloc": k.kfree, "kzalloc": k.kfree, "vmalloc": k.vfree,
             "alloc_percpu": k.free_percpu}[what](ptr)
        else:
            ptr = getattr(k, kind)(n)
            if kind in ("kmalloc", "kzalloc") and n == 0:
                assert ptr == ZERO_SIZE_PTR
                continue
            if kind == "vmalloc" and n == 0:
                assert ptr == 0
                continue
            assert ptr
            # vmalloc: the block plus its vmap_area, vm_struct and pages array.
            live.append((kind, ptr, 4 if kind == "vmalloc" else 1, n))
        k._check()
        assert len(k.kmemleak) == boot + sum(t for _, _, t, _ in live)
    for kind, ptr, _, size in live:
        obj = obj_of(k, ptr, tree="percpu" if kind == "alloc_percpu" else "virtual")
        assert obj.size == _expected_size(kind, size)
    assert k.kmemleak.kmemleak_enabled
    check_allocators(k)
    k.write(KMEMLEAK, "scan")
    k._check()


@pytest.mark.parametrize("arch", ARCHES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS)
def test_random_alloc_free_sequences_keep_the_invariants(arch: str,
                                                         ops: list[tuple[str, int]]) -> None:
    _run_sequence(arch, ops)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.integers(0, 1000)),
                min_size=1, max_size=60))
def test_struct_page_roots_are_the_struct_pages_of_pages_in_use(
        script: list[tuple[bool, int, int]]) -> None:
    """kmemleak scans the ``struct page`` of every page in use: merged runs, nothing more."""
    k = Kernel(seed=5)
    live: list[tuple[int, int]] = []
    for alloc, order, pick in script:
        if alloc or not live:
            p = k.alloc_pages(order)
            if p:
                live.append((p, order))
        else:
            p, o = live.pop(pick % len(live))
            k.free_pages(p, o)
    pa = k.page_allocator
    sp = k.arch.struct_page_size
    pages = sorted(pfn + i for pfn, o in pa.allocated.items() for i in range(1 << o))
    want: list[tuple[int, int]] = []
    for pfn in pages:
        s = pa.struct_page(pfn)
        if want and want[-1][1] == s:
            want[-1] = (want[-1][0], s + sp)
        else:
            want.append((s, s + sp))
    assert pa.in_use_ranges() == want
