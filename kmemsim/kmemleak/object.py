"""The per-object record (``struct kmemleak_object``), its flags and colours.

Colour is not stored: as in ``mm/kmemleak.c`` it is derived from ``count``
and ``min_count`` by two predicates:

* white (``color_white``): ``count < min_count`` (and ``count != -1``);
* gray (``color_gray``): ``min_count != -1`` and ``count >= min_count``;
* black: ``min_count == -1``, neither white nor gray: never scanned, never
  reported, references to it change nothing.

>>> o = KmemleakObject(0xffff888000100000, 32, 1, serial=1)
>>> color_white(o), color_gray(o)
(True, False)
>>> o.count = 1
>>> color_gray(o)
True
"""

from __future__ import annotations

import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import faults

# Object flags (kmemleak.c).
OBJECT_ALLOCATED = 1 << 0
OBJECT_REPORTED = 1 << 1
OBJECT_NO_SCAN = 1 << 2
OBJECT_FULL_SCAN = 1 << 3
OBJECT_PHYS = 1 << 4
OBJECT_PERCPU = 1 << 5

# Special min_count values.
KMEMLEAK_GREY = 0
KMEMLEAK_BLACK = -1

#: Frames kept per allocation backtrace.
MAX_TRACE = 16
#: Minimum age, in ms, before a white object can be reported (the docs still say 1000).
MSECS_MIN_AGE = 5000
#: Delay of the first automatic scan, first scan-thread instance only.
SECS_FIRST_SCAN = 60
#: Default period of automatic scans.
SECS_SCAN_WAIT = 600
#: Large objects and per-CPU sections are scanned in chunks of this size.
MAX_SCAN_SIZE = 4096
#: Task name length, including the terminating NUL.
TASK_COMM_LEN = 16

FLAG_NAMES = {
    OBJECT_ALLOCATED: "OBJECT_ALLOCATED",
    OBJECT_REPORTED: "OBJECT_REPORTED",
    OBJECT_NO_SCAN: "OBJECT_NO_SCAN",
    OBJECT_FULL_SCAN: "OBJECT_FULL_SCAN",
    OBJECT_PHYS: "OBJECT_PHYS",
    OBJECT_PERCPU: "OBJECT_PERCPU",
}


