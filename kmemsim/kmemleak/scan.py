"""The reference scan: ``kmemleak_scan()`` phase by phase, as in ``mm/kmemleak.c``.

The phases, in order (spec section 5):

1. capture ``jiffies_last_scan`` and whiten: ``count = 0`` for every object;
   ``min_count == 0`` objects go straight onto the gray list; phys objects
   outside lowmem are painted black;
2. scan the direct roots: per-CPU static sections, ``struct page``
   descriptors, task stacks (``stack=on``);
3. ``scan_gray_list``: drain the FIFO, scanning each gray object;
4. the checksum pass: a white object whose CRC changed is grayed for this
   scan; then drain again;
5. report: white, allocated, old enough and not yet ``OBJECT_REPORTED``.

This engine reads word by word and is written to be read beside the kernel.

>>> from kmemsim import Kernel
>>> k = Kernel()
>>> p = k.kzalloc(64)
>>> k.sleep(6)
>>> result = k.kmemleak.scan()
>>> [hex(o.pointer) == hex(p) for o in result.new_leaks]     # all-zero: reported at once
[True]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import numpy.typing as npt

from . import faults
from .object import (
    KMEMLEAK_BLACK,
    MAX_SCAN_SIZE,
    OBJECT_ALLOCATED,
    OBJECT_FULL_SCAN,
    OBJECT_NO_SCAN,
    OBJECT_PERCPU,
    OBJECT_PHYS,
    OBJECT_REPORTED,
    KmemleakObject,
    ObjectStore,
    color_gray,
    color_white,
    crc32,
    paint_it,
)

if TYPE_CHECKING:
    from .hooks import Kmemleak, ObjectRecord


@dataclass(frozen=True, slots=True)
class GrayedBy:
    """The word that turned an object gray: where it was and what it held.

    ``holder`` is the pointer of the object whose memory held the word, or
    ``None`` for a direct root (stack, per-CPU section, ``struct page``);
    ``root`` names the root kind in that case.
    """

    address: int
    value: int
    holder: int | None
    root: str | None = None


class GrayedByMap(Mapping[int, GrayedBy]):
    """Object pointer to the :class:`GrayedBy` word that grayed it, built on lookup.

    The fast engine grays tens of thousands of objects per scan and an
    explanation asks about a few, so it keeps numpy columns (the grayed
    objects' pointers, the word's address and value, and its source: an index
    into *holders*, or ``-1 - i`` for root range *i*) and builds the pointer
    index on first use.
    """

    __slots__ = ("_addresses", "_holders", "_index", "_pointers", "_root_kinds", "_sources",
                 "_values")

    def __init__(self, pointers: Any, addresses: Any, values: Any, sources: Any,
                 holders: Any, root_kinds: list[str]) -> None:
        self._pointers = pointers
        self._addresses = addresses
        self._values = values
        self._sources = sources
        self._holders = holders
        self._root_kinds = root_kinds
        self._index: dict[int, int] | None = None

    def _positions(self) -> dict[int, int]:
        if self._index is None:
            self._index = {p: i for i, p in enumerate(self._pointers.tolist())}
        return self._index

    def __getitem__(self, pointer: int) -> GrayedBy:
        i = self._positions()[pointer]
        source = int(self._sources[i])
        address, value = int(self._addresses[i]), int(self._values[i])
        if source < 0:
            return GrayedBy(address, value, None, self._root_kinds[-1 - source])
        return GrayedBy(address, value, int(self._holders[source]))

    def __contains__(self, pointer: object) -> bool:
        return pointer in self._positions()

    def __iter__(self) -> Iterator[int]:
        return iter(self._positions())

    def __len__(self) -> int:
        return len(self._pointers)


@dataclass(frozen=True, slots=True)
class RootRange:
    """One range the scan read as a direct root."""

    start: int
    end: int
    kind: str


@dataclass(frozen=True)
class ScanResult:
    """What one scan found (a value: later scans do not change it).

    ``new_leaks`` are the objects this scan flagged ``OBJECT_REPORTED``;
    ``unreferenced`` all objects a debugfs read would list right after it.
    """

    jiffies: int
    new_leaks: Sequence[ObjectRecord]
    unreferenced: Sequence[ObjectRecord]
    checksum_spared: tuple[int, ...]
    """Pointers of white objects the checksum pass grayed for this scan."""
    too_young: tuple[int, ...]
    """Pointers of white objects not reported only because of the minimum age."""
    gray: int
    white: int
    black: int
    words_scanned: int
    root_ranges: tuple[RootRange, ...]
    grayed_by: Mapping[int, GrayedBy] = field(repr=False)
    interrupted: bool = False
    engine: str = "reference"

    def __str__(self) -> str:
        return (f"scan at jiffies {self.jiffies}: {len(self.new_leaks)} new suspected leaks, "
                f"{len(self.unreferenced)} listed; {self.gray} gray, {self.white} white, "
                f"{self.black} black; {len(self.checksum_spared)} spared by the checksum pass, "
                f"{len(self.too_young)} too young; {self.words_scanned} words read")


ScanEvent = tuple[str, object]


class _Scanner:
    """One run of ``kmemleak_scan`` over a :class:`Kmemleak`'s state."""

    def __init__(self, kl: Kmemleak, observer: Callable[[str, object], None] | None) -> None:
        self.kl = kl
        self.mem = kl.k.memory
        self.untag = kl.k.arch.untag
        self.gray_list: deque[KmemleakObject] = deque()
        self.words = 0
        self.grayed_by: dict[int, GrayedBy] = {}
        self.observer = observer
        self.roots: list[RootRange] = []
        self._where: tuple[int | None, str | None] = (None, None)

    def emit(self, kind: str, payload: object) -> None:
        if self.observer is not None:
            self.observer(kind, payload)

    def scan_should_stop(self) -> bool:
        return not self.kl.kmemleak_enabled

    # -- the word loop ---------------------------------------------------
    def update_refs(self, obj: KmemleakObject, p: int, w: int) -> None:
        if not color_white(obj):
            return
        obj.count += 1
        if color_gray(obj):
            holder, root = self._where
            self.grayed_by[obj.serial] = GrayedBy(p, w, holder, root)
            self.gray_list.append(obj)
            self.emit("gray", obj)

    def scan_pointer(self, scanned: KmemleakObject | None, p: int, pointer: int,
                     percpu: bool) -> None:
        kl = self.kl
        untagged = self.untag(pointer)
        # faults.ACTIVE is empty in normal runs: each guard costs one truthiness test
        if percpu:
            if not kl.min_percpu_addr <= untagged < kl.max_percpu_addr and not (
                    faults.ACTIVE and "windows_not_applied" in faults.ACTIVE):
                return
            tree = kl.object_percpu_tree_root
        else:
            if not kl.min_addr <= untagged < kl.max_addr and not (
                    faults.ACTIVE and "windows_not_applied" in faults.ACTIVE):
                return
            tree = kl.object_tree_root
        obj = tree.lookup(untagged)
        if obj is None and faults.ACTIVE and "end_inclusive" in faults.ACTIVE:
            obj = tree.lookup(untagged - 1)
        if obj is None or (obj is scanned and not (
                faults.ACTIVE and "self_references_counted" in faults.ACTIVE)):
            return  # nothing there, or a self-reference
        if color_gray(obj):
            if faults.ACTIVE and "no_saturation" in faults.ACTIVE:
                obj.count += 1
                return
            excess_ref = obj.excess_ref  # saturated: only forward the surplus
            if faults.ACTIVE and "excess_ref_ignored" in faults.ACTIVE:
                excess_ref = 0
        else:
            excess_ref = 0
            self.update_refs(obj, p, pointer)
        if excess_ref:
            target = kl._lookup_object(excess_ref, False)
            if target is None or target is scanned:
                return
            self.update_refs(target, p, pointer)

    def scan_block(self, start: int, end: int, scanned: KmemleakObject | None) -> None:
        """Read the aligned whole words of ``[start, end)`` and count what they point to."""
        for p, w in self.mem.words(self.untag(start), self.untag(end)):
            if self.scan_should_stop():
                break
            self.words += 1
            self.scan_pointer(scanned, p, w, False)
            self.scan_pointer(scanned, p, w, True)

    # -- objects ---------------------------------------------------------
    def scan_object(self, obj: KmemleakObject) -> None:
        if not obj.flags & OBJECT_ALLOCATED or (obj.flags & OBJECT_NO_SCAN and not (
                faults.ACTIVE and "no_scan_ignored" in faults.ACTIVE)):
            return
        self._where = (obj.pointer, None)
        self.emit("scan_object", obj)
        k = self.kl.k
        if obj.flags & OBJECT_PERCPU:
            for cpu in k.possible_cpus():
                start = obj.pointer + k.per_cpu_offset(cpu)
                self.scan_block(start, start + obj.size, obj)
                if not obj.flags & OBJECT_ALLOCATED:
                    break
        elif not obj.areas or obj.flags & OBJECT_FULL_SCAN or (
                faults.ACTIVE and "scan_areas_ignored" in faults.ACTIVE):
            start = k.phys_to_virt(obj.pointer) if obj.flags & OBJECT_PHYS else obj.pointer
            end = start + obj.size
            while start < end:
                nxt = min(start + MAX_SCAN_SIZE, end)
                self.scan_block(start, nxt, obj)
                start = nxt
                if not obj.flags & OBJECT_ALLOCATED:
                    break
        else:
            for area in obj.areas:
                self.scan_block(area.start, area.start + area.size, obj)

    def scan_gray_list(self) -> None:
        """Drain the FIFO; objects appended meanwhile are scanned in the same drain."""
        gl = self.gray_list
        while gl:
            if self.scan_should_stop():
                gl.clear()
                return
            self.scan_object(gl.popleft())

    # -- the whole scan ----------------------------------------------------
    def run(self) -> ScanResult:
        kl = self.kl
        self.emit("phase", "whiten")
        self.gray_list.extend(whiten(kl))

        self.emit("phase", "roots")
        roots = direct_root_ranges(kl)
        for r in roots:
            self.roots.append(r)
            self._where = (None, r.kind)
            if r.kind == "percpu":
                self.scan_large_block_range(r.start, r.end)
            else:
                self.scan_block(r.start, r.end, None)

        self.emit("phase", "scan_gray_list")
        self.scan_gray_list()

        # the checksum pass grays white objects whose contents changed; then drain again
        self.emit("phase", "checksum")
        spared: list[int] = []
        skip = bool(faults.ACTIVE) and "checksum_pass_skipped" in faults.ACTIVE
        for obj in [] if skip else list(kl.object_list.values()):
            if self.scan_should_stop():
                break
            if color_white(obj) and obj.flags & OBJECT_ALLOCATED and update_checksum(kl, obj):
                obj.count = obj.min_count
                self.gray_list.append(obj)
                spared.append(obj.pointer)
                self.emit("modified", obj)
        self.scan_gray_list()

        self.emit("phase", "report")
        grayed = {o.pointer: self.grayed_by[o.serial] for o in kl.object_list.values()
                  if o.serial in self.grayed_by}
        return report(kl, spared, self.words, self.roots, grayed, "reference")

    def scan_large_block_range(self, start: int, end: int) -> None:
        """``scan_large_block``: a root range in ``MAX_SCAN_SIZE`` chunks."""
        while start < end and not self.scan_should_stop():
            nxt = min(start + MAX_SCAN_SIZE, end)
            self.scan_block(start, nxt, None)
            start = nxt


