"""SLUB: kmalloc size classes, named caches, freelists and poisoning.

Each cache carves slabs (2**order pages) into slots.  Free objects are
chained through a free pointer stored *in* the object (at ``s->offset``,
the middle of the object since 5.7), encoded with
``CONFIG_SLAB_FREELIST_HARDENED`` as ``ptr ^ s->random ^ swab(slot address)``.
Allocation takes the head of the freelist (LIFO), so a freshly allocated
object still holds whatever the last user left, plus the free pointer:
reuse is real, and so are the stale words it leaves behind.

With ``slub_debug=P`` the free pointer moves after the object and objects
are poisoned: ``0x6b`` everywhere and ``0xa5`` in the last byte, at slab
creation and at every free.

Every allocation is registered with kmemleak with the cache's
``object_size`` (not the requested size) and ``min_count`` 1.

>>> from kmemsim import Kernel
>>> k = Kernel(cmdline="slub_debug=P")
>>> p = k.kmalloc(20)
>>> k.kmemleak.find(p).size, k.memory.read(p + 30, 2).hex()
(32, '6ba5')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import KernelOops, KmemsimValueError, check_int
from ..layout import PAGE_SIZE, POISON_END, POISON_FREE
from .page_alloc import MAX_PAGE_ORDER, get_order

if TYPE_CHECKING:
    from ..kernel import Kernel

#: ``KMALLOC_MAX_CACHE_SIZE`` (SLUB, 4 KiB pages): larger kmallocs go to the page allocator.
KMALLOC_MAX_CACHE_SIZE = 8192
#: ``KMALLOC_MAX_SIZE``: the largest kmalloc at all.
KMALLOC_MAX_SIZE = PAGE_SIZE << MAX_PAGE_ORDER
#: kmalloc size classes, smallest first (96 and 192 included).
KMALLOC_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)
#: ``ZERO_SIZE_PTR``: what ``kmalloc(0)`` returns; never tracked, ``kfree`` ignores it.
ZERO_SIZE_PTR = 16
#: ``slub_max_order`` (``PAGE_ALLOC_COSTLY_ORDER``).
SLUB_MAX_ORDER = 3

SLAB_POISON = 0x00000800
SLAB_NOLEAKTRACE = 0x00800000
SLAB_HWCACHE_ALIGN = 0x00002000
SLAB_KMALLOC = 0x00001000


def kmalloc_size_class(size: int) -> int:
    """The kmalloc cache that serves *size* bytes (``kmalloc_index``).

    >>> kmalloc_size_class(129), kmalloc_size_class(248), kmalloc_size_class(8192)
    (192, 256, 8192)
    """
    for c in KMALLOC_SIZES:
        if size <= c:
            return c
    raise KmemsimValueError(f"{size} bytes is above KMALLOC_MAX_CACHE_SIZE")


def _swab(value: int, nbytes: int) -> int:
    return int.from_bytes(value.to_bytes(nbytes, "little"), "big")


@dataclass(slots=True)
class Slab:
    """One slab: ``2**order`` pages holding ``objects`` slots."""

    base: int
    pfn: int
    order: int
    freelist: list[int]
    """Free slots; the head (next to be allocated) is the last element."""


class KmemCache:
    """A ``struct kmem_cache``: geometry, slabs and the freelist discipline.

    Create caches with :meth:`Kernel.kmem_cache_create`; the kmalloc caches
    exist from boot.
    """

    def __init__(self, k: Kernel, name: str, object_size: int, align: int, flags: int,
                 pointer: int = 0, slab_index: dict[int, KmemCache] | None = None) -> None:
        ws = k.arch.word_size
        self.k = k
        # head pfn -> cache, shared by all caches: how kfree finds an object's cache
        self.slab_index: dict[int, KmemCache] = {} if slab_index is None else slab_index
        self.name = name
        self.object_size = object_size
        self.flags = flags
        self.pointer = pointer
        """Address of this cache's ``struct kmem_cache`` in simulated memory."""
        self.align = max(ws, align)
        inuse = (object_size + ws - 1) & ~(ws - 1)
        if flags & SLAB_POISON:
            self.offset = inuse  # the free pointer moves after the poisoned object
            inuse += ws
        else:
            self.offset = (object_size // 2) & ~(ws - 1)
        self.size = (inuse + self.align - 1) & ~(self.align - 1)
        self.order = self._calculate_order(k.ncpus)
        if self.order > MAX_PAGE_ORDER:
            # calculate_order() returns -ENOSYS: kmem_cache_create() fails.
            raise KmemsimValueError(
                f"kmem_cache_create({name}) failed with error -22: object size {object_size} "
                f"needs order {self.order} slabs, above MAX_PAGE_ORDER ({MAX_PAGE_ORDER})")
        self.objects_per_slab = (PAGE_SIZE << self.order) // self.size
        self.random = k.rng_word() if k.config.SLAB_FREELIST_HARDENED else 0
        self.slabs: dict[int, Slab] = {}
        self.partial: list[Slab] = []
        self.cpu_slab: Slab | None = None
        self.active_objects = 0
        self.allocated: set[int] = set()

    def _calculate_order(self, ncpus: int) -> int:
        min_objects = 4 * (ncpus.bit_length() + 1)
        if self.size > PAGE_SIZE << SLUB_MAX_ORDER:
            return get_order(self.size)
        for order in range(SLUB_MAX_ORDER + 1):
            if (PAGE_SIZE << order) // self.size >= min_objects:
                return order
        return SLUB_MAX_ORDER

    def __repr__(self) -> str:
        return (f"<kmem_cache {self.name} object_size={self.object_size} size={self.size} "
                f"order={self.order} active={self.active_objects}>")

    @property
    def total_objects(self) -> int:
        return len(self.slabs) * self.objects_per_slab

    # -- freelist words ------------------------------------------------------
    def freelist_ptr_encode(self, ptr: int, ptr_addr: int) -> int:
        """``freelist_ptr_encode``: plain, or hardened ``ptr ^ random ^ swab(ptr_addr)``."""
        if not self.random:
            return ptr
        ws = self.k.arch.word_size
        return ptr ^ self.random ^ _swab(ptr_addr, ws)

    def _set_freepointer(self, obj: int, next_free: int) -> None:
        slot = obj + self.offset
        self.k.memory.write_word(slot, self.freelist_ptr_encode(next_free, slot))

    def _poison(self, obj: int) -> None:
        n = self.object_size
        self.k.memory.write(obj, bytes([POISON_FREE]) * (n - 1) + bytes([POISON_END]))

    # -- slabs -----------------------------------------------------------------
    def _new_slab(self) -> Slab | None:
        pa = self.k.page_allocator
        pfn = pa.alloc(self.order)
        if not pfn:
            return None
        base = pa.pfn_to_virt(pfn)
        pa.mark_slab(pfn, self.order, self.pointer)
        slots = [base + i * self.size for i in range(self.objects_per_slab)]
        for i, obj in enumerate(slots):
            if self.flags & SLAB_POISON:
                self._poison(obj)
            self._set_freepointer(obj, slots[i + 1] if i + 1 < len(slots) else 0)
        slab = Slab(base, pfn, self.order, slots[::-1])
        self.slabs[base] = slab
        self.slab_index[pfn] = self
        return slab

    def slab_of(self, addr: int) -> Slab | None:
        span = PAGE_SIZE << self.order
        base = self.k.page_allocator.pfn_to_virt(self.k.page_allocator.virt_to_pfn(addr))
        base -= (base - self.k.arch.page_offset) % span
        return self.slabs.get(base)

    def alloc_object(self) -> int:
        """Take the head of the freelist (a new slab if needed); 0 when out of memory."""
        slab = self.cpu_slab
        if slab is None or not slab.freelist:
            slab = self.partial.pop(0) if self.partial else self._new_slab()
            if slab is None:
                return 0
            self.cpu_slab = slab
        obj = slab.freelist.pop()
        self.allocated.add(obj)
        self.active_objects += 1
        if self.flags & SLAB_POISON or self.k.page_allocator.init_on_free:
            # With the free pointer outside the object, clear it as SLUB does; with
            # init_on_free, maybe_wipe_obj_freeptr() clears the in-object free pointer
            # so that the object comes back all zero.
            self.k.memory.write_word(obj + self.offset, 0)
        return obj

    def free_object(self, obj: int) -> None:
        """Push *obj* back on its slab's freelist (poisoning it under ``slub_debug=P``)."""
        slab = self.slab_of(obj)
        assert slab is not None
        self.allocated.discard(obj)
        self.active_objects -= 1
        if self.flags & SLAB_POISON:
            self._poison(obj)
        self._set_freepointer(obj, slab.freelist[-1] if slab.freelist else 0)
        was_full = not slab.freelist
        slab.freelist.append(obj)
        if was_full and slab is not self.cpu_slab:
            self.partial.append(slab)
        if len(slab.freelist) == self.objects_per_slab and slab is not self.cpu_slab:
            # An empty slab goes back to the page allocator (min_partial 0 here).
            if slab in self.partial:
                self.partial.remove(slab)
            del self.slabs[slab.base]
            self.slab_index.pop(slab.pfn, None)
            self.k.page_allocator.free(slab.pfn, slab.order)


class SlabAllocator:
    """The kmalloc caches and the named caches of one kernel."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.caches: dict[str, KmemCache] = {}
        self.kmalloc_caches: dict[int, KmemCache] = {}
        self.by_slab_pfn: dict[int, KmemCache] = {}
        self.large: dict[int, tuple[int, int]] = {}  # addr -> (order, size)
        self.debug_poison = False

    def create(self, name: str, object_size: int, align: int = 0, flags: int = 0) -> KmemCache:
        if self.debug_poison:
            flags |= SLAB_POISON
        cache = KmemCache(self.k, name, object_size, align, flags,
                          slab_index=self.by_slab_pfn)
        self.caches[name] = cache
        return cache

    def cache_of(self, addr: int) -> KmemCache | None:
        """The cache whose slab contains *addr* (``virt_to_slab(addr)->slab_cache``)."""
        pa = self.k.page_allocator
        if not addr >= self.k.arch.page_offset:
            return None
        pfn = pa.virt_to_pfn(addr)
        # Caches of objects above 32 KiB use slabs of order get_order(size), above
        # SLUB_MAX_ORDER: look at every order a slab can have.
        for order in range(MAX_PAGE_ORDER + 1):
            head = pfn & ~((1 << order) - 1)
            cache = self.by_slab_pfn.get(head)
            if cache is not None and cache.order == order:
                return cache
        return None

    def slab_alloc(self, cache: KmemCache, size_for_init: int, *, zero: bool) -> int:
        """Allocate from *cache*: freelist, init, then the kmemleak hook."""
        obj = cache.alloc_object()
        if not obj:
            self.k.warn_alloc(f"kmem_cache {cache.name}", cache.order)
            return 0
        if zero or self.k.page_allocator.init_on_alloc:
            self.k.memory.fill(obj, size_for_init, 0)
        if not cache.flags & SLAB_NOLEAKTRACE:
            self.k.kmemleak.kmemleak_alloc(obj, cache.object_size, 1)
        self.k.truth.on_alloc(obj, cache.object_size, "slab", cache.name)
        return obj

    def slab_free(self, cache: KmemCache, obj: int, caller: str) -> None:
        # slab_free_hook (kmemleak_free_recursive) runs before SLUB checks the
        # pointer: an interior pointer gets kmemleak's alias warning first.
        if not cache.flags & SLAB_NOLEAKTRACE:
            self.k.kmemleak.kmemleak_free(obj)
        if obj not in cache.allocated:
            raise self._bug(cache, obj, caller)
        self.k.truth.on_free(obj)
        if self.k.page_allocator.init_on_free:
            self.k.memory.fill(obj, cache.object_size, 0)
        cache.free_object(obj)

    def _bug(self, cache: KmemCache, obj: int, caller: str) -> KernelOops:
        slab = cache.slab_of(obj)
        if slab is not None and obj in slab.freelist:
            what = "Object already free"
        else:
            what = "Invalid object pointer"
        lines = [
            "=" * 77,
            f"BUG {cache.name} (Not tainted): {what} 0x{obj:016x}"
            if self.k.arch.word_size == 8 else f"BUG {cache.name} (Not tainted): {what} 0x{obj:08x}",
            "-" * 77,
            f"Slab 0x{slab.base if slab else 0:x} objects={cache.objects_per_slab} "
            f"used={cache.active_objects}",
            f"CPU: 0 PID: {self.k.current.pid} Comm: {self.k.current.comm} Not tainted",
            f"Call Trace: {caller}",
        ]
        self.k.oops_lines(lines)
        return KernelOops(lines)

    # -- kmalloc ---------------------------------------------------------------
    def kmalloc(self, size: int, *, zero: bool = False) -> int:
        check_int("size", size, minimum=0)
        if size == 0:
            return ZERO_SIZE_PTR
        if size > KMALLOC_MAX_CACHE_SIZE:
            return self.kmalloc_large(size, zero=zero)
        cache = self.kmalloc_caches[kmalloc_size_class(size)]
        with self.k.kernel_frames("__kmalloc_cache_noprof"):
            return self.slab_alloc(cache, cache.object_size, zero=zero)

    def kmalloc_large(self, size: int, *, zero: bool) -> int:
        if size > KMALLOC_MAX_SIZE:
            self.k.warn(f"WARNING: CPU: 0 PID: {self.k.current.pid} at mm/page_alloc.c:4705 "
                        "__alloc_pages_noprof+0x2f5/0x380")
            return 0
        order = get_order(size)
        with self.k.kernel_frames("__kmalloc_large_noprof"):
            pfn = self.k.page_allocator.alloc(order, zero=zero)
            if not pfn:
                self.k.warn_alloc("kmalloc_large", order)
                return 0
            addr = self.k.page_allocator.pfn_to_virt(pfn)
            self.large[addr] = (order, size)
            self.k.kmemleak.kmemleak_alloc(addr, size, 1)
            self.k.truth.on_alloc(addr, size, "kmalloc_large")
        return addr

    def kfree(self, addr: int) -> None:
        # Named "ptr" as in Kernel.kfree, whose argument this is.
        check_int("ptr", addr, minimum=0, maximum=self.k.arch.word_mask)
        if addr <= ZERO_SIZE_PTR:
            return
        cache = self.cache_of(addr)
        if cache is not None:
            self.slab_free(cache, addr, "kfree")
            return
        if addr in self.large:
            order, _ = self.large.pop(addr)
            self.k.kmemleak.kmemleak_free(addr)
            self.k.truth.on_free(addr)
            self.k.page_allocator.free(self.k.page_allocator.virt_to_pfn(addr), order)
            return
        # Not a slab object and not a large kmalloc: kmemleak sees the free first.
        self.k.kmemleak.kmemleak_free(addr)
        lines = [f"kernel BUG at mm/slub.c:4589! (kfree of 0x{addr:x}: not a slab object)"]
        self.k.oops_lines(lines)
        raise KernelOops(lines)