def crc32(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """The kernel's ``crc32(seed, buf, len)`` (``crc32_le``): no pre/post inversion.

    zlib inverts before and after, so the kernel value is recovered by undoing
    both.  All-zero input therefore has CRC 0, which is why all-zero leaks are
    reported one scan earlier than others.

    >>> crc32(bytes(32))
    0
    >>> hex(crc32(b"\\x6b" * 31 + b"\\xa5"))
    '0x362c6625'
    """
    if faults.ACTIVE and "zlib_crc" in faults.ACTIVE:
        return zlib.crc32(data, crc)
    return zlib.crc32(data, crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ScanArea:
    """One ``kmemleak_scan_area``: only ``[start, start+size)`` of the object is scanned."""

    start: int
    size: int


#: numpy's dtype for each :mod:`array` type code of the columns.
_NATIVE: dict[str, type[np.integer[Any]]] = {
    "Q": np.uint64, "q": np.int64, "I": np.uint32, "i": np.int32}


def _native(col: array[int]) -> npt.NDArray[np.integer[Any]]:
    """A zero-copy numpy view of a column, in its own width (release it soon: a column
    with a live view cannot grow)."""
    return np.frombuffer(col, dtype=_NATIVE[col.typecode])


class ObjectStore:
    """Every ``kmemleak_object`` of one detector as columns, one row per object.

    A real kernel tracks millions of objects, and the scan touches all of
    them.  Numeric fields live in :class:`array.array` columns (8 bytes per
    object each, plain ``int`` on access, readable by numpy without a copy);
    ``comm``, ``trace`` and ``areas`` in lists of shared values.  Rows are in
    creation order, so live rows in row order are ``object_list`` order.  A
    :class:`KmemleakObject` is a view of one row, made when first asked for
    (:meth:`view`) and kept, so the same row always gives the same object.

    A removed object is detached (its values copied into a one-row store of
    its own), so its row is free; :meth:`compact` drops free rows, and the
    owner renumbers what holds rows (the trees) with the map it returns.

    >>> store = ObjectStore()
    >>> o = store.add(0xffff888000100000, 32, 1, serial=7)
    >>> o.count += 1
    >>> store.count[o._row], store.live_count, store.view(0) is o
    (1, 1, True)
    """

    #: Numeric columns and their :mod:`array` type codes: "Q"/"q" 64-bit unsigned/signed,
    #: "I"/"i" 32-bit where the kernel's field is an ``int`` or a CRC (a store restored
    #: from an older save may hold 64-bit ones: readers go by each array's own code).
    COLUMNS = (("pointer", "Q"), ("size", "Q"), ("min_count", "q"), ("count", "i"),
               ("flags", "I"), ("excess_ref", "Q"), ("checksum", "I"), ("jiffies", "Q"),
               ("pid", "i"), ("serial", "q"))

    __slots__ = ("areas", "checksum", "comm", "count", "crc_gen", "excess_ref", "flags",
                 "jiffies", "live", "live_count", "min_count", "objects", "pid", "pointer",
                 "serial", "size", "trace")

    #: Columns whose change makes a row's checksum date (:attr:`crc_gen`) void.
    CRC_INPUTS = ("pointer", "size", "checksum")

    def __init__(self) -> None:
        self.pointer = array("Q")
        self.size = array("Q")
        self.min_count = array("q")
        self.count = array("i")
        self.flags = array("I")
        self.excess_ref = array("Q")
        self.checksum = array("I")
        self.jiffies = array("Q")
        self.pid = array("i")
        self.serial = array("q")
        self.comm: list[str] = []
        self.trace: list[tuple[int, ...]] = []
        # a tuple per row, most recent first: most objects have none, and () is shared
        self.areas: list[tuple[ScanArea, ...]] = []
        self.live = bytearray()
        """1 for a row in ``object_list``; 0 for a row freed (or never linked)."""
        self.objects: list[KmemleakObject | None] = []
        """Each row's view once made (``None`` before, and once the row is freed)."""
        self.live_count = 0
        self.crc_gen: array[int] | None = None
        """Per row, the memory's ``write_gen`` when ``checksum`` was last found equal to
        the CRC of the object's bytes (0: never): the fast scan skips the CRC of an
        object no write has touched since.  ``None``, or shorter than the store
        (rows added since), means those rows are undated; :meth:`crc_gens` pads."""

    def __len__(self) -> int:
        return len(self.serial)

    def crc_gens(self) -> array[int]:
        """:attr:`crc_gen`, padded with zeros (undated) to one entry a row.  ``O(n)``
        when it grows, else ``O(1)``."""
        gens = getattr(self, "crc_gen", None)  # (unset in a store restored from an older save)
        if gens is None:
            gens = self.crc_gen = array("Q")
        missing = len(self.serial) - len(gens)
        if missing > 0:
            gens.frombytes(bytes(8 * missing))
        return gens

    def _crc_void(self, row: int) -> None:
        """A checksum input of *row* changed: its checksum date no longer holds."""
        gens = getattr(self, "crc_gen", None)
        if gens is not None and row < len(gens):
            gens[row] = 0

    def view(self, row: int) -> KmemleakObject:
        """The object of *row* (made on first use, then always the same).  ``O(1)``."""
        obj = self.objects[row]
        if obj is None:
            obj = KmemleakObject.__new__(KmemleakObject)
            obj._store, obj._row = self, row
            self.objects[row] = obj
        return obj

    def add(self, pointer: int, size: int, min_count: int, *, serial: int,
            flags: int = OBJECT_ALLOCATED, jiffies: int = 0, pid: int = 0,
            comm: str = "swapper/0", trace: tuple[int, ...] = ()) -> KmemleakObject:
        """Append one row (live, count 0, checksum 0) and return its view.  ``O(1)`` amortised."""
        self.pointer.append(pointer)
        self.size.append(size)
        self.min_count.append(min_count)
        self.count.append(0)
        self.flags.append(flags)
        self.excess_ref.append(0)
        self.checksum.append(0)
        self.jiffies.append(jiffies)
        self.pid.append(pid)
        self.serial.append(serial)
        self.comm.append(comm)
        self.trace.append(trace)
        self.areas.append(())
        self.live.append(1)
        self.objects.append(None)
        self.live_count += 1
        return self.view(len(self.serial) - 1)

    def add_many(self, pointers: Sequence[int] | npt.NDArray[np.uint64],
                 sizes: Sequence[int] | npt.NDArray[np.uint64], min_count: int, *,
                 first_serial: int, flags: int, jiffies: int, pid: int, comm: str,
                 trace: tuple[int, ...]) -> range:
        """Append one row per pointer (consecutive serials, one context); return the rows.

        The same rows as :meth:`add` called once per pointer, without making
        their views.  ``O(m)`` for *m* rows.
        """
        m = len(pointers)
        row0 = len(self.serial)
        for col, values in ((self.pointer, pointers), (self.size, sizes)):
            if isinstance(values, np.ndarray):  # at C speed, from the bytes
                col.frombytes(values.astype(np.uint64, copy=False).tobytes())
            else:
                col.extend(values)
        for col, value in ((self.min_count, min_count), (self.count, 0), (self.flags, flags),
                           (self.excess_ref, 0), (self.checksum, 0), (self.jiffies, jiffies),
                           (self.pid, pid)):
            col.extend(array(col.typecode, [value]) * m)  # C speed: no iterator
        self.serial.frombytes(np.arange(first_serial, first_serial + m, dtype=np.int64).tobytes())
        self.comm += [comm] * m
        self.trace += [trace] * m
        self.areas += [()] * m
        self.live += b"\x01" * m
        self.objects += [None] * m
        self.live_count += m
        return range(row0, row0 + m)

    def unlink(self, obj: KmemleakObject) -> None:
        """Take *obj*'s row out of ``object_list``; *obj* keeps its values in a store of its own.

        Runtime complexity: ``O(1)``.
        """
        row = obj._row
        if obj._store is not self or not self.live[row]:
            return
        obj._store, obj._row = self._detached(row), 0
        obj._store.objects[0] = obj
        self.live[row] = 0
        self.objects[row] = None
        self.live_count -= 1

    def _detached(self, row: int) -> ObjectStore:
        one = ObjectStore()
        for name, _ in self.COLUMNS:
            getattr(one, name).append(getattr(self, name)[row])
        one.comm.append(self.comm[row])
        one.trace.append(self.trace[row])
        one.areas.append(self.areas[row])
        one.live.append(0)
        one.objects.append(None)
        return one

    def wants_compaction(self) -> bool:
        """More free rows than live ones (and more than a few): time to :meth:`compact`."""
        dead = len(self.serial) - self.live_count
        return dead > 1024 and dead > self.live_count

    def compact(self) -> npt.NDArray[np.int64]:
        """Drop the free rows, keeping order; views follow their rows.  ``O(n)``.

        Returns the map from old rows to new ones (-1 for a dropped row), for
        whatever else holds rows.
        """
        keep = self.live_rows()
        new_row = np.full(len(self.serial), -1, dtype=np.int64)
        new_row[keep] = np.arange(len(keep), dtype=np.int64)
        for name, code in self.COLUMNS:
            col = array(code)
            col.frombytes(_native(getattr(self, name))[keep].astype(_NATIVE[code]).tobytes())
            setattr(self, name, col)
        rows = keep.tolist()
        self.comm = [self.comm[r] for r in rows]
        self.trace = [self.trace[r] for r in rows]
        self.areas = [self.areas[r] for r in rows]
        self.objects = [self.objects[r] for r in rows]
        for new, obj in enumerate(self.objects):
            if obj is not None:
                obj._row = new
        self.live = bytearray(b"\x01") * len(rows)
        self.crc_gen = None  # (rare: every row undated once, recomputed at the next scan)
        return new_row

    def live_rows(self) -> npt.NDArray[np.int64]:
        """The rows in ``object_list``, in order.  ``O(n)`` (numpy)."""
        return np.flatnonzero(np.frombuffer(self.live, dtype=np.uint8)).astype(np.int64)

    def live_objects(self) -> list[KmemleakObject]:
        """The views of the live rows, in order (made for those not made yet).  ``O(n)``."""
        return list(map(self.view, self.live_rows().tolist()))

    def column(self, name: str, rows: npt.NDArray[np.int64] | None = None) -> npt.NDArray[Any]:
        """A numpy copy of one numeric column (uint64 or int64): all rows, or *rows*
        (distinct and ascending, as :meth:`live_rows` and its subsets are).

        A copy, not a view: a live view would stop the column from growing.
        ``O(n)``, or ``O(len(rows))``.
        """
        view = _native(getattr(self, name))
        try:
            # every row asked for, in order (no free rows): a plain copy beats a gather
            out = view.copy() if rows is None or len(rows) == len(view) else view[rows]
        finally:
            del view  # release the buffer at once so the column can grow again
        # 64-bit either way: uint32 mixed with int64 stays exact, int32 with uint64 would not
        return out.astype(np.uint64 if out.dtype.kind == "u" else np.int64, copy=False)

    def set_column(self, name: str, rows: npt.NDArray[np.int64], values: npt.NDArray[Any]
                   ) -> None:
        """Write *values* into the column at *rows* in place.  ``O(len(rows))`` (numpy)."""
        view = _native(getattr(self, name))
        try:
            view[rows] = values
        finally:
            del view  # release the buffer at once so the column can grow again
        if name in self.CRC_INPUTS and getattr(self, "crc_gen", None) is not None:
            gens = np.frombuffer(self.crc_gens(), dtype=np.uint64)
            gens[rows] = 0
            del gens

    def row_of(self, serial: int) -> int | None:
        """The live row holding *serial*, or ``None``.  ``O(log(n))``."""
        row = bisect_left(self.serial, serial)
        if row < len(self.serial) and self.serial[row] == serial and self.live[row]:
            return row
        return None


class ObjectList:
    """``object_list``: the live objects in creation order, by serial (a read-only view).

    >>> store = ObjectStore()
    >>> a = store.add(0x1000, 8, 1, serial=1); b = store.add(0x2000, 8, 1, serial=2)
    >>> store.unlink(a)
    >>> ol = ObjectList(store)
    >>> len(ol), 2 in ol, 1 in ol, ol[2] is b
    (1, True, False, True)
    """

    __slots__ = ("store",)

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return self.store.live_count

    def __contains__(self, serial: object) -> bool:
        return type(serial) is int and self.store.row_of(serial) is not None

    def __getitem__(self, serial: int) -> KmemleakObject:
        row = self.store.row_of(serial)
        if row is None:
            raise KeyError(serial)
        return self.store.view(row)

    def get(self, serial: int, default: KmemleakObject | None = None) -> KmemleakObject | None:
        row = self.store.row_of(serial)
        return default if row is None else self.store.view(row)

    def __iter__(self) -> Iterator[int]:
        return iter(self.keys())

    def keys(self) -> list[int]:
        return self.store.column("serial")[self.store.live_rows()].tolist()  # type: ignore[no-any-return]

    def values(self) -> list[KmemleakObject]:
        """The live objects in order (a new list: safe to change the kernel while iterating)."""
        return self.store.live_objects()

    def items(self) -> list[tuple[int, KmemleakObject]]:
        return [(o.serial, o) for o in self.store.live_objects()]


class KmemleakObject:
    """kmemleak's metadata for one tracked memory block: a view of one row of an
    :class:`ObjectStore`.

    The field names are the kernel's.  ``trace`` is the tuple of return
    addresses of the allocation backtrace (the stack-depot entry); ``serial``
    orders objects by creation, which is ``object_list`` order.  Built
    directly, an object gets a one-row store of its own.
    """

    __slots__ = ("_row", "_store")

    _store: ObjectStore
    _row: int

    def __init__(
        self,
        pointer: int,
        size: int,
        min_count: int,
        *,
        serial: int,
        flags: int = OBJECT_ALLOCATED,
        jiffies: int = 0,
        pid: int = 0,
        comm: str = "swapper/0",
        trace: tuple[int, ...] = (),
    ) -> None:
        store = ObjectStore()
        store.add(pointer, size, min_count, serial=serial, flags=flags, jiffies=jiffies,
                  pid=pid, comm=comm, trace=trace)
        store.objects[0] = self  # this object, not the view add() made, is row 0's view
        self._store, self._row = store, 0

    # One property per field: the column, at this object's row.
    @property
    def pointer(self) -> int:
        return self._store.pointer[self._row]

    @pointer.setter
    def pointer(self, value: int) -> None:
        self._store.pointer[self._row] = value
        self._store._crc_void(self._row)

    @property
    def size(self) -> int:
        return self._store.size[self._row]

    @size.setter
    def size(self, value: int) -> None:
        self._store.size[self._row] = value
        self._store._crc_void(self._row)

    @property
    def min_count(self) -> int:
        return self._store.min_count[self._row]

    @min_count.setter
    def min_count(self, value: int) -> None:
        self._store.min_count[self._row] = value

    @property
    def count(self) -> int:
        return self._store.count[self._row]

    @count.setter
    def count(self, value: int) -> None:
        self._store.count[self._row] = value

    @property
    def flags(self) -> int:
        return self._store.flags[self._row]

    @flags.setter
    def flags(self, value: int) -> None:
        self._store.flags[self._row] = value

    @property
    def excess_ref(self) -> int:
        return self._store.excess_ref[self._row]

    @excess_ref.setter
    def excess_ref(self, value: int) -> None:
        self._store.excess_ref[self._row] = value

    @property
    def checksum(self) -> int:
        return self._store.checksum[self._row]

    @checksum.setter
    def checksum(self, value: int) -> None:
        self._store.checksum[self._row] = value
        self._store._crc_void(self._row)

    @property
    def jiffies(self) -> int:
        return self._store.jiffies[self._row]

    @jiffies.setter
    def jiffies(self, value: int) -> None:
        self._store.jiffies[self._row] = value

    @property
    def pid(self) -> int:
        return self._store.pid[self._row]

    @pid.setter
    def pid(self, value: int) -> None:
        self._store.pid[self._row] = value

    @property
    def serial(self) -> int:
        return self._store.serial[self._row]

    @property
    def comm(self) -> str:
        return self._store.comm[self._row]

    @comm.setter
    def comm(self, value: str) -> None:
        self._store.comm[self._row] = value

    @property
    def trace(self) -> tuple[int, ...]:
        return self._store.trace[self._row]

    @trace.setter
    def trace(self, value: tuple[int, ...]) -> None:
        self._store.trace[self._row] = value

    @property
    def areas(self) -> tuple[ScanArea, ...]:
        """The scan areas, most recent first (``list_add`` puts a new one at the head)."""
        return self._store.areas[self._row]

    @areas.setter
    def areas(self, value: tuple[ScanArea, ...]) -> None:
        self._store.areas[self._row] = value

    @property
    def color(self) -> str:
        """``"white"``, ``"gray"`` or ``"black"``, from the two predicates."""
        if color_white(self):
            return "white"
        if color_gray(self):
            return "gray"
        return "black"

    @property
    def flag_names(self) -> list[str]:
        """The names of the set flags, lowest bit first."""
        return [name for bit, name in FLAG_NAMES.items() if self.flags & bit]

    def __repr__(self) -> str:
        return (
            f"<kmemleak_object {self.pointer:#x} size={self.size} min_count={self.min_count} "
            f"count={self.count} flags={self.flags:#x} {self.color}>"
        )

    def __str__(self) -> str:
        kind = " (percpu)" if self.flags & OBJECT_PERCPU else (
            " (phys)" if self.flags & OBJECT_PHYS else "")
        return (
            f"object{kind} 0x{self.pointer:08x} (size {self.size}), {self.color}, "
            f"count {self.count}/{self.min_count}, flags {'|'.join(self.flag_names) or '0'}, "
            f'allocated by "{self.comm}" pid {self.pid} at jiffies {self.jiffies}'
        )


def color_white(obj: KmemleakObject) -> bool:
    """White: fewer references found than ``min_count`` (a leak candidate)."""
    return obj.count != KMEMLEAK_BLACK and obj.count < obj.min_count


def color_gray(obj: KmemleakObject) -> bool:
    """Gray: referenced at least ``min_count`` times (or ``min_count == 0``)."""
    return obj.min_count != KMEMLEAK_BLACK and obj.count >= obj.min_count


def paint_it(obj: KmemleakObject, color: int) -> None:
    """``__paint_it``: set ``min_count``; black also sets ``OBJECT_NO_SCAN``."""
    obj.min_count = color
    if color == KMEMLEAK_BLACK:
        obj.flags |= OBJECT_NO_SCAN
