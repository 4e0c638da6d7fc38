"""The detector's state and the ``kmemleak_*`` API the allocators call.

:class:`Kmemleak` holds what ``mm/kmemleak.c`` keeps in globals:
``object_list`` (creation order), the three object trees, the address
windows, the metadata pool, the scan-thread schedule and the switches
(``kmemleak_enabled``, ``kmemleak_stack_scan``, ``kmemleak_verbose`` ...).
Each ``kmemleak_*`` method has the effect, lookup mode and warning text of
the kernel call of the same name (spec section 4.1).

>>> from kmemsim import Kernel
>>> k = Kernel()
>>> p = k.kmalloc(100)
>>> obj = k.kmemleak.find(p)
>>> (obj.size, obj.min_count)
(128, 1)
>>> k.kmemleak.kmemleak_not_leak(p + 8)          # interior pointer: the alias warning
>>> "Found object by alias" in k.dmesg()
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import add
from typing import TYPE_CHECKING

import numpy as np

from ..errors import KmemsimTypeError, KmemsimValueError, check_int, check_ints
from . import faults
from .index import ObjectTree
from .object import (
    KMEMLEAK_BLACK,
    KMEMLEAK_GREY,
    MSECS_MIN_AGE,
    OBJECT_ALLOCATED,
    OBJECT_FULL_SCAN,
    OBJECT_NO_SCAN,
    OBJECT_PERCPU,
    OBJECT_PHYS,
    OBJECT_REPORTED,
    SECS_FIRST_SCAN,
    SECS_SCAN_WAIT,
    KmemleakObject,
    ObjectList,
    ObjectStore,
    ScanArea,
    color_white,
    paint_it,
)
from .services import KernelServices

if TYPE_CHECKING:
    from .scan import ScanResult

#: The scan engines: the vectorised one and the kernel's word-by-word walk.
SCAN_ENGINES = ("fast", "reference")
#: Bytes of one ``struct kmemleak_object`` (charged to the metadata slab).
SIZEOF_KMEMLEAK_OBJECT = 248
#: ``SIZE_MAX`` as ``kmemleak_scan_area`` understands it: "to the end of the object".
SIZE_MAX = -1
MAX_ERRNO = 4095


@dataclass(frozen=True, slots=True)
class KmemleakConfig:
    """Build- and boot-time settings of the detector.

    ``report_format`` selects the record layout era: ``"newest"`` (``%pS``
    frames, ``crc``), ``"6.6"`` (``[<%pK>] %pS`` frames, ``crc``) or
    ``"4.15"`` (``age``, hashed ``[<%p>]`` frames).
    """

    enabled: bool = True
    mem_pool_size: int = 16000
    auto_scan: bool = True
    verbose: bool = False
    stack_scan: bool = True
    report_format: str = "newest"
    kptr_restrict: int = 1
    debug: bool = False
    """Build with ``DEBUG`` defined: prints the "Freeing unknown object" warnings."""


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """A snapshot of one ``kmemleak_object`` with the kernel's field names.

    >>> from kmemsim import Kernel
    >>> k = Kernel()
    >>> data = k.kmemleak.record(k.kmemleak.find(k.statics["slab_caches"]))   # kernel .data
    >>> data.min_count, data.color
    (0, 'gray')
    """

    pointer: int
    size: int
    min_count: int
    count: int
    flags: int
    excess_ref: int
    checksum: int
    jiffies: int
    pid: int
    comm: str
    areas: tuple[tuple[int, int], ...]
    trace: tuple[int, ...]
    color: str
    reported: bool
    tree: str = field(default="virtual")

    def __repr__(self) -> str:
        return (f"<ObjectRecord {self.pointer:#x} size={self.size} {self.color} "
                f"count={self.count}/{self.min_count} flags={self.flags:#x}>")

    def __str__(self) -> str:
        return (f"0x{self.pointer:08x} (size {self.size}) {self.color}, count {self.count} of "
                f"min_count {self.min_count}, flags 0x{self.flags:x}, comm \"{self.comm}\" "
                f"pid {self.pid}, jiffies {self.jiffies}")


def _is_err_or_null(ptr: int, word_mask: int, name: str = "ptr") -> bool:
    if type(ptr) is not int or not 0 <= ptr <= word_mask:
        # A caller's mistake (not a pointer at all): a typed error naming the argument.
        check_int(name, ptr, minimum=0, maximum=word_mask)
    return ptr == 0 or ptr >= (word_mask - MAX_ERRNO + 1)


def _check_obj(obj: object) -> None:
    if not isinstance(obj, KmemleakObject):
        raise KmemsimTypeError(f"obj must be a KmemleakObject (from Kmemleak.find), not "
                               f"{type(obj).__name__}")


def _check_size(name: str, value: int, minimum: int = 0) -> None:
    if type(value) is not int or value < minimum:
        check_int(name, value, minimum=minimum)


class Kmemleak:
    """kmemleak inside one simulated kernel (see the module docstring)."""

    def __init__(self, services: KernelServices, config: KmemleakConfig) -> None:
        self.k = services
        self.config = config
        arch = services.arch
        self._untag = arch.untag
        self._word_mask = arch.word_mask
        # switches (kmemleak.c globals)
        self.kmemleak_enabled = config.enabled
        self.kmemleak_free_enabled = config.enabled
        self.kmemleak_initialized = False
        self.kmemleak_late_initialized = False
        self.kmemleak_error = False
        self.kmemleak_found_leaks = False
        self.kmemleak_stack_scan = config.stack_scan
        self.kmemleak_verbose = config.verbose
        self.metadata_kept = True
        # the index
        self.store = ObjectStore()
        """Every object's fields, as columns (``object_list`` is a view of its live rows)."""
        self.object_list = ObjectList(self.store)
        self.object_tree_root = ObjectTree("object_tree_root", self.store)
        self.object_phys_tree_root = ObjectTree("object_phys_tree_root", self.store)
        self.object_percpu_tree_root = ObjectTree("object_percpu_tree_root", self.store)
        self.min_addr = self._word_mask
        self.max_addr = 0
        self.min_percpu_addr = self._word_mask
        self.max_percpu_addr = 0
        self._serial = 0
        # metadata pool (CONFIG_DEBUG_KMEMLEAK_MEM_POOL_SIZE)
        self.mem_pool_free_count = config.mem_pool_size
        self.mem_pool_free_list = 0
        self._from_pool: set[int] = set()
        self._pool_empty_warned = False
        self._scan_area_warned = False
        self.fail_scan_area_alloc = False
        """Fault injection: the next scan-area metadata allocations fail."""
        # timing
        hz = services.hz
        self.jiffies_min_age = msecs_to_jiffies(MSECS_MIN_AGE, hz)
        self.jiffies_scan_wait = msecs_to_jiffies(SECS_SCAN_WAIT * 1000, hz)
        self.jiffies_last_scan = services.jiffies
        self.scan_thread_running = False
        # kmemleak_scan_thread's static first_run starts as IS_ENABLED(AUTO_SCAN): without
        # AUTO_SCAN even the first thread (started by scan=on) scans at once.
        self._first_thread = config.auto_scan
        self.next_scan_jiffies: int | None = None
        self.scans_done = 0
        self.default_engine = "fast"
        """The engine ``scan()`` (and the debugfs ``scan`` command) use by default."""
        self._last_scan: ScanResult | None = None
        self._scan_hook: Callable[..., object] | None = None

    # ------------------------------------------------------------------ helpers
    def warn(self, text: str, *, stack: bool = True) -> None:
        """``kmemleak_warn``: a ``pr_warn`` line and, usually, a stack dump."""
        self.k.printk(f"kmemleak: {text}")
        if stack:
            for line in self.k.dump_stack():
                self.k.printk(line)

    def info(self, text: str) -> None:
        self.k.printk(f"kmemleak: {text}")

    def tree_for(self, objflags: int) -> ObjectTree:
        if objflags & OBJECT_PHYS:
            return self.object_phys_tree_root
        if objflags & OBJECT_PERCPU:
            return self.object_percpu_tree_root
        return self.object_tree_root

    def _lookup_object(self, ptr: int, alias: bool, objflags: int = 0) -> KmemleakObject | None:
        """``__lookup_object``: with alias=0 an interior hit warns and finds nothing."""
        untagged = self._untag(ptr)
        obj = self.tree_for(objflags).lookup(untagged)
        if obj is None:
            return None
        if alias or self._untag(obj.pointer) == untagged:
            return obj
        self.warn(f"Found object by alias at 0x{ptr:08x}")
        self.dump_object_info(obj)
        return None

    def find(self, ptr: int, *, alias: bool = True, tree: str = "virtual") -> KmemleakObject | None:
        """Return the live object containing *ptr* (no warnings), or ``None``.

        >>> from kmemsim import Kernel
        >>> k = Kernel(); p = k.kmalloc(32)
        >>> k.kmemleak.find(p + 8).pointer == p
        True
        """
        check_int("ptr", ptr, minimum=0)
        flags = {"virtual": 0, "phys": OBJECT_PHYS, "percpu": OBJECT_PERCPU}.get(tree)
        if flags is None:
            raise KmemsimValueError(f"tree must be 'virtual', 'phys' or 'percpu', not {tree!r}")
        obj = self.tree_for(flags).lookup(self._untag(ptr))
        if obj is not None and not alias and self._untag(obj.pointer) != self._untag(ptr):
            return None
        return obj

    def __iter__(self) -> Iterator[KmemleakObject]:
        """``object_list`` in creation order."""
        return iter(list(self.object_list.values()))

    def __len__(self) -> int:
        return len(self.object_list)

    # ------------------------------------------------------------- creation
    def _mem_pool_alloc(self, serial: int) -> bool:
        if self.kmemleak_initialized and self.k.metadata_alloc(SIZEOF_KMEMLEAK_OBJECT):
            return True
        if self.mem_pool_free_list:
            self.mem_pool_free_list -= 1
        elif self.mem_pool_free_count:
            self.mem_pool_free_count -= 1
        else:
            if not self._pool_empty_warned:
                self._pool_empty_warned = True
                self.k.printk("kmemleak: Memory pool empty, consider increasing "
                              "CONFIG_DEBUG_KMEMLEAK_MEM_POOL_SIZE")
            return False
        self._from_pool.add(serial)
        return True

    def _mem_pool_free(self, obj: KmemleakObject) -> None:
        if obj.serial in self._from_pool:
            self._from_pool.discard(obj.serial)
            self.mem_pool_free_list += 1
        else:
            self.k.metadata_free(SIZEOF_KMEMLEAK_OBJECT)

    def create_object(self, ptr: int, size: int, min_count: int, objflags: int = 0) -> None:
        """``__create_object``: allocate metadata, fill it in, link it into a tree."""
        self._serial += 1
        serial = self._serial
        if not self._mem_pool_alloc(serial):
            self.k.printk("kmemleak: Cannot allocate a kmemleak_object structure")
            self.kmemleak_disable()
            return
        pid, comm = self.k.current_task()
        trace = self.k.save_stack_trace() if self.kmemleak_initialized else ()
        obj = self.store.add(
            ptr, size, min_count, serial=serial, flags=OBJECT_ALLOCATED | objflags,
            jiffies=self.k.jiffies & self._word_mask, pid=pid, comm=comm[:15], trace=trace,
        )
        untagged = self._untag(ptr)
        # __link_object widens the window before it walks the tree.
        if objflags & OBJECT_PERCPU:
            self.min_percpu_addr = min(self.min_percpu_addr, untagged)
            self.max_percpu_addr = max(self.max_percpu_addr, untagged + size)
        elif not objflags & OBJECT_PHYS:
            self.min_addr = min(self.min_addr, untagged)
            self.max_addr = max(self.max_addr, untagged + size)
        parent = self.tree_for(objflags).insert(obj, untagged)
        if parent is not None:
            self._unlink(obj)  # never in object_list
            self._mem_pool_free(obj)
            # kmemleak_stop(): warn and disable.  The cleanup work is only scheduled, so
            # the existing object is dumped while still intact (flags, ALLOCATED), and
            # the thread stop and the metadata release come after the dump.
            self.warn(f"Cannot insert 0x{ptr:x} into the object search tree (overlaps existing)")
            scheduled = self._disable()
            self.dump_object_info(parent)
            if scheduled:
                self.kmemleak_do_cleanup()
            return

    def _remove_object(self, obj: KmemleakObject) -> None:
        """``__remove_object`` + ``__delete_object``: out of tree and list, not ALLOCATED."""
        tree = self.tree_for(obj.flags)
        tree.remove(obj, self._untag(obj.pointer))
        self._unlink(obj)
        obj.flags &= ~OBJECT_ALLOCATED
        self._mem_pool_free(obj)

    def _unlink(self, obj: KmemleakObject) -> None:
        """Out of ``object_list``: the store frees the row, compacting now and then."""
        self.store.unlink(obj)
        if self.store.wants_compaction():
            new_row = self.store.compact()
            for tree in (self.object_tree_root, self.object_phys_tree_root,
                         self.object_percpu_tree_root):
                tree.remap(new_row)

    # ----------------------------------------------------------- the API (4.1)
    def _tracking(self, ptr: int, name: str = "ptr") -> bool:
        return not _is_err_or_null(ptr, self._word_mask, name) and self.kmemleak_enabled

    def kmemleak_alloc(self, ptr: int, size: int, min_count: int) -> None:
        """Register a block: a virtual-tree object, count 0, checksum 0."""
        _check_size("size", size)
        _check_size("min_count", min_count, -1)
        if self._tracking(ptr):
            self.create_object(ptr, size, min_count)

    def kmemleak_alloc_bulk(self, ptrs: Sequence[int], sizes: Sequence[int],
                            min_count: int) -> None:
        """``kmemleak_alloc(ptrs[i], sizes[i], min_count)`` for each *i*, in order, all from
        the current context.

        The objects, serials, traces, windows and metadata charges are those of
        one call per pointer; only the tree work is batched.  Whenever the batch
        could take a path that one-by-one calls take differently (an overlap, the
        metadata pool, early boot), it simply makes the calls one by one.
        Runtime complexity: ``O(m log(m))`` for *m* pointers (see
        :meth:`ObjectTree.insert_rows`).
        """
        mask = self._word_mask
        ptrs = check_ints("ptrs", ptrs, minimum=0, maximum=mask)
        sizes = check_ints("sizes", sizes, minimum=0)
        _check_size("min_count", min_count, -1)
        if len(ptrs) != len(sizes):
            raise KmemsimValueError(f"ptrs and sizes differ in length ({len(ptrs)} and "
                                    f"{len(sizes)})")
        if not self.kmemleak_enabled or not ptrs:
            return
        p = np.asarray(ptrs, dtype=np.uint64)
        sz = np.asarray(sizes, dtype=np.uint64)
        tracked = (p != 0) & (p <= np.uint64(mask - MAX_ERRNO))  # not NULL, not IS_ERR
        if not tracked.all():
            p, sz = p[tracked], sz[tracked]
            ptrs, sizes = p.tolist(), sz.tolist()
        safe = (self.kmemleak_initialized and len(p) > 0 and bool(sz.min() > 0) and
                self.k.metadata_fits(SIZEOF_KMEMLEAK_OBJECT, len(p)))
        if safe:
            pid, comm = self.k.current_task()
            comm = comm[:15]
            trace = self.k.save_stack_trace()
            jiffies = self.k.jiffies & mask
            starts = p | np.uint64(0xFF00_0000_0000_0000) if self.k.arch.top_byte_tags else p
            safe = self.object_tree_root.can_insert_many(starts, sz)
        if not safe:
            for ptr, size in zip(ptrs, sizes, strict=True):
                self.kmemleak_alloc(ptr, size, min_count)
            return
        rows = self.store.add_many(p, sz, min_count, first_serial=self._serial + 1,
                                   flags=OBJECT_ALLOCATED, jiffies=jiffies, pid=pid,
                                   comm=comm, trace=trace)
        self.object_tree_root.insert_rows(starts, rows)
        self._serial += len(rows)
        # (metadata_fits held: every one of the calls' charges succeeds)
        self.k.metadata_alloc_many(SIZEOF_KMEMLEAK_OBJECT, len(rows))
        ends = starts + sz
        self.min_addr = min(self.min_addr, int(starts.min()))
        # (an object ending at the very top of the space wraps in uint64: ask Python then)
        top = (int(ends.max()) if bool((ends > starts).all())
               else max(map(add, starts.tolist(), sz.tolist())))
        self.max_addr = max(self.max_addr, top)

    def kmemleak_alloc_percpu(self, ptr: int, size: int) -> None:
        """One per-CPU-tree object for a per-CPU cookie, min_count 1 (newest kernels)."""
        _check_size("size", size)
        if self._tracking(ptr):
            self.create_object(ptr, size, 1, OBJECT_PERCPU)

    def kmemleak_alloc_phys(self, phys: int, size: int) -> None:
        """A phys-tree object with min_count 0: a root, never found by scanning."""
        _check_size("size", size)
        if self._tracking(phys, "phys"):
            self.create_object(phys, size, KMEMLEAK_GREY, OBJECT_PHYS)

    def kmemleak_vmalloc(self, area: int, addr: int, size: int) -> None:
        """The vmalloc block (min_count 2) plus ``excess_ref`` on its ``vm_struct``.

        *area* is the address of the ``vm_struct``, *addr* its ``addr`` field.
        """
        _is_err_or_null(area, self._word_mask, "area")
        _is_err_or_null(addr, self._word_mask, "addr")
        _check_size("size", size)
        if self.kmemleak_enabled:
            self.create_object(addr, size, 2)
            self.object_set_excess_ref(area, addr)

    def object_set_excess_ref(self, ptr: int, excess_ref: int) -> None:
        obj = self._lookup_object(ptr, False)
        if obj is None:
            self.warn(f"Setting excess_ref on unknown object at 0x{ptr:08x}")
            return
        obj.excess_ref = excess_ref

    def _delete_object_full(self, ptr: int, objflags: int) -> None:
        obj = self._lookup_object(ptr, False, objflags)
        if obj is None:
            if self.config.debug:
                self.warn(f"Freeing unknown object at 0x{ptr:08x}")
            return
        self._remove_object(obj)

    def kmemleak_free(self, ptr: int) -> None:
        """Exact lookup; remove the object.  Unknown pointers are silent."""
        if not _is_err_or_null(ptr, self._word_mask) and self.kmemleak_free_enabled:
            self._delete_object_full(ptr, 0)

    def kmemleak_free_percpu(self, ptr: int) -> None:
        if not _is_err_or_null(ptr, self._word_mask) and self.kmemleak_free_enabled:
            self._delete_object_full(ptr, OBJECT_PERCPU)

    def _delete_object_part(self, ptr: int, size: int, objflags: int) -> None:
        obj = self._lookup_object(ptr, True, objflags)
        if obj is None:
            if self.config.debug:
                self.warn(f"Partially freeing unknown object at 0x{ptr:08x} (size {size})")
            return
        start, end, min_count = obj.pointer, obj.pointer + obj.size, obj.min_count
        self._remove_object(obj)
        if ptr > start:
            self.create_object(start, ptr - start, min_count, objflags)
        if ptr + size < end:
            self.create_object(ptr + size, end - ptr - size, min_count, objflags)

    def kmemleak_free_part(self, ptr: int, size: int) -> None:
        """Alias lookup; replace the object by what is left on either side."""
        _check_size("size", size)
        if not _is_err_or_null(ptr, self._word_mask) and self.kmemleak_free_enabled:
            self._delete_object_part(ptr, size, 0)

    def kmemleak_free_part_phys(self, phys: int, size: int) -> None:
        _check_size("size", size)
        if not _is_err_or_null(phys, self._word_mask, "phys") and self.kmemleak_free_enabled:
            self._delete_object_part(phys, size, OBJECT_PHYS)

    def _paint_ptr(self, ptr: int, color: int, objflags: int) -> None:
        obj = self._lookup_object(ptr, False, objflags)
        if obj is None:
            name = "Grey" if color == KMEMLEAK_GREY else "Black"
            self.warn(f"Trying to color unknown object at 0x{ptr:08x} as {name}")
            return
        paint_it(obj, color)

    def kmemleak_not_leak(self, ptr: int) -> None:
        """``min_count = 0``: permanently gray, still scanned, never reported."""
        if self._tracking(ptr):
            self._paint_ptr(ptr, KMEMLEAK_GREY, 0)

    def kmemleak_ignore(self, ptr: int) -> None:
        """Paint black: ``min_count = -1`` and ``OBJECT_NO_SCAN``."""
        if self._tracking(ptr):
            self._paint_ptr(ptr, KMEMLEAK_BLACK, 0)

    def kmemleak_ignore_percpu(self, ptr: int) -> None:
        if self._tracking(ptr):
            self._paint_ptr(ptr, KMEMLEAK_BLACK, OBJECT_PERCPU)

    def kmemleak_ignore_phys(self, phys: int) -> None:
        if self._tracking(phys, "phys"):
            self._paint_ptr(phys, KMEMLEAK_BLACK, OBJECT_PHYS)

    def kmemleak_no_scan(self, ptr: int) -> None:
        """Never scan the object's contents (it stays reportable)."""
        if not self._tracking(ptr):
            return
        obj = self._lookup_object(ptr, False)
        if obj is None:
            self.warn(f"Not scanning unknown object at 0x{ptr:08x}")
            return
        obj.flags |= OBJECT_NO_SCAN

    def kmemleak_transient_leak(self, ptr: int) -> None:
        """Reset the stored checksum so the next scan spares the object once."""
        if not self._tracking(ptr):
            return
        obj = self._lookup_object(ptr, False)
        if obj is None:
            self.warn(f"Not resetting the checksum of an unknown object at 0x{ptr:08x}")
            return
        obj.checksum = 0

    def kmemleak_update_trace(self, ptr: int) -> None:
        """Alias lookup; replace the object's backtrace with the current one."""
        if not self._tracking(ptr):
            return
        obj = self._lookup_object(ptr, True)
        if obj is None:
            if self.config.debug:
                self.warn(f"Updating stack trace for unknown object at {ptr:#x}")
            return
        obj.trace = self.k.save_stack_trace()

    def kmemleak_scan_area(self, ptr: int, size: int) -> None:
        """Restrict scanning of the containing object to ``[ptr, ptr+size)``.

        ``size=SIZE_MAX`` (-1) means "from *ptr* to the end of the object".
        Areas are prepended, so the most recent is scanned first.
        """
        _check_size("size", size, SIZE_MAX)
        if not self._tracking(ptr) or size == 0:
            return
        obj = self._lookup_object(ptr, True)
        if obj is None:
            self.warn(f"Adding scan area to unknown object at 0x{ptr:08x}")
            return
        if self.fail_scan_area_alloc:
            if not self._scan_area_warned:
                self._scan_area_warned = True
                self.k.printk("kmemleak: Cannot allocate a scan area, scanning the full object")
            obj.flags |= OBJECT_FULL_SCAN
            return
        untagged, objp = self._untag(ptr), self._untag(obj.pointer)
        if size == SIZE_MAX:
            size = objp + obj.size - untagged
        elif untagged + size > objp + obj.size:
            self.warn(f"Scan area larger than object 0x{ptr:08x}")
            self.dump_object_info(obj)
            return
        obj.areas = (ScanArea(ptr, size), *obj.areas)  # list_add: at the head

    # ------------------------------------------------------------ reporting
    def dump_object_info(self, obj: KmemleakObject) -> None:
        """Print ``dump_object_info`` (spec 7.6) to the kernel log."""
        from .report import dump_object_info_lines

        _check_obj(obj)
        for line in dump_object_info_lines(obj, self.k.symbolize):
            self.k.printk(line)

    def unreferenced_object(self, obj: KmemleakObject) -> bool:
        """White, still allocated, and older than the minimum age at the last scan's start."""
        _check_obj(obj)
        return (
            color_white(obj)
            and bool(obj.flags & OBJECT_ALLOCATED)
            and (time_before_eq(obj.jiffies + self.jiffies_min_age, self.jiffies_last_scan,
                                self._word_mask)
                 or (bool(faults.ACTIVE) and "min_age_ignored" in faults.ACTIVE))
        )

    def reported_unreferenced(self) -> list[KmemleakObject]:
        """What a read of the debugfs file lists: reported and still unreferenced."""
        from .scan import listed_rows

        return list(map(self.store.view, listed_rows(self).tolist()))

    def kmemleak_clear(self) -> None:
        """``clear`` while enabled: reported leaks become permanently gray (roots)."""
        for obj in list(self.object_list.values()):
            if obj.flags & OBJECT_REPORTED and self.unreferenced_object(obj):
                paint_it(obj, KMEMLEAK_GREY)
        self.kmemleak_found_leaks = False

    def do_cleanup(self) -> None:
        """``__kmemleak_do_cleanup``: free all metadata (after disabling)."""
        for obj in list(self.object_list.values()):
            self._remove_object(obj)
        for tree in (self.object_tree_root, self.object_phys_tree_root,
                     self.object_percpu_tree_root):
            for obj in list(tree):
                tree.remove(obj, self._untag(obj.pointer))
        self.metadata_kept = False

    # ---------------------------------------------------- enable / disable
    def kmemleak_disable(self) -> None:
        """Stop tracking; idempotent.  Metadata is kept if leaks were ever found."""
        if self._disable():
            # kmemleak_do_cleanup runs from a workqueue right after.
            self.kmemleak_do_cleanup()

    def _disable(self) -> bool:
        """The synchronous part of ``kmemleak_disable``.

        Returns True when the cleanup work was scheduled (disabled after the
        late initcall); the caller then runs :meth:`kmemleak_do_cleanup`.
        """
        if self.kmemleak_error:
            return False
        self.kmemleak_error = True
        self.kmemleak_enabled = False
        if not self.kmemleak_late_initialized:
            self.kmemleak_free_enabled = False
        self.info("Kernel memory leak detector disabled")
        return self.kmemleak_late_initialized

    def kmemleak_do_cleanup(self) -> None:
        """The cleanup work: stop the thread, stop tracking frees, free or keep metadata."""
        self.stop_scan_thread()
        self.kmemleak_free_enabled = False
        if not self.kmemleak_found_leaks:
            self.do_cleanup()
        else:
            self.info('Kmemleak disabled without freeing internal data. Reclaim the memory '
                      'with "echo clear > /sys/kernel/debug/kmemleak".')

    def kmemleak_init(self, sections: list[tuple[int, int]]) -> None:
        """Boot set-up: compute timings and register ``.data``/``.bss`` as gray objects."""
        if not self.kmemleak_enabled:
            return
        self.kmemleak_initialized = True
        for start, end in sections:
            self.create_object(start, end - start, KMEMLEAK_GREY)

    def kmemleak_late_init(self) -> None:
        """Late initcall: the debugfs file, the scan thread, the "initialized" line."""
        self.kmemleak_late_initialized = True
        if self.kmemleak_error:
            # The cleanup work a disable scheduled before late init runs now.
            if not self.kmemleak_found_leaks:
                self.do_cleanup()
            return
        if not self.kmemleak_enabled:
            return
        # The thread prints its "started" line when it first runs, after the late
        # initcall's own line: real boot logs show "initialized" first.
        self.info(f"Kernel memory leak detector initialized (mem pool available: "
                  f"{self.mem_pool_free_count})")
        if self.config.auto_scan:
            self.start_scan_thread()

    # --------------------------------------------------------- scan thread
    def start_scan_thread(self) -> None:
        """Start ``kmemleakd``: the first instance waits 60 s, later ones scan at once."""
        if self.scan_thread_running:
            return
        self.scan_thread_running = True
        self.info("Automatic memory scanning thread started")
        wait = msecs_to_jiffies(SECS_FIRST_SCAN * 1000, self.k.hz) if self._first_thread else 0
        self._first_thread = False
        self.next_scan_jiffies = self.k.jiffies + wait

    def stop_scan_thread(self) -> None:
        if not self.scan_thread_running:
            return
        self.scan_thread_running = False
        self.next_scan_jiffies = None
        self.info("Automatic memory scanning thread ended")

    def set_scan_hook(self, hook: Callable[..., object]) -> None:
        """Called by the kernel: what to run when the scan thread's time comes."""
        self._scan_hook = hook

    def thread_scanned(self, now: int) -> None:
        """The thread finished a scan at *now*; it sleeps ``jiffies_scan_wait``."""
        if self.scan_thread_running:
            self.next_scan_jiffies = now + self.jiffies_scan_wait

    # ---------------------------------------------------------------- scans
    def scan(self, engine: str | None = None,
             observer: Callable[[str, object], None] | None = None) -> ScanResult:
        """Run one scan now, as ``echo scan > /sys/kernel/debug/kmemleak`` does.

        *engine* is ``"fast"`` (vectorised) or ``"reference"`` (the kernel's
        word-by-word walk); both give the same colours, counts, checksums and
        reports.  ``None`` uses :attr:`default_engine`.  When kmemleak is
        disabled the scan stops at once and reports nothing (``interrupted``).

        >>> from kmemsim import Kernel
        >>> k = Kernel(); _ = k.kmalloc(32); k.sleep(10)
        >>> r = k.kmemleak.scan()
        >>> len(r.new_leaks), len(r.checksum_spared) >= 1      # poisoned: spared once
        (0, True)
        """
        from .scan import kmemleak_scan

        engine = self.default_engine if engine is None else engine
        if engine not in SCAN_ENGINES:
            raise KmemsimValueError(f"unknown scan engine {engine!r}: use 'fast' or 'reference'")
        result = kmemleak_scan(self, observer, engine)
        self.scans_done += 1
        self._last_scan = result
        return result

    @property
    def last_scan(self) -> ScanResult | None:
        """The result of the most recent scan, or ``None`` before the first one."""
        return self._last_scan

    def root_ranges(self) -> list[tuple[int, int]]:
        """The ``(start, end)`` ranges the last scan read as direct roots."""
        if self._last_scan is None:
            return []
        return [(r.start, r.end) for r in self._last_scan.root_ranges]

    def objects(self) -> list[ObjectRecord]:
        """Snapshots of every tracked object, in ``object_list`` (creation) order."""
        return [self.record(o) for o in self.object_list.values()]

    def print_unreferenced_to_log(self, obj: KmemleakObject) -> None:
        """``verbose``: the record goes to the log with ``pr_warn`` (and the prefix)."""
        from .report import record_lines

        _check_obj(obj)
        for line in record_lines(self, obj):
            self.k.printk(f"kmemleak: {line}")

    # -------------------------------------------------------- introspection
    def record(self, obj: KmemleakObject) -> ObjectRecord:
        """An :class:`ObjectRecord` snapshot of *obj*."""
        _check_obj(obj)
        tree = "phys" if obj.flags & OBJECT_PHYS else (
            "percpu" if obj.flags & OBJECT_PERCPU else "virtual")
        return ObjectRecord(
            pointer=obj.pointer, size=obj.size, min_count=obj.min_count, count=obj.count,
            flags=obj.flags, excess_ref=obj.excess_ref, checksum=obj.checksum,
            jiffies=obj.jiffies, pid=obj.pid, comm=obj.comm,
            areas=tuple((a.start, a.size) for a in obj.areas), trace=obj.trace,
            color=obj.color, reported=bool(obj.flags & OBJECT_REPORTED), tree=tree,
        )

    def _check(self) -> None:
        """Assert the index invariants (trees sorted, disjoint, matching ``object_list``)."""
        n = 0
        for tree in (self.object_tree_root, self.object_phys_tree_root,
                     self.object_percpu_tree_root):
            tree._check()
            for obj in tree:
                assert obj.serial in self.object_list, obj
                assert obj.flags & OBJECT_ALLOCATED, obj
                n += 1
        assert n == len(self.object_list), (n, len(self.object_list))


def msecs_to_jiffies(msecs: int, hz: int) -> int:
    """``msecs_to_jiffies``: rounds up; a negative ``int`` gives ``MAX_JIFFY_OFFSET``.

    >>> msecs_to_jiffies(5000, 250), msecs_to_jiffies(1, 250)
    (1250, 1)
    """
    if msecs & 0xFFFFFFFF >= 1 << 31:
        return (((1 << 63) - 1) >> 1) - 1
    return -(-msecs * hz // 1000)


def time_before_eq(a: int, b: int, word_mask: int) -> bool:
    """Wrap-safe ``time_before_eq(a, b)`` on ``unsigned long`` jiffies."""
    bits = word_mask.bit_length()
    diff = (b - a) & word_mask
    return diff < (1 << (bits - 1))