def whiten(kl: Kmemleak) -> list[KmemleakObject]:
    """Step 1: capture ``jiffies_last_scan``, reset every count; return the initial gray list.

    Phys objects outside lowmem are painted black here, once and for all.
    Runtime complexity: ``O(n)`` (numpy over the store's columns).
    """
    k = kl.k
    kl.jiffies_last_scan = k.jiffies & k.arch.word_mask
    min_low_pfn, max_low_pfn = k.lowmem_pfn_range()
    store = kl.store
    rows = store.live_rows()
    flags = store.column("flags", rows)
    phys = np.flatnonzero((flags & OBJECT_PHYS != 0) & (flags & OBJECT_NO_SCAN == 0))
    for i in phys.tolist():  # few: memblock reservations
        obj = store.view(int(rows[i]))
        pfn_lo, pfn_hi = obj.pointer >> 12, (obj.pointer + obj.size) >> 12
        if pfn_lo < min_low_pfn or pfn_hi > max_low_pfn:
            paint_it(obj, KMEMLEAK_BLACK)
    store.set_column("count", rows, np.zeros(len(rows), dtype=np.int64))
    # color_gray with count 0: min_count == 0
    gray = rows[store.column("min_count", rows) == 0]
    return list(map(store.view, gray.tolist()))


