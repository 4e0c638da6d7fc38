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
from dataclasses import dataclass

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


class KmemleakObject:
    """kmemleak's metadata for one tracked memory block.

    The field names are the kernel's.  ``trace`` is the tuple of return
    addresses of the allocation backtrace (the stack-depot entry); ``serial``
    orders objects by creation, which is ``object_list`` order.
    """

    __slots__ = (
        "areas",
        "checksum",
        "comm",
        "count",
        "excess_ref",
        "flags",
        "jiffies",
        "min_count",
        "pid",
        "pointer",
        "serial",
        "size",
        "trace",
    )

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
        self.pointer = pointer
        self.size = size
        self.min_count = min_count
        self.count = 0
        self.flags = flags
        self.excess_ref = 0
        self.checksum = 0
        self.jiffies = jiffies
        self.pid = pid
        self.comm = comm
        self.trace = trace
        # a tuple, most recent first: most objects have none, and () is shared
        self.areas: tuple[ScanArea, ...] = ()
        self.serial = serial

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
