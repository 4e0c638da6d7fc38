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

The other ``slub_debug`` letters work as in ``mm/slub.c`` (``slub_debug``
with no letters, or ``CONFIG_SLUB_DEBUG_ON``, means ``FZPU``; a block like
``slub_debug=FZ,kmalloc-32`` applies to the named caches only):

* ``Z`` puts red zones around each object (``0xcc`` while allocated, ``0xbb``
  while free): the slot grows (``red_left_pad`` before the object, at least a
  word after it), but kmemleak still registers ``object_size`` bytes.
* ``U`` stores the allocating and freeing call sites after the object and,
  for kmalloc caches, the requested size: the bytes between it and the size
  class become a "kmalloc Redzone".
* ``F`` checks every free (``free_consistency_checks``) and every allocation
  (``alloc_consistency_checks``) and prints SLUB's report to the log:
  ``BUG kmalloc-32 (Not tainted): Right Redzone overwritten``, the slab and
  object lines (6.x prints them without the old ``INFO:`` prefix), a hex dump
  of the red zones, object and padding, the call trace, and
  ``FIX kmalloc-32: Restoring Right Redzone ...``.  The object is then not
  freed (``Object at 0x... not freed``), as in the kernel; a bad object found
  at allocation makes SLUB give up the rest of its slab ("Marking all objects
  used").  Nothing is raised: the kernel goes on.

Without ``F``, freeing an object twice or through a pointer that is not an
object's start raises :class:`~kmemsim.errors.KernelOops` (a real kernel
would corrupt its freelist; kmemsim refuses to).

``slub_debug=P`` alone keeps the object layout and bytes of earlier kmemsim
versions (the padding between objects is not filled with ``0x5a``).

Every allocation is registered with kmemleak with the cache's
``object_size`` (not the requested size) and ``min_count`` 1.

>>> from kmemsim import Kernel
>>> k = Kernel(cmdline="slub_debug=P")
>>> p = k.kmalloc(20)
>>> k.kmemleak.find(p).size, k.memory.read(p + 30, 2).hex()
(32, '6ba5')
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Set
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import KernelOops, KmemsimFormatError, KmemsimValueError, check_int
from ..layout import PAGE_SIZE, POISON_END, POISON_FREE, POISON_INUSE
from ..memory import paused_gc
from .page_alloc import MAX_PAGE_ORDER, PG_SLAB, SLAB_CACHE_OFFSET, get_order

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

SLAB_CONSISTENCY_CHECKS = 0x00000100
SLAB_RED_ZONE = 0x00000400
SLAB_POISON = 0x00000800
SLAB_NOLEAKTRACE = 0x00800000
SLAB_HWCACHE_ALIGN = 0x00002000
SLAB_KMALLOC = 0x00001000
SLAB_STORE_USER = 0x00010000
SLAB_TRACE = 0x00200000
SLAB_FAILSLAB = 0x02000000
#: ``DEBUG_DEFAULT_FLAGS``: what ``slub_debug`` with no letters turns on (FZPU).
DEBUG_DEFAULT_FLAGS = SLAB_CONSISTENCY_CHECKS | SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER
#: ``slub_debug`` letters and their flags (T and A are accepted; kmemsim models neither).
SLUB_DEBUG_LETTERS = {"f": SLAB_CONSISTENCY_CHECKS, "z": SLAB_RED_ZONE, "p": SLAB_POISON,
                      "u": SLAB_STORE_USER, "t": SLAB_TRACE, "a": SLAB_FAILSLAB}
#: Red zone bytes: ``SLUB_RED_INACTIVE`` while free, ``SLUB_RED_ACTIVE`` while allocated.
SLUB_RED_INACTIVE = 0xBB
SLUB_RED_ACTIVE = 0xCC
#: The flags that change the object layout or the checks (``P`` alone keeps the plain path).
_FULL_DEBUG = SLAB_CONSISTENCY_CHECKS | SLAB_RED_ZONE | SLAB_STORE_USER
#: Taint flags (``TAINT_FLAGS_COUNT``, 6.16): a BUG report taints ``B`` (``TAINT_BAD_PAGE``).
_TAINT_FLAGS_COUNT = 20
_TAINT_BAD_PAGE = 5


#: ``kmalloc_size_class(size)`` for every size up to the largest class: a bulk kmalloc
#: looks each request's class up here instead of walking the classes.
_SIZE_CLASS = tuple(KMALLOC_SIZES[bisect_left(KMALLOC_SIZES, n)]
                    for n in range(KMALLOC_SIZES[-1] + 1))


def kmalloc_size_class(size: int) -> int:
    """The kmalloc cache that serves *size* bytes (``kmalloc_index``).

    >>> kmalloc_size_class(129), kmalloc_size_class(248), kmalloc_size_class(8192)
    (192, 256, 8192)
    """
    if type(size) is int and 0 <= size < len(_SIZE_CLASS):
        return _SIZE_CLASS[size]
    for c in KMALLOC_SIZES:
        if size <= c:
            return c
    raise KmemsimValueError(f"{size} bytes is above KMALLOC_MAX_CACHE_SIZE")


def _swab(value: int, nbytes: int) -> int:
    return int.from_bytes(value.to_bytes(nbytes, "little"), "big")