def direct_root_ranges(kl: Kmemleak) -> list[RootRange]:
    """Step 2's ranges, in the kernel's order: per-CPU sections, ``struct page``s, stacks.

    Runtime complexity: ``O(R)`` for ``R`` ranges (CPUs, memory sections, tasks).
    """
    k = kl.k
    roots = [RootRange(s, e, "percpu") for s, e in k.percpu_static_sections()]
    roots += [RootRange(s, e, "struct page") for s, e in k.struct_page_ranges()]
    if kl.kmemleak_stack_scan:
        roots += [RootRange(s, e, "stack") for s, e in k.task_stacks()]
    return roots


def update_checksum(kl: Kmemleak, obj: KmemleakObject) -> bool:
    """Store the object's kernel CRC32; True when it differs from the stored one.

    Runtime complexity: ``O(size)`` (C speed: ``zlib.crc32``).

    Per-CPU objects XOR the CRCs of every CPU's copy; phys objects are never
    checksummed (they are never white).
    """
    k = kl.k
    old = obj.checksum
    if obj.flags & OBJECT_PHYS:
        return False
    mem = k.memory
    if obj.flags & OBJECT_PERCPU:
        crc = 0
        for cpu in k.possible_cpus():
            crc ^= crc32(mem.read(obj.pointer + k.per_cpu_offset(cpu), obj.size))
        obj.checksum = crc
    else:
        obj.checksum = crc32(mem.read(k.arch.untag(obj.pointer), obj.size))
    return obj.checksum != old


