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

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING

import numpy as np

from ..errors import KernelOops, KmemsimValueError, check_int
from ..layout import PAGE_SIZE, POISON_END, POISON_FREE, POISON_INUSE
from ..memory import paused_gc
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
        first = base + self.red_left_pad
        slots = list(range(first, first + self.objects_per_slab * self.size, self.size))
        if self.debug:
            self._setup_debug_slab(base, slots)
        else:
            self._init_slab_bytes(base, slots)
        slab = Slab(base, pfn, self.order, slots[::-1])
        self.slabs[base] = slab
        self.slab_index[pfn] = self
        return slab

    def _init_slab_bytes(self, base: int, slots: list[int]) -> None:
        """Poison every object (``slub_debug=P``) and chain the free pointers, in one write.

        The bytes are those of ``_poison`` and ``_set_freepointer`` per object;
        padding between objects keeps its old contents.
        """
        ws = self.k.arch.word_size
        n, size = len(slots), self.size
        image = bytearray(self.k.memory.read(base, n * size))
        grid = np.frombuffer(image, dtype=np.uint8).reshape(n, size)
        if self.flags & SLAB_POISON:
            grid[:, :self.object_size - 1] = POISON_FREE
            grid[:, self.object_size - 1] = POISON_END
        # freelist_ptr_encode(next, obj + offset) for every slot, vectorised: each slot's
        # free pointer names the next slot (the last one NULL).
        dtype = np.dtype("<u8" if ws == 8 else "<u4")
        objs = np.arange(n, dtype=np.uint64) * np.uint64(size) + np.uint64(slots[0])
        nxt = np.zeros(n, dtype=np.uint64)
        nxt[:-1] = objs[1:]
        if self.random:
            ptr_addr = (objs + np.uint64(self.offset)).astype(dtype)
            # swab(ptr_addr): the slot address's bytes reversed, as a word of this arch
            nxt ^= np.uint64(self.random) ^ ptr_addr.byteswap().astype(np.uint64)
        packed = nxt.astype(dtype).view(np.uint8)
        grid[:, self.offset:self.offset + ws] = packed.reshape(n, ws)
        self.k.memory.write(base, image)

    def slab_of(self, addr: int) -> Slab | None:
        span = PAGE_SIZE << self.order
        base = self.k.page_allocator.pfn_to_virt(self.k.page_allocator.virt_to_pfn(addr))
        base -= (base - self.k.arch.page_offset) % span
        return self.slabs.get(base)

    # -- slub_debug: red zones, tracks, checks and SLUB's report ----------------
    def _fmt(self, addr: int) -> str:
        return self.k.arch.fmt_addr(addr)

    def _setup_debug_slab(self, base: int, slots: list[int]) -> None:
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
        used = self.objects_per_slab - len(slab.freelist)
        fp = slab.freelist[-1] if slab.freelist else 0
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
        if obj in slab.freelist:
            self.object_err(slab, obj, "Object already free", frames)
            return False
        return self.check_object(slab, obj, SLUB_RED_ACTIVE, frames)

    def _mark_all_used(self, slab: Slab) -> None:
        """``alloc_debug_processing`` failed: SLUB gives up the slab's free objects."""
        self.slab_fix("Marking all objects used")
        self.lost.update(slab.freelist)
        self.active_objects += len(slab.freelist)
        slab.freelist.clear()
        if slab in self.partial:
            self.partial.remove(slab)

    def alloc_object(self, orig_size: int | None = None) -> int:
        """Take the head of the freelist (a new slab if needed); 0 when out of memory.

        *orig_size* is the size the caller asked for (kept under ``slub_debug=U``).
        """
        while True:
            slab = self.cpu_slab
            if slab is None or not slab.freelist:
                slab = self.partial.pop(0) if self.partial else self._new_slab()
                if slab is None:
                    return 0
                self.cpu_slab = slab
            obj = slab.freelist.pop()
            if self.flags & SLAB_CONSISTENCY_CHECKS and not self.check_object(
                    slab, obj, SLUB_RED_INACTIVE, ("alloc_debug_processing", "___slab_alloc")):
                self.lost.add(obj)
                self.active_objects += 1
                self._mark_all_used(slab)
                continue
            break
        self.allocated.add(obj)
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
        self.allocated.discard(obj)
        self.lost.discard(obj)
        self.active_objects -= 1
        if self.debug:
            if self.flags & SLAB_STORE_USER:
                self._set_track(obj, 1, caller)
            self._init_object(obj, SLUB_RED_INACTIVE)
        elif self.flags & SLAB_POISON:
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
        given up on by SLUB (:attr:`KmemCache.lost`), exactly once.
        """
        for cache in self.caches.values():
            assert cache.active_objects == len(cache.allocated) + len(cache.lost), cache
            free = sum(len(s.freelist) for s in cache.slabs.values())
            assert free + cache.active_objects == cache.total_objects, cache
            assert not cache.allocated & cache.lost, cache
            for obj in cache.allocated | cache.lost:
                assert self.cache_of(obj) is cache, (cache, hex(obj))

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
                if obj in cache.allocated:
                    self.k.truth.on_free(obj)
                return
        elif obj not in cache.allocated:
            raise self._bug(cache, obj, caller)
        self.k.truth.on_free(obj)
        if self.k.page_allocator.init_on_free:
            self.k.memory.fill(obj, cache.object_size, 0)
        cache.free_object(obj, caller)

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

def slab_alloc_bulk(slab: SlabAllocator, requests: list[tuple[KmemCache, int]], *,
                    zero: bool) -> list[int]:
    """``slab_alloc(cache, size_for_init)`` for each ``(cache, size_for_init)``, in order.

    The objects, their addresses and bytes, the kmemleak records (serials,
    traces) and the ground truth are exactly those of the one-by-one calls; the
    kmemleak tree and the truth index are updated in one batch.  When memory is
    short enough that an allocation might fail (and so warn between two
    others), or a cache has ``slub_debug`` checks (which may report between
    two allocations), it makes the one-by-one calls instead.  The caller
    supplies the kernel frames of the trace.  Runtime complexity:
    ``O(m log(n + m))``.
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
    objs: list[int] = []
    append = objs.append
    wipe: list[int] = []  # free-pointer words to clear, written together after the loop
    init_on_free = k.page_allocator.init_on_free
    # Records per object (slab bookkeeping, kmemleak objects, truth blocks), none of
    # them cyclic: no garbage collection is needed while they are made.
    with paused_gc():
        for c, init in requests:
            # alloc_object inlined for a cache without debugging (checked above) whose
            # CPU slab has a free object; anything else (a new slab) goes through it.
            slab_ = c.cpu_slab
            if slab_ is None or not slab_.freelist:
                append(c.alloc_object(init))
                continue
            obj = slab_.freelist.pop()
            c.allocated.add(obj)
            c.active_objects += 1
            if c.flags & SLAB_POISON or init_on_free:
                # (written after the loop: no other allocation of the batch touches it)
                wipe.append(obj + c.offset)
            append(obj)
        k.memory.write_words(wipe, [0] * len(wipe))
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
        # (zip reuses its tuple when the consumer unpacks it: no tuple per object)
        k.truth.on_alloc_many(zip(objs, sizes, repeat("slab"), [c.name for c in caches],
                                  strict=False))
    return objs