def _align(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


def track_size(word_size: int) -> int:
    """``sizeof(struct track)`` with ``CONFIG_STACKDEPOT``: addr, handle, cpu, pid, when.

    >>> track_size(8), track_size(4)
    (32, 20)
    """
    return 32 if word_size == 8 else 20


def parse_slub_debug(value: str | None, debug_on: bool = False
                     ) -> tuple[int, list[tuple[int, list[str]]], list[str]]:
    """``setup_slub_debug``: the global flags, the per-cache blocks, and error lines.

    *value* is what follows ``slub_debug`` on the command line (``None`` when
    it is absent, ``""`` for ``slub_debug`` or ``slub_debug=``).  Blocks are
    separated by ``;``; a block ``FLAGS,cache1,cache2`` applies to those
    caches only (a trailing ``*`` matches a prefix).

    >>> parse_slub_debug("")[0] == DEBUG_DEFAULT_FLAGS
    True
    >>> flags, blocks, _ = parse_slub_debug("FZ,kmalloc-32")
    >>> flags, blocks == [(SLAB_CONSISTENCY_CHECKS | SLAB_RED_ZONE, ["kmalloc-32"])]
    (0, True)
    >>> parse_slub_debug("PQ")[2]
    ["slub_debug option 'Q' unknown. skipped"]
    """
    default = DEBUG_DEFAULT_FLAGS if debug_on else 0
    if value is None:
        return default, [], []
    if not value:
        return DEBUG_DEFAULT_FLAGS, [], []
    errors: list[str] = []
    global_flags, changed = DEBUG_DEFAULT_FLAGS, False
    blocks: list[tuple[int, list[str]]] = []
    for block in value.split(";"):
        if not block:
            continue
        letters, comma, names = block.partition(",")
        if not letters and comma:
            flags = DEBUG_DEFAULT_FLAGS  # no options but a slab list: full debugging
        else:
            flags = 0
            for ch in letters:
                low = ch.lower()
                if low == "-":
                    flags = 0
                elif low in SLUB_DEBUG_LETTERS:
                    flags |= SLUB_DEBUG_LETTERS[low]
                elif low != "o":  # O: "avoid raising a cache's order" (orders are not raised here)
                    errors.append(f"slub_debug option '{ch}' unknown. skipped")
        if comma:
            blocks.append((flags, [n for n in names.split(",") if n]))
        else:
            global_flags, changed = flags, True
    if blocks and not changed:
        global_flags = default  # a slab list alone leaves the other caches as they were
    return global_flags, blocks, errors


def _hex_rows(data: bytes) -> list[str]:
    """``hex_dump_to_buffer`` rows (16 bytes, group 1, ASCII at column 49)."""
    rows = []
    for off in range(0, len(data), 16):
        row = data[off:off + 16]
        hexpart = " ".join(f"{b:02x}" for b in row)
        text = "".join(chr(b) if 0x20 <= b <= 0x7E else "." for b in row)
        rows.append(f"{hexpart.ljust(49)}{text}")
    return rows


#: ``Slab.state`` values: the slot is on the freelist, handed out, or given up on by SLUB.
SLOT_FREE, SLOT_ALLOCATED, SLOT_LOST = 0, 1, 2


class Slab:
    """One slab: ``2**order`` pages holding ``len(state)`` slots.

    The freelist (LIFO) is kept in two parts, exactly in the kernel's order:
    at the bottom the slots never handed out, ``fresh`` to the last (the
    lowest index is taken first, as a new slab's free pointers chain them),
    and on top :attr:`free`, the slots freed since (the head is the last
    element).  A freed slot always goes on top, and the never-used ones are
    taken only when ``free`` is empty, so the two parts are the whole
    freelist.  :attr:`state` says, per slot, free, allocated or lost (one
    byte a slot: no Python int per object).

    >>> from kmemsim import Kernel
    >>> k = Kernel(); c = k.kmem_cache_create("doc_slab", 100)
    >>> a, b = k.kmem_cache_alloc(c), k.kmem_cache_alloc(c); k.kmem_cache_free(c, a)
    >>> s = c.slab_of(a)
    >>> s.fresh, list(s.free) == [a], s.nfree == len(s.state) - 1, bytes(s.state[:3])
    (2, True, True, b'\\x00\\x01\\x00')
    """

    __slots__ = ("base", "free", "fresh", "order", "pfn", "state")

    def __init__(self, base: int, pfn: int, order: int, objects: int) -> None:
        self.base = base
        self.pfn = pfn
        self.order = order
        self.free = array("Q")
        """Slot addresses freed since the slab was made, head (next to allocate) last."""
        self.fresh = 0
        """Index of the first slot never handed out (all from it on are free)."""
        self.state = bytearray(objects)
        """Per slot: :data:`SLOT_FREE`, :data:`SLOT_ALLOCATED` or :data:`SLOT_LOST`."""

    @property
    def nfree(self) -> int:
        """How many objects are on the freelist."""
        return len(self.free) + len(self.state) - self.fresh

    def _set_saved_freelist(self, value: list[int]) -> None:
        # Saves of kmemsim up to 0.x hold ``freelist``, a list of free slots (head last):
        # kept here until SlabAllocator.upgrade_saved_bookkeeping() rebuilds the slab.
        self.free = value  # type: ignore[assignment]

    freelist = property(None, _set_saved_freelist,
                        doc="(assigned only by older saves; see :meth:`KmemCache.freelist_of`)")

    def __repr__(self) -> str:
        return f"<slab {self.base:#x} order={self.order} free={self.nfree}/{len(self.state)}>"


class AllocatedObjects(Set[int]):
    """``cache.allocated``: a read-only set of the cache's allocated objects, over its slabs.

    Membership finds the object's slab; iteration goes slab by slab (in the
    order they were made), lowest address first; ``&``, ``|`` and ``-`` give
    plain sets.

    >>> from kmemsim import Kernel
    >>> k = Kernel(); c = k.kmem_cache_create("doc_view", 64)
    >>> a, b = k.kmem_cache_alloc(c), k.kmem_cache_alloc(c)
    >>> k.kmem_cache_free(c, a)
    >>> b in c.allocated, a in c.allocated, len(c.allocated), list(c.allocated) == [b]
    (True, False, 1, True)
    >>> c.allocated | {a} == {a, b}
    True
    """

    __slots__ = ("cache",)

    def __init__(self, cache: KmemCache) -> None:
        self.cache = cache

    @classmethod
    def _from_iterable(cls, it: Iterable[Any]) -> set[Any]:
        return set(it)

    def __contains__(self, obj: object) -> bool:
        return type(obj) is int and self.cache.is_allocated(obj)

    def __len__(self) -> int:
        return self.cache.active_objects - len(self.cache.lost)

    def __iter__(self) -> Iterator[int]:
        c = self.cache
        first, size = c.red_left_pad, c.size
        for slab in list(c.slabs.values()):
            idx = np.flatnonzero(np.frombuffer(slab.state, dtype=np.uint8) == SLOT_ALLOCATED)
            yield from (np.uint64(slab.base + first)
                        + idx.astype(np.uint64) * np.uint64(size)).tolist()

    def __repr__(self) -> str:
        return f"<allocated objects of {self.cache.name}: {len(self)}>"


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
        # calculate_sizes(): object, right red zone, free pointer, tracks, padding.
        size = _align(object_size, ws)
        if flags & SLAB_RED_ZONE and size == object_size:
            size += ws  # a right red zone of at least one word
        self.inuse = size
        """Bytes in use by the object and its right red zone (``s->inuse``)."""
        self.keeps_orig_size = bool(flags & SLAB_STORE_USER and flags & SLAB_KMALLOC)
        """``slub_debug_orig_size``: the requested size is stored; the rest is red zone."""
        if self.keeps_orig_size or flags & SLAB_POISON or (
                flags & SLAB_RED_ZONE and object_size < ws):
            self.offset = size  # the free pointer moves after the object
            size += ws
        else:
            self.offset = (object_size // 2) & ~(ws - 1)
        self.info_end = size
        """``get_info_end``: where the tracks start."""
        if flags & SLAB_STORE_USER:
            size += 2 * track_size(ws)
            if flags & SLAB_KMALLOC:
                size += 4  # the original request size (unsigned int)
        self.red_left_pad = 0
        if flags & SLAB_RED_ZONE:
            size += ws  # padding that catches writes before the next object's start
            self.red_left_pad = _align(ws, self.align)
            size += self.red_left_pad
        self.size = _align(size, self.align)
        self.debug = bool(flags & _FULL_DEBUG)
        """Red zones, tracking or checks: the kernel's debug paths (``P`` alone is plain)."""
        self.lost: set[int] = set()
        """Free objects SLUB gave up on ("Marking all objects used"): never handed out."""
        self.tracks: dict[int, list[tuple[int, tuple[int, ...], int, int] | None]] = {}
        """``SLAB_STORE_USER``: per object, the alloc and free track (addr, trace, pid, when)."""
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
        """Objects handed out and not freed, including those SLUB gave up on (``lost``)."""

    @property
    def allocated(self) -> AllocatedObjects:
        """The allocated objects (not the lost ones), as a read-only set."""
        return AllocatedObjects(self)

    @allocated.setter
    def allocated(self, value: set[int]) -> None:
        # Saves of older kmemsim hold a set here; upgrade_saved_bookkeeping() drops it.
        self.__dict__["_saved_allocated"] = value

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
        first = base + self.red_left_pad
        slots = range(first, first + self.objects_per_slab * self.size, self.size)
        if self.debug:
            self._setup_debug_slab(base, slots)
        else:
            self._init_slab_bytes(base, slots)
        slab = Slab(base, pfn, self.order, self.objects_per_slab)
        self.slabs[base] = slab
        self.slab_index[pfn] = self
        return slab

    def _init_slab_bytes(self, base: int, slots: range) -> None:
        """Poison every object (``slub_debug=P``) and chain the free pointers, in one write.

        The bytes are those of ``_poison`` and ``_set_freepointer`` per object;
        padding between objects keeps its old contents.
        """
        n, size = len(slots), self.size
        image = bytearray(self.k.memory.read(base, n * size))
        self._poison_image(image, 0)
        _, values = self._free_pointer_words(np.array([slots[0]], dtype=np.uint64))
        words = np.frombuffer(image, dtype=values.dtype)
        ws = values.itemsize
        words[self.offset // ws::size // ws] = values[0]
        del words  # (no export outlives the call)
        self.k.memory.write(base, image)

    def _poison_image(self, image: bytearray, start: int) -> None:
        """``slub_debug=P``: poison the objects of the new slab whose image is in *image*
        from *start* (its objects, not its tail)."""
        if not self.flags & SLAB_POISON:
            return
        n, size = self.objects_per_slab, self.size
        grid = np.frombuffer(image, dtype=np.uint8, count=n * size, offset=start).reshape(n, size)
        grid[:, :self.object_size - 1] = POISON_FREE
        grid[:, self.object_size - 1] = POISON_END
        del grid  # (no export outlives the call)

    def _free_pointer_words(self, firsts: np.ndarray[Any, np.dtype[np.uint64]]
                            ) -> tuple[np.ndarray[Any, np.dtype[np.uint64]], np.ndarray[Any, Any]]:
        """The free-pointer words of new slabs whose first objects are at *firsts*.

        Returns their addresses and values (machine words), one row per slab:
        ``freelist_ptr_encode(next, obj + offset)`` for every slot, each naming
        the next slot (the last one NULL), as :meth:`_set_freepointer` writes them.
        """
        ws = self.k.arch.word_size
        dtype = np.dtype("<u8" if ws == 8 else "<u4")
        objs = firsts[:, None] + np.arange(self.objects_per_slab,
                                           dtype=np.uint64)[None, :] * np.uint64(self.size)
        nxt = np.zeros_like(objs)
        nxt[:, :-1] = objs[:, 1:]
        ptr_addr = objs + np.uint64(self.offset)
        if self.random:
            # swab(ptr_addr): the slot address's bytes reversed, as a word of this arch
            nxt ^= np.uint64(self.random) ^ ptr_addr.astype(dtype).byteswap().astype(np.uint64)
        return ptr_addr, nxt.astype(dtype)

    def slab_of(self, addr: int) -> Slab | None:
        span = PAGE_SIZE << self.order
        base = self.k.page_allocator.pfn_to_virt(self.k.page_allocator.virt_to_pfn(addr))
        base -= (base - self.k.arch.page_offset) % span
        return self.slabs.get(base)

    # -- per-slot bookkeeping --------------------------------------------------------
    def slot_index(self, slab: Slab, obj: int) -> int:
        """The index of the slot that starts at *obj* in *slab*, or -1 if none does."""
        rel = obj - slab.base - self.red_left_pad
        if rel < 0 or rel % self.size:
            return -1
        i = rel // self.size
        return i if i < self.objects_per_slab else -1

    def is_allocated(self, obj: int) -> bool:
        """*obj* is the start of one of this cache's objects, handed out and not freed
        (nor given up on by SLUB)."""
        slab = self.slab_of(obj)
        if slab is None:
            return False
        i = self.slot_index(slab, obj)
        return i >= 0 and slab.state[i] == SLOT_ALLOCATED

    def is_free(self, slab: Slab, obj: int) -> bool:
        """*obj* is on *slab*'s freelist (``on_freelist``)."""
        i = self.slot_index(slab, obj)
        return i >= 0 and slab.state[i] == SLOT_FREE

    def freelist_head(self, slab: Slab) -> int:
        """The object the next allocation from *slab* takes (``slab->freelist``), or 0."""
        if slab.free:
            return slab.free[-1]
        if slab.fresh < self.objects_per_slab:
            return slab.base + self.red_left_pad + slab.fresh * self.size
        return 0

    def freelist_of(self, slab: Slab) -> list[int]:
        """*slab*'s freelist as a list, the head (next to be allocated) last.

        >>> from kmemsim import Kernel
        >>> k = Kernel(); c = k.kmem_cache_create("doc_freelist", 1024)
        >>> a, b = k.kmem_cache_alloc(c), k.kmem_cache_alloc(c); k.kmem_cache_free(c, a)
        >>> s = c.slab_of(a); [p - s.base for p in c.freelist_of(s)][-3:]
        [3072, 2048, 0]
        """
        first = slab.base + self.red_left_pad
        never_used = range(first + (self.objects_per_slab - 1) * self.size,
                           first + (slab.fresh - 1) * self.size, -self.size)
        return [*never_used, *slab.free]

    def _take(self, slab: Slab) -> int:
        """Pop *slab*'s freelist head (the slab has a free object) and mark it allocated."""
        if slab.free:
            obj: int = slab.free.pop()
            slab.state[(obj - slab.base - self.red_left_pad) // self.size] = SLOT_ALLOCATED
            return obj
        i = slab.fresh
        slab.fresh = i + 1
        slab.state[i] = SLOT_ALLOCATED
        return slab.base + self.red_left_pad + i * self.size

    # -- slub_debug: red zones, tracks, checks and SLUB's report ----------------
    def _fmt(self, addr: int) -> str:
        return self.k.arch.fmt_addr(addr)

    def _setup_debug_slab(self, base: int, slots: range) -> None:
        """``setup_slab_debug`` (``0x5a`` everywhere under ``P``), then each object's
        red zones and poison (``init_object``), zeroed tracks, the free pointers."""
        mem = self.k.memory
        if self.flags & SLAB_POISON:
            mem.write(base, bytes([POISON_INUSE]) * (PAGE_SIZE << self.order))
        tracks = bytes(2 * track_size(self.k.arch.word_size))
        for i, obj in enumerate(slots):
            self._init_object(obj, SLUB_RED_INACTIVE)
            if self.flags & SLAB_STORE_USER:
                mem.write(obj + self.info_end, tracks)
            self._set_freepointer(obj, slots[i + 1] if i + 1 < len(slots) else 0)

    def _orig_size_addr(self, obj: int) -> int:
        return obj + self.info_end + 2 * track_size(self.k.arch.word_size)

    def get_orig_size(self, obj: int) -> int:
        """``get_orig_size``: the size the caller asked for (``object_size`` unless kept)."""
        if not self.keeps_orig_size:
            return self.object_size
        return int.from_bytes(self.k.memory.read(self._orig_size_addr(obj), 4), "little")

    def _init_object(self, obj: int, val: int) -> None:
        """``init_object``: red zones set to *val*, the object poisoned under ``P``."""
        mem = self.k.memory
        poison_size = self.object_size
        if self.flags & SLAB_RED_ZONE:
            mem.write(obj - self.red_left_pad, bytes([val]) * self.red_left_pad)
            if self.keeps_orig_size and val == SLUB_RED_ACTIVE:
                # kmalloc's unused tail is red zone too; only the request is poisoned.
                poison_size = self.get_orig_size(obj)
        if self.flags & SLAB_POISON and poison_size:
            mem.write(obj, bytes([POISON_FREE]) * (poison_size - 1) + bytes([POISON_END]))
        if self.flags & SLAB_RED_ZONE:
            mem.write(obj + poison_size, bytes([val]) * (self.inuse - poison_size))

    def get_freepointer(self, obj: int) -> int:
        """The decoded free pointer stored in *obj* (``get_freepointer``)."""
        slot = obj + self.offset
        return self.freelist_ptr_encode(self.k.memory.read_word(slot), slot)

    def check_valid_pointer(self, slab: Slab, ptr: int) -> bool:
        """``check_valid_pointer``: NULL, or the start of one of *slab*'s objects."""
        if not ptr:
            return True
        rel = ptr - self.red_left_pad - slab.base
        return 0 <= rel < self.objects_per_slab * self.size and rel % self.size == 0

    def _tainted(self) -> str:
        """``print_tainted()``: SLUB's reports taint the kernel ``B`` (bad page)."""
        if not self.k.slab.tainted:
            return "Not tainted"
        flags = ["G"] + [" "] * (_TAINT_FLAGS_COUNT - 1)
        flags[_TAINT_BAD_PAGE] = "B"
        return "Tainted: " + "".join(flags)

    def _slab_bug(self, reason: str) -> None:
        p = self.k.printk
        p("=" * 77)
        p(f"BUG {self.name} ({self._tainted()}): {reason}")
        p("-" * 77)
        p("")

    def slab_fix(self, message: str) -> None:
        """``slab_fix``: what SLUB did about it (``FIX kmalloc-32: ...``)."""
        self.k.printk(f"FIX {self.name}: {message}")

    def _dump_stack(self, frames: tuple[str, ...]) -> None:
        k = self.k
        t = k.current
        tainted = self._tainted()
        k.printk(f"CPU: 0 UID: 0 PID: {t.pid} Comm: {t.comm} {tainted} 6.16.0-kmemsim #1")
        if k.slab.tainted:
            k.printk("Tainted: [B]=BAD_PAGE")
        for line in ("Hardware name: kmemsim simulated machine", "Call Trace:", " <TASK>"):
            k.printk(line)
        for name in frames:
            k.printk(f" {k.symbols.symbolize(k.symbols.return_address(name))}")
        for addr in k.save_stack_trace():
            k.printk(f" {k.symbolize(addr)}")
        k.printk(" </TASK>")

    def _print_section(self, text: str, addr: int, length: int) -> None:
        data = self.k.memory.read(addr, length)
        for i, row in enumerate(_hex_rows(data)):
            self.k.printk(f"{text}{self._fmt(addr + 16 * i)}: {row}")

    def _print_slab_info(self, slab: Slab) -> None:
        page = self.k.page_allocator.struct_page(slab.pfn)
        used = self.objects_per_slab - slab.nfree
        fp = self.freelist_head(slab)
        flags = "0x100000000000040(head|node=0|zone=1)" if slab.order else \
            "0x100000000000000(node=0|zone=1)"
        self.k.printk(f"Slab 0x{self._fmt(page)} objects={self.objects_per_slab} used={used} "
                      f"fp=0x{self._fmt(fp)} flags={flags}")

    def _print_tracking(self, obj: int) -> None:
        if not self.flags & SLAB_STORE_USER:
            return
        k = self.k
        for label, track in zip(("Allocated", "Freed"), self.tracks.get(obj, [None, None]),
                                strict=True):
            if track is None:
                continue
            addr, trace, pid, when = track
            k.printk(f"{label} in {k.symbolize(addr)} age={k.jiffies - when} cpu=0 pid={pid}")
            for a in trace:
                k.printk(f" {k.symbolize(a)}")
            if not trace:
                k.printk("object allocation/free stack trace missing")

    def _set_track(self, obj: int, which: int, entry: str | None) -> None:
        k = self.k
        trace = k.save_stack_trace()
        if entry is not None:
            trace = (k.symbols.return_address(entry), *trace)
        # t->addr is the allocator's caller: the frame after the allocator's own.
        addr = trace[1] if len(trace) > 1 else (trace[0] if trace else 0)
        tracks = self.tracks.setdefault(obj, [None, None])
        tracks[which] = (addr, trace, k.current_task()[0], k.jiffies)

    def _print_trailer(self, slab: Slab, obj: int, frames: tuple[str, ...]) -> None:
        """``print_trailer``: tracks, slab and object info, hex dumps, call trace."""
        self._print_tracking(obj)
        self._print_slab_info(slab)
        self.k.printk(f"Object 0x{self._fmt(obj)} @offset={obj - slab.base} "
                      f"fp=0x{self._fmt(self.get_freepointer(obj))}")
        self.k.printk("")
        if self.flags & SLAB_RED_ZONE:
            self._print_section("Redzone  ", obj - self.red_left_pad, self.red_left_pad)
        elif obj > slab.base + 16:
            self._print_section("Bytes b4 ", obj - 16, 16)
        self._print_section("Object   ", obj, min(self.object_size, PAGE_SIZE))
        if self.flags & SLAB_RED_ZONE:
            self._print_section("Redzone  ", obj + self.object_size, self.inuse - self.object_size)
        off = self._pad_start()
        end = self.size - self.red_left_pad  # size_from_object
        if off != end:
            self._print_section("Padding  ", obj + off, end - off)
        self._dump_stack(frames)

    def _pad_start(self) -> int:
        off = self.info_end
        if self.flags & SLAB_STORE_USER:
            off += 2 * track_size(self.k.arch.word_size) + (4 if self.keeps_orig_size else 0)
        return off

    def object_err(self, slab: Slab, obj: int, reason: str, frames: tuple[str, ...]) -> None:
        """``object_err``: the BUG banner and the object's trailer."""
        self._slab_bug(reason)
        self._print_trailer(slab, obj, ("dump_stack_lvl", "print_trailer", "object_err", *frames))
        self.k.slab.tainted = True

    def slab_err(self, slab: Slab, message: str, frames: tuple[str, ...]) -> None:
        """``slab_err``: the BUG banner, the slab's info and the call trace."""
        self._slab_bug(message)
        self._print_slab_info(slab)
        self._dump_stack(("dump_stack_lvl", "slab_err", *frames))
        self.k.slab.tainted = True

    def _check_bytes_and_report(self, slab: Slab, obj: int, what: str, start: int, value: int,
                                nbytes: int, frames: tuple[str, ...]) -> bool:
        """``check_bytes_and_report``: report the first run of wrong bytes, then restore it."""
        if nbytes <= 0:
            return True
        data = self.k.memory.read(start, nbytes)
        i = next((j for j, b in enumerate(data) if b != value), None)
        if i is None:
            return True
        fault, end = start + i, start + nbytes
        while end > fault and data[end - 1 - start] == value:
            end -= 1
        self._slab_bug(f"{what} overwritten")
        self.k.printk(f"0x{self._fmt(fault)}-0x{self._fmt(end - 1)} @offset={fault - slab.base}. "
                      f"First byte 0x{data[i]:x} instead of 0x{value:x}")
        self._print_trailer(slab, obj, ("dump_stack_lvl", "print_trailer",
                                        "check_bytes_and_report", "check_object", *frames))
        self.k.slab.tainted = True
        # restore_bytes
        self.slab_fix(f"Restoring {what} 0x{self._fmt(fault)}-0x{self._fmt(end - 1)}=0x{value:x}")
        self.k.memory.write(fault, bytes([value]) * (end - fault))
        return False

    def check_object(self, slab: Slab, obj: int, val: int, frames: tuple[str, ...]) -> bool:
        """``check_object``: red zones (*val*), poison (free objects), padding, free pointer."""
        def cbr(what: str, start: int, value: int, n: int) -> bool:
            return self._check_bytes_and_report(slab, obj, what, start, value, n, frames)

        end = obj + self.object_size
        if self.flags & SLAB_RED_ZONE:
            if not cbr("Left Redzone", obj - self.red_left_pad, val, self.red_left_pad):
                return False
            if not cbr("Right Redzone", end, val, self.inuse - self.object_size):
                return False
            if self.keeps_orig_size and val == SLUB_RED_ACTIVE:
                orig = self.get_orig_size(obj)
                if self.object_size > orig and not cbr("kmalloc Redzone", obj + orig, val,
                                                       self.object_size - orig):
                    return False
        elif self.flags & SLAB_POISON and self.object_size < self.inuse:
            cbr("Alignment padding", end, POISON_INUSE, self.inuse - self.object_size)
        if self.flags & SLAB_POISON:
            if val != SLUB_RED_ACTIVE:
                if not cbr("Poison", obj, POISON_FREE, self.object_size - 1):
                    return False
                if not cbr("End Poison", end - 1, POISON_END, 1):
                    return False
            # check_pad_bytes (it restores what it reports and does not fail the check)
            cbr("Object padding", obj + self._pad_start(), POISON_INUSE,
                self.size - self.red_left_pad - self._pad_start())
        if self.offset < self.inuse and val == SLUB_RED_ACTIVE:
            return True  # the free pointer overlaps the live object: nothing to check
        if not self.check_valid_pointer(slab, self.get_freepointer(obj)):
            self.object_err(slab, obj, "Freepointer corrupt", ("check_object", *frames))
            self._set_freepointer(obj, 0)
            return False
        return True

    def free_consistency_checks(self, obj: int, caller: str) -> bool:
        """``free_consistency_checks`` (``slub_debug=F``): False when *obj* must not be freed."""
        slab = self.slab_of(obj)
        assert slab is not None  # cache_of() found this cache by the object's page
        frames = ("free_debug_processing", "__slab_free", caller)
        if not self.check_valid_pointer(slab, obj):
            self.slab_err(slab, f"Invalid object pointer 0x{self._fmt(obj)}", frames)
            return False
        if self.is_free(slab, obj):
            self.object_err(slab, obj, "Object already free", frames)
            return False
        return self.check_object(slab, obj, SLUB_RED_ACTIVE, frames)

    def _mark_all_used(self, slab: Slab) -> None:
        """``alloc_debug_processing`` failed: SLUB gives up the slab's free objects."""
        self.slab_fix("Marking all objects used")
        free = self.freelist_of(slab)
        self.lost.update(free)
        self.active_objects += len(free)
        for obj in free:
            slab.state[self.slot_index(slab, obj)] = SLOT_LOST
        slab.free = array("Q")
        slab.fresh = self.objects_per_slab
        if slab in self.partial:
            self.partial.remove(slab)

    def alloc_object(self, orig_size: int | None = None) -> int:
        """Take the head of the freelist (a new slab if needed); 0 when out of memory.

        *orig_size* is the size the caller asked for (kept under ``slub_debug=U``).
        """
        while True:
            slab = self.cpu_slab
            if slab is None or not (slab.free or slab.fresh < self.objects_per_slab):
                slab = self.partial.pop(0) if self.partial else self._new_slab()
                if slab is None:
                    return 0
                self.cpu_slab = slab
            obj = self._take(slab)
            if self.flags & SLAB_CONSISTENCY_CHECKS and not self.check_object(
                    slab, obj, SLUB_RED_INACTIVE, ("alloc_debug_processing", "___slab_alloc")):
                slab.state[self.slot_index(slab, obj)] = SLOT_LOST
                self.lost.add(obj)
                self.active_objects += 1
                self._mark_all_used(slab)
                continue
            break
        self.active_objects += 1
        if self.debug:
            if self.keeps_orig_size:
                self.k.memory.write(self._orig_size_addr(obj),
                                    (orig_size or self.object_size).to_bytes(4, "little"))
            self._init_object(obj, SLUB_RED_ACTIVE)
            if self.flags & SLAB_STORE_USER:
                self._set_track(obj, 0, None)
        elif self.flags & SLAB_POISON or self.k.page_allocator.init_on_free:
            # With the free pointer outside the object, clear it as SLUB does; with
            # init_on_free, maybe_wipe_obj_freeptr() clears the in-object free pointer
            # so that the object comes back all zero.
            self.k.memory.write_word(obj + self.offset, 0)
        return obj

    def free_object(self, obj: int, caller: str = "kfree") -> None:
        """Push *obj* back on its slab's freelist (poisoning it under ``slub_debug=P``)."""
        slab = self.slab_of(obj)
        assert slab is not None
        i = self.slot_index(slab, obj)
        assert i >= 0, hex(obj)
        assert slab.state[i] != SLOT_FREE, hex(obj)
        slab.state[i] = SLOT_FREE
        self.lost.discard(obj)
        self.active_objects -= 1
        if self.debug:
            if self.flags & SLAB_STORE_USER:
                self._set_track(obj, 1, caller)
            self._init_object(obj, SLUB_RED_INACTIVE)
        elif self.flags & SLAB_POISON:
            self._poison(obj)
        self._set_freepointer(obj, self.freelist_head(slab))
        was_full = not slab.nfree
        slab.free.append(obj)
        if was_full and slab is not self.cpu_slab:
            self.partial.append(slab)
        if slab.nfree == self.objects_per_slab and slab is not self.cpu_slab:
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
        """Caches get ``SLAB_POISON`` unless a per-cache ``slub_debug`` block says otherwise."""
        self.debug_flags = 0
        """The ``slub_debug`` flags every cache gets (``SLAB_POISON`` and friends)."""
        self.debug_blocks: list[tuple[int, list[str]]] = []
        """``slub_debug=FLAGS,cache,...`` blocks: flags for the named caches only."""
        self.tainted = False
        """A SLUB BUG report was printed (``TAINT_BAD_PAGE``)."""

    def setup_slub_debug(self, value: str | None, debug_on: bool = False) -> None:
        """``setup_slub_debug``: parse the ``slub_debug`` boot option (see :func:`parse_slub_debug`)."""
        self.debug_flags, self.debug_blocks, errors = parse_slub_debug(value, debug_on)
        for line in errors:
            self.k.printk(line)
        self.debug_poison = bool(self.debug_flags & SLAB_POISON)

    def _check(self) -> None:
        """Assert each cache's bookkeeping (what ``validate_slab_cache`` counts).

        Every slot of every slab is free (on its slab's freelist), allocated, or
        given up on by SLUB (:attr:`KmemCache.lost`), exactly once: the
        freelist holds each free slot once and nothing else, and the per-slot
        states agree with it, with :attr:`KmemCache.lost` and with
        :attr:`KmemCache.active_objects`.
        """
        for cache in self.caches.values():
            n, used, lost = cache.objects_per_slab, 0, []
            for base, slab in cache.slabs.items():
                assert slab.base == base, (cache, slab)
                assert len(slab.state) == n, (cache, slab)
                assert 0 <= slab.fresh <= n, (cache, slab)
                state = np.frombuffer(slab.state, dtype=np.uint8)
                assert bool((state <= SLOT_LOST).all()), (cache, slab)
                idx = [cache.slot_index(slab, obj) for obj in slab.free]
                assert all(0 <= i < slab.fresh for i in idx), (cache, slab)
                free = np.zeros(n, dtype=bool)
                free[idx] = True
                free[slab.fresh:] = True
                assert int(free.sum()) == slab.nfree, (cache, slab)  # no slot twice
                assert bool(((state == SLOT_FREE) == free).all()), (cache, slab)
                used += n - slab.nfree
                first = slab.base + cache.red_left_pad
                lost += [first + int(i) * cache.size for i in np.flatnonzero(state == SLOT_LOST)]
            assert used == cache.active_objects, cache
            assert set(lost) == cache.lost, cache
            assert len(lost) == len(cache.lost), cache
            assert cache.active_objects == len(cache.allocated) + len(cache.lost), cache
            for obj in [*cache.allocated, *cache.lost]:
                assert self.cache_of(obj) is cache, (cache, hex(obj))
            assert cache.cpu_slab is None or cache.slabs.get(cache.cpu_slab.base) is \
                cache.cpu_slab, cache
            for slab in cache.partial:
                assert slab is not cache.cpu_slab, (cache, slab)
                assert slab.nfree > 0, (cache, slab)
                assert cache.slabs.get(slab.base) is slab, (cache, slab)

    def upgrade_saved_bookkeeping(self) -> None:
        """Rebuild the per-slot states of a kernel restored from an older save.

        Saves written before :class:`Slab` kept one byte a slot hold each
        slab's freelist as a list and ``cache.allocated`` as a set; the
        freelist becomes :attr:`Slab.free` (its order kept), and every slot
        not on it is allocated, or lost when :attr:`KmemCache.lost` holds it.
        A kernel that needs nothing of this is left as it is.
        """
        for cache in {id(c): c for c in [*self.caches.values(),
                                          *self.kmalloc_caches.values()]}.values():
            saved = cache.__dict__.pop("_saved_allocated", None)
            n = cache.objects_per_slab
            for slab in cache.slabs.values():
                if not isinstance(slab.free, list):
                    continue
                freelist = slab.free
                slab.fresh = n
                slab.state = bytearray([SLOT_ALLOCATED]) * n
                lost = [obj for obj in cache.lost if cache.slab_of(obj) is slab]
                for objs, value in ((freelist, SLOT_FREE), (lost, SLOT_LOST)):
                    for obj in objs:
                        i = cache.slot_index(slab, obj) if type(obj) is int else -1
                        if i < 0 or slab.state[i] != SLOT_ALLOCATED:
                            raise KmemsimFormatError(f"a saved slab of {cache.name} lists "
                                                     f"{obj!r} twice or not at a slot")
                        slab.state[i] = value
                slab.free = array("Q", freelist)
            if saved is not None and (not isinstance(saved, set) or set(cache.allocated) != saved):
                raise KmemsimFormatError(f"the saved objects of {cache.name} do not match "
                                         "its slabs' freelists")

    def kmem_cache_flags(self, name: str, flags: int) -> int:
        """``kmem_cache_flags``: the debug flags of the cache called *name*.

        >>> from kmemsim import Kernel
        >>> k = Kernel(cmdline="slub_debug=Z,kmalloc-3*")
        >>> [bool(c.flags & SLAB_RED_ZONE) for c in (k.slab.kmalloc_caches[32], k.slab.kmalloc_caches[64])]
        [True, False]
        """
        for block_flags, names in self.debug_blocks:
            for pattern in names:
                star = pattern.find("*")
                if name == pattern or (star >= 0 and name.startswith(pattern[:star])):
                    return flags | block_flags
        return flags | self.debug_flags

    def create(self, name: str, object_size: int, align: int = 0, flags: int = 0) -> KmemCache:
        flags = self.kmem_cache_flags(name, flags)
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
        obj = cache.alloc_object(size_for_init)
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
        if cache.flags & SLAB_CONSISTENCY_CHECKS:
            if not cache.free_consistency_checks(obj, caller):
                # free_debug_processing failed: SLUB keeps the object (it is not freed),
                # the program has let go of it.
                cache.slab_fix(f"Object at 0x{self.k.arch.fmt_addr(obj)} not freed")
                if cache.is_allocated(obj):
                    self.k.truth.on_free(obj)
                return
        elif not cache.is_allocated(obj):
            raise self._bug(cache, obj, caller)
        self.k.truth.on_free(obj)
        if self.k.page_allocator.init_on_free:
            self.k.memory.fill(obj, cache.object_size, 0)
        cache.free_object(obj, caller)

    def _bug(self, cache: KmemCache, obj: int, caller: str) -> KernelOops:
        slab = cache.slab_of(obj)
        if slab is not None and cache.is_free(slab, obj):
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
        cache, init = self.kmalloc_request(size)
        with self.k.kernel_frames("__kmalloc_cache_noprof"):
            return self.slab_alloc(cache, init, zero=zero)

    def kmalloc_request(self, size: int) -> tuple[KmemCache, int]:
        """The kmalloc cache for *size* (1..8192) and how many bytes an init covers."""
        cache = self.kmalloc_caches[kmalloc_size_class(size)]
        # With red zones or tracking, kzalloc zeroes only the request: the rest is red zone.
        init = size if cache.flags & (SLAB_RED_ZONE | SLAB_STORE_USER) else cache.object_size
        return cache, init

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


# -- bulk allocation (kept at the end of the file) ------------------------------------------

def _take_many(cache: KmemCache, slab: Slab, t: int) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """``_take`` *t* times from *slab* (which has that many free): the objects, in order."""
    first, size = slab.base + cache.red_left_pad, cache.size
    parts = []
    popped = min(t, len(slab.free))
    if popped:
        cut = len(slab.free) - popped
        objs = np.frombuffer(slab.free[cut:], dtype=np.uint64)[::-1]  # the head first
        del slab.free[cut:]
        state = np.frombuffer(slab.state, dtype=np.uint8)
        state[(objs - np.uint64(first)) // np.uint64(size)] = SLOT_ALLOCATED
        del state
        parts.append(objs)
    rest = t - popped
    if rest:
        f = slab.fresh
        slab.state[f:f + rest] = bytes([SLOT_ALLOCATED]) * rest
        slab.fresh = f + rest
        parts.append(np.uint64(first) + np.arange(f, f + rest, dtype=np.uint64) * np.uint64(size))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


#: New slabs initialised together by a bulk allocation (their free-pointer words and
#: byte images at once), and the most bytes read and written at once.
_BULK_SLABS = 1024
_BULK_RUN_BYTES = 1 << 20


def _init_slabs_bytes(k: Kernel, group: list[tuple[Slab, KmemCache]]) -> None:
    """``_init_slab_bytes`` of the new slabs *group* (in address order, of any caches).

    The slabs' bytes are read and written in runs of adjacent slabs (a run breaks
    after a slab whose objects do not fill its pages, whose tail ``_new_slab``
    leaves unwritten): the same bytes, written as few times as can be.
    """
    mem, ws = k.memory, k.arch.word_size
    # Free-pointer words of every slab, cache by cache, then sorted by address.
    by_cache: dict[KmemCache, list[Slab]] = {}
    for s, c in group:
        by_cache.setdefault(c, []).append(s)
    addrs, values = [], []
    for c, slabs in by_cache.items():
        a, v = c._free_pointer_words(
            np.array([s.base + c.red_left_pad for s in slabs], dtype=np.uint64))
        addrs.append(a.ravel())
        values.append(v.ravel())
    addr = np.concatenate(addrs)
    value = np.concatenate(values)
    by_addr = np.argsort(addr, kind="stable")
    addr, value = addr[by_addr], value[by_addr]
    runs: list[list[tuple[Slab, KmemCache]]] = []
    end = -1
    for s, c in group:
        used = c.objects_per_slab * c.size
        if runs and s.base == end and s.base + used - runs[-1][0][0].base <= _BULK_RUN_BYTES:
            runs[-1].append((s, c))
        else:
            runs.append([(s, c)])
        # a slab whose objects leave a tail ends its run (its tail is not written)
        end = s.base + used if used == PAGE_SIZE << c.order else -1
    for run in runs:
        start = run[0][0].base
        last, lc = run[-1]
        stop = last.base + lc.objects_per_slab * lc.size
        image = bytearray(mem.read(start, stop - start))
        for s, c in run:
            c._poison_image(image, s.base - start)
        lo, hi = np.searchsorted(addr, [start, stop])
        words = np.frombuffer(image, dtype=value.dtype)
        words[((addr[lo:hi] - np.uint64(start)) // np.uint64(ws)).astype(np.intp)] = value[lo:hi]
        del words
        mem.write(start, image)


def _new_slabs_bulk(k: Kernel, made: list[tuple[KmemCache, int]]) -> list[Slab]:
    """Initialise the new slabs *made* (``(cache, head pfn)``, in the order their pages
    were allocated) as ``_new_slab`` would one by one: ``PG_slab`` and the cache in
    each head ``struct page``, the objects poisoned (``slub_debug=P``) and their free
    pointers chained, then each slab registered with its cache.  Returns the slabs.
    """
    pa, mem = k.page_allocator, k.memory
    ws = k.arch.word_size
    if SLAB_CACHE_OFFSET[ws] == ws:  # mark_slab: flags then slab_cache, two words a slab
        heads = [pa.struct_page(pfn) for _, pfn in made]
        mem.write_words([a + d for a in heads for d in (0, ws)],
                        [v for c, _ in made for v in (PG_SLAB, c.pointer)])
    else:  # pragma: no cover - every layout has slab_cache right after the flags
        for c, pfn in made:
            pa.mark_slab(pfn, c.order, c.pointer)
    slabs = [Slab(pa.pfn_to_virt(pfn), pfn, c.order, c.objects_per_slab) for c, pfn in made]
    by_base = sorted(zip(slabs, [c for c, _ in made], strict=True), key=lambda sc: sc[0].base)
    # (a chunk of slabs at a time: the numpy arrays and byte images stay small)
    for i in range(0, len(by_base), _BULK_SLABS):
        _init_slabs_bytes(k, by_base[i:i + _BULK_SLABS])
    for (c, pfn), s in zip(made, slabs, strict=True):
        c.slabs[s.base] = s
        c.slab_index[pfn] = c
    return slabs


def _alloc_bulk(slab: SlabAllocator, caches: list[KmemCache],
                per_cache: Counter[KmemCache]) -> list[int] | None:
    """The objects ``alloc_object`` gives *caches* one by one, taken cache by cache.

    The slabs the batch needs are made first, their pages allocated in the
    order the one-by-one calls would allocate them; ``None`` (and nothing
    done) when the buddy allocator could not serve them all.
    """
    pa = slab.k.page_allocator
    distinct = list(per_cache)
    index = {c: i for i, c in enumerate(distinct)}
    cid = np.fromiter(map(index.__getitem__, caches), dtype=np.intp, count=len(caches))
    # the requests of each cache, in order
    positions = np.split(np.argsort(cid, kind="stable"),
                         np.cumsum([per_cache[c] for c in distinct])[:-1].tolist())
    # When each cache runs out of free objects (its CPU slab, then its partial slabs)
    # and makes a slab: (request position, cache) in request order.
    events: list[tuple[int, int]] = []
    for i, c in enumerate(distinct):
        cpu = c.cpu_slab
        have = (cpu.nfree if cpu is not None else 0) + sum(s.nfree for s in c.partial)
        pos = positions[i]
        events += [(p, i) for p in pos[have::c.objects_per_slab].tolist()]
    events.sort()
    pfns = pa.alloc_many([distinct[i].order for _, i in events])
    if pfns is None:
        return None
    new: list[list[Slab]] = [[] for _ in distinct]
    if pfns:
        made = _new_slabs_bulk(slab.k, [(distinct[i], pfn)
                                        for (_, i), pfn in zip(events, pfns, strict=True)])
        for (_, i), s in zip(events, made, strict=True):
            new[i].append(s)
    out = np.empty(len(caches), dtype=np.uint64)
    for i, c in enumerate(distinct):
        left = per_cache[c]
        cur = c.cpu_slab
        parts = []
        # the slabs the cache has: its CPU slab, then its partial slabs in order
        while left and (c.partial or (cur is not None and cur.nfree)):
            if cur is None or not cur.nfree:
                cur = c.cpu_slab = c.partial.pop(0)
            t = min(left, cur.nfree)
            parts.append(_take_many(c, cur, t))
            left -= t
        if left:  # then the new ones, in the order they were made: never-used slots only
            made_c = new[i]
            n = c.objects_per_slab
            firsts = np.array([s.base + c.red_left_pad for s in made_c], dtype=np.uint64)
            parts.append((firsts[:, None] + np.arange(n, dtype=np.uint64)[None, :]
                          * np.uint64(c.size)).ravel()[:left])
            full = bytes([SLOT_ALLOCATED]) * n
            for s in made_c[:-1]:
                s.state[:] = full
                s.fresh = n
            last = left - n * (len(made_c) - 1)
            made_c[-1].state[:last] = bytes([SLOT_ALLOCATED]) * last
            made_c[-1].fresh = last
            c.cpu_slab = made_c[-1]
        out[positions[i]] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        c.active_objects += per_cache[c]
    objs: list[int] = out.tolist()
    # (free pointers of objects taken, cleared together: no other allocation touches them)
    init_on_free = pa.init_on_free
    wipe_offset = np.array([c.offset if c.flags & SLAB_POISON or init_on_free else -1
                            for c in distinct], dtype=np.int64)[cid]
    wiped = wipe_offset >= 0
    if wiped.any():
        slab.k.memory.write_words((out[wiped] + wipe_offset[wiped].astype(np.uint64)).tolist(),
                                  [0] * int(wiped.sum()))
    return objs


def slab_alloc_bulk(slab: SlabAllocator, requests: list[tuple[KmemCache, int]], *,
                    zero: bool) -> list[int]:
    """``slab_alloc(cache, size_for_init)`` for each ``(cache, size_for_init)``, in order.

    The objects, their addresses and bytes, the page allocator's state, the
    kmemleak records (serials, traces) and the ground truth are exactly those
    of the one-by-one calls; the new slabs, the kmemleak tree and the truth
    index are made and updated in batches.  When memory is short enough that
    an allocation might fail (and so warn between two others), or a cache has
    ``slub_debug`` checks (which may report between two allocations), it
    makes the one-by-one calls instead.  The caller supplies the kernel
    frames of the trace.  Runtime complexity: ``O(m log(n + m))``.

    >>> from kmemsim import Kernel
    >>> k = Kernel(seed=1); c = k.kmem_cache_create("doc_bulk", 2000)
    >>> n = c.objects_per_slab; objs = slab_alloc_bulk(k.slab, [(c, 2000)] * (n + 1), zero=False)
    >>> len(c.slabs), objs[:n] == list(range(objs[0], objs[0] + n * c.size, c.size))
    (2, True)
    """
    k = slab.k
    caches = [c for c, _ in requests]
    # Pages the batch can take at most: a new slab for every objects_per_slab objects of a
    # cache (as if its current slabs were full), and kmemleak's metadata (16 objects a
    # page); a quarter more, for a buddy allocator that cannot always split what it has.
    per_cache = Counter(caches)
    pages = sum(-(-n // c.objects_per_slab) << c.order for c, n in per_cache.items())
    pages += len(caches) // 16 + 1
    if k.page_allocator.free_pages < pages + pages // 4 + 64 or any(c.debug for c in per_cache):
        return [slab.slab_alloc(c, init, zero=zero) for c, init in requests]
    # Records per object (kmemleak objects, truth blocks), none of them cyclic: no
    # garbage collection is needed while they are made.
    with paused_gc():
        got = _alloc_bulk(slab, caches, per_cache) if requests else []
        if got is None:
            return [slab.slab_alloc(c, init, zero=zero) for c, init in requests]
        objs = got
        if zero or k.page_allocator.init_on_alloc:
            for obj, (_, init) in zip(objs, requests, strict=True):
                k.memory.fill(obj, init, 0)
        sizes = [c.object_size for c in caches]
        if any(c.flags & SLAB_NOLEAKTRACE for c in set(caches)):
            traced = [(o, c.object_size) for o, c in zip(objs, caches, strict=True)
                      if not c.flags & SLAB_NOLEAKTRACE]
            k.kmemleak.kmemleak_alloc_bulk([o for o, _ in traced], [n for _, n in traced], 1)
        else:
            k.kmemleak.kmemleak_alloc_bulk(list(objs), sizes, 1)  # a copy: objs is returned
        # the truth keeps them as columns: each object's cache as a number into the names
        code = {c: i for i, c in enumerate(per_cache)}
        k.truth.on_alloc_array(objs, sizes, "slab", list(map(code.__getitem__, caches)),
                               [c.name for c in per_cache])
    return objs