def unreferenced_rows(kl: Kmemleak, rows: npt.NDArray[np.int64]
                      ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """:meth:`Kmemleak.unreferenced_object` over *rows* of the store, and which of them are
    white: ``(unreferenced, white)``.  ``O(len(rows))`` (numpy)."""
    store = kl.store
    count = store.column("count", rows)
    min_count = store.column("min_count", rows)
    white = (count != KMEMLEAK_BLACK) & (count < min_count)
    allocated = store.column("flags", rows) & OBJECT_ALLOCATED != 0
    if faults.ACTIVE and "min_age_ignored" in faults.ACTIVE:
        return white & allocated, white
    # time_before_eq(jiffies + jiffies_min_age, jiffies_last_scan) on unsigned long
    mask = np.uint64(kl.k.arch.word_mask)
    born = (store.column("jiffies", rows) + np.uint64(kl.jiffies_min_age)) & mask
    diff = (np.uint64(kl.jiffies_last_scan) - born) & mask
    old = diff < np.uint64(1 << (kl.k.arch.word_mask.bit_length() - 1))
    return white & allocated & old, white


def listed_rows(kl: Kmemleak) -> npt.NDArray[np.int64]:
    """The store rows a debugfs read lists: reported and still unreferenced, in order.

    Runtime complexity: ``O(N)`` (numpy).
    """
    rows = kl.store.live_rows()
    unref, _ = unreferenced_rows(kl, rows)
    listed: npt.NDArray[np.int64] = rows[unref & (kl.store.column("flags", rows)
                                                  & OBJECT_REPORTED != 0)]
    return listed


def report(kl: Kmemleak, spared: list[int], words: int, roots: list[RootRange],
           grayed_by: Mapping[int, GrayedBy], engine: str) -> ScanResult:
    """Step 5: flag new leaks ``OBJECT_REPORTED``, log the summary, build the result.

    Runtime complexity: ``O(N)`` (numpy over the store's columns); the
    records are built on access (:class:`RecordSnapshot`).
    """
    interrupted = not kl.kmemleak_enabled
    store = kl.store
    rows = store.live_rows()
    unref, white_mask = unreferenced_rows(kl, rows)
    min_count = store.column("min_count", rows)
    white = int(white_mask.sum())
    gray = int(((min_count != KMEMLEAK_BLACK) & (store.column("count", rows) >= min_count)).sum())
    new: npt.NDArray[np.int64] = rows[:0]
    young: list[int] = []
    flags = store.column("flags", rows)
    # what a debugfs read lists (listed_rows): reported and unreferenced; once this scan
    # has flagged its new leaks, that is every unreferenced object
    listed = rows[unref & (flags & OBJECT_REPORTED != 0)] if interrupted else rows[unref]
    if not interrupted:
        new = rows[unref & (flags & OBJECT_REPORTED == 0)]
        store.set_column("flags", new, flags[unref & (flags & OBJECT_REPORTED == 0)]
                         | OBJECT_REPORTED)
        if kl.kmemleak_verbose:
            for r in new.tolist():
                kl.print_unreferenced_to_log(store.view(r))
        young = store.column("pointer", rows[white_mask & ~unref
                                             & (flags & OBJECT_ALLOCATED != 0)]).tolist()
        if len(new):
            kl.kmemleak_found_leaks = True
            kl.info(f"{len(new)} new suspected memory leaks (see /sys/kernel/debug/kmemleak)")
    return ScanResult(
        jiffies=kl.jiffies_last_scan,
        new_leaks=RecordSnapshot(store, new),
        unreferenced=RecordSnapshot(store, listed),
        checksum_spared=tuple(spared),
        too_young=tuple(young),
        gray=gray, white=white, black=len(rows) - white - gray,
        words_scanned=words,
        root_ranges=tuple(roots),
        grayed_by=grayed_by,
        interrupted=interrupted,
        engine=engine,
    )


def _gather(values: list[Any], rows: list[int]) -> list[Any]:
    """``[values[r] for r in rows]`` at C speed."""
    if len(rows) < 2:
        return [values[r] for r in rows]
    return list(itemgetter(*rows)(values))


class RecordSnapshot(Sequence["ObjectRecord"]):
    """The :class:`ObjectRecord` of each of some objects as they were when taken; each
    record is built when first read.

    A scan of a kernel-sized heap can list a hundred thousand leaks, and most
    callers count them or read a few: taking the snapshot copies the rows'
    columns (numpy), not a record per object.  Compares equal to any sequence
    of the same records (a tuple included).
    """

    __slots__ = ("_areas", "_cols", "_comm", "_records", "_trace")

    _FIELDS = ("pointer", "size", "min_count", "count", "flags", "excess_ref", "checksum",
               "jiffies", "pid")

    def __init__(self, store: ObjectStore, rows: npt.NDArray[np.int64]) -> None:
        self._cols = {name: store.column(name, rows) for name in self._FIELDS}
        picked = rows.tolist()
        self._comm, self._trace, self._areas = (_gather(col, picked) for col in
                                                (store.comm, store.trace, store.areas))
        self._records: list[ObjectRecord | None] = [None] * len(picked)

    def __len__(self) -> int:
        return len(self._records)

    @overload
    def __getitem__(self, i: int) -> ObjectRecord: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[ObjectRecord, ...]: ...

    def __getitem__(self, i: int | slice) -> ObjectRecord | tuple[ObjectRecord, ...]:
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(len(self))))
        if not -len(self) <= i < len(self):
            raise IndexError("record index out of range")
        i %= len(self)
        rec = self._records[i]
        if rec is None:
            rec = self._records[i] = self._build(i)
        return rec

    def _build(self, i: int) -> ObjectRecord:
        from .hooks import ObjectRecord

        v = {name: int(col[i]) for name, col in self._cols.items()}
        flags, count, min_count = v["flags"], v["count"], v["min_count"]
        if count != KMEMLEAK_BLACK and count < min_count:
            color = "white"
        elif min_count != KMEMLEAK_BLACK and count >= min_count:
            color = "gray"
        else:
            color = "black"
        tree = "phys" if flags & OBJECT_PHYS else (
            "percpu" if flags & OBJECT_PERCPU else "virtual")
        return ObjectRecord(
            **v, comm=self._comm[i], areas=tuple((a.start, a.size) for a in self._areas[i]),
            trace=self._trace[i], color=color, reported=bool(flags & OBJECT_REPORTED), tree=tree)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(tuple(self))


def kmemleak_scan(kl: Kmemleak, observer: Callable[[str, object], None] | None = None,
                  engine: str = "reference") -> ScanResult:
    """Run one complete scan and return its result.

    ``engine="reference"`` walks the gray list word by word like the kernel;
    ``engine="fast"`` computes the same colours, counts, checksums and
    reports with numpy (:mod:`.fastscan`), falling back to the reference
    walk in the rare states where the kernel's result depends on its order.

    *observer*, if given, is called with ``(event, payload)`` at each phase
    (``"phase"``), each object scanned (``"scan_object"``), each object
    turning gray (``"gray"``) and each object the checksum pass spares
    (``"modified"``): a way to step through a scan when teaching.  It
    implies the reference engine.
    """
    # the faults live in the reference walk: a faulty run must use it; so does a scan
    # while disabled, which whitens and then stops at the first scan_should_stop()
    if engine == "fast" and observer is None and not faults.ACTIVE and kl.kmemleak_enabled:
        from ..memory import paused_gc
        from .fastscan import fast_scan

        # The engine makes few objects, none in a cycle: a collection of the whole heap
        # (a second or more at a million objects) started by one of them is pure waste.
        with paused_gc():
            gray0 = whiten(kl)
            roots = direct_root_ranges(kl)
            # fast_scan decides whether it can answer before it changes anything;
            # whitening again in the reference walk is harmless.
            done = fast_scan(kl, gray0, roots)
            if done is not None:
                spared, grayed_by, words = done
                return report(kl, spared, words, roots, grayed_by, "fast")
    return _Scanner(kl, observer).run()
