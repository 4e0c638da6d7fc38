"""AddressSpace: a sparse simulated kernel address space.

Memory is a set of non-overlapping regions, each a buffer at a base address:
a ``bytearray`` when the caller gives the bytes or the region is small, else
an anonymous private ``mmap`` (:func:`zeroed`), which the host fills with
zero pages on first touch, so mapping costs no memset and untouched simulated
RAM costs no resident memory.  Whatever is not mapped (the gaps, the guard page after every
vmalloc area) faults: reading or writing it raises :class:`~kmemsim.errors.PageFault`
with the kernel's oops wording, never an ``IndexError``.

>>> from kmemsim.layout import X86_64
>>> mem = AddressSpace(X86_64)
>>> _ = mem.map(0xffff888000100000, 4096, "demo")
>>> mem.write_word(0xffff888000100008, 0xffff888000100000)
>>> hex(mem.read_word(0xffff888000100008))
'0xffff888000100000'
>>> mem.read(0xffff888000100000, 2)
b'\\x00\\x00'
"""

from __future__ import annotations

import bisect
import gc
import mmap
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import numpy as np
import numpy.typing as npt

from .errors import KmemsimTypeError, KmemsimValueError, PageFault, check_int
from .layout import Arch

RegionKind = Literal[
    "direct", "vmalloc", "module", "kernel", "stack", "percpu", "vmemmap", "other"
]

_NATIVE_LITTLE = sys.byteorder == "little"

#: The bytes of a region: given ones (a ``bytearray``) or lazily zeroed ones (an
#: ``mmap``).  Both slice to bytes-like copies, take slice assignments of equal
#: length and export a writable buffer (``memoryview``, ``numpy.frombuffer``).
RegionData = bytearray | mmap.mmap

#: Regions of this many bytes or more are mapped lazily (:func:`zeroed`).  Below it a
#: ``bytearray``'s memset is cheaper than a host mapping of its own (and a host
#: mapping is a page at least), and many small regions do not multiply host mappings.
LAZY_MIN_BYTES = 64 * 1024

#: Writes are dated per page of this many bytes (:attr:`Region.page_gen`).
GEN_PAGE_SHIFT = 12


def zeroed(size: int) -> RegionData:
    """*size* zero bytes for a region: an anonymous ``mmap`` from :data:`LAZY_MIN_BYTES` on.

    The mapping is private (copy-on-write): a page read before it is written
    is the host's shared zero page, and a forked worker's writes stay its own.

    >>> type(zeroed(16)).__name__, type(zeroed(1 << 20)).__name__
    ('bytearray', 'mmap')
    >>> m = zeroed(1 << 20); m[8:10] = b"ab"; bytes(m[6:12]), len(m)
    (b'\\x00\\x00ab\\x00\\x00', 1048576)
    """
    if size < LAZY_MIN_BYTES:
        return bytearray(size)
    if hasattr(mmap, "MAP_PRIVATE"):  # POSIX
        return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return mmap.mmap(-1, size)  # pragma: no cover - Windows: pagefile-backed, committed lazily


@contextmanager
def paused_gc() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector for a bulk operation.

    A bulk allocation or store creates a record per object (none of them
    in a reference cycle); each 700 of them would start a collection, and
    the older generations' collections walk the whole heap again and again
    (a third of a 100,000-object build).  The collector runs normally again
    afterwards (unless it was off already); nothing observable changes.

    >>> import gc
    >>> with paused_gc():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Region:
    """One mapped range ``[start, end)`` backed by :attr:`data` (never resized).

    :attr:`page_gen` dates the writes: for each page of ``1 << GEN_PAGE_SHIFT``
    bytes, the :attr:`AddressSpace.write_gen` of the last write that touched
    it (or of the mapping).  ``None`` (a region not mapped by
    :meth:`AddressSpace.map`, or restored from a save that had no dates)
    means undated: any byte may have changed at any time.
    """

    __slots__ = ("data", "end", "kind", "name", "page_gen", "start")

    def __init__(self, start: int, data: RegionData, name: str, kind: RegionKind) -> None:
        self.start = start
        self.end = start + len(data)
        self.data = data
        self.name = name
        self.kind = kind
        self.page_gen: npt.NDArray[np.int64] | None = None

    def __repr__(self) -> str:
        return f"<Region {self.name} {self.start:#x}-{self.end:#x}>"

    def written_since(self, offsets: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64],
                      gens: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """For each range ``[offsets[i], offsets[i] + sizes[i])`` of this region (sizes
        above 0), whether a write or the mapping may have changed it after
        :attr:`AddressSpace.write_gen` was ``gens[i]`` (always, when undated).

        Runtime complexity: ``O(m)`` for *m* ranges of at most two pages each,
        plus the pages of longer ones.

        >>> from kmemsim.layout import X86_64
        >>> mem = AddressSpace(X86_64); r = mem.map(0x10000, 3 * 4096, "r")
        >>> then = mem.write_gen; mem.write_word(0x11008, 5)
        >>> off, size = np.array([0, 4096, 8000], dtype=np.int64), np.array([64, 16, 200])
        >>> r.written_since(off, size, np.full(3, then)).tolist()
        [False, True, True]
        """
        pg = getattr(self, "page_gen", None)
        if pg is None:
            return np.ones(len(offsets), dtype=bool)
        first = offsets >> GEN_PAGE_SHIFT
        last = (offsets + sizes - 1) >> GEN_PAGE_SHIFT
        newest = np.maximum(pg[first], pg[last])
        for i in np.flatnonzero(last - first > 1).tolist():  # ranges over three pages or more
            newest[i] = pg[first[i]:last[i] + 1].max()
        return newest > gens  # type: ignore[no-any-return]


class AddressSpace:
    """Sparse, byte-addressable simulated memory of one architecture.

    Region lookup is a binary search over the sorted region starts:
    Runtime complexity: ``O(log(r))`` for *r* regions.
    """

    #: (the starting value, for an address space restored from an older save)
    write_gen = 1

    def __init__(self, arch: Arch, on_fault: Callable[[PageFault], None] | None = None,
                 on_write: Callable[[int, int], None] | None = None,
                 on_write_words: Callable[[Sequence[int], int], None] | None = None) -> None:
        self.arch = arch
        self._on_write = on_write
        """Told of every write (``addr, length``): the ground truth ends overwritten edges."""
        self._on_write_words = on_write_words
        """Told of a batch of writes of one length at once (``addrs, length``:
        :meth:`write_words`, :meth:`write_each`), else *on_write* hears each."""
        self._starts: list[int] = []
        self._regions: list[Region] = []
        self._on_fault = on_fault
        self._ws = arch.word_size
        self._wcode: Literal["Q", "I"] = "Q" if arch.word_size == 8 else "I"
        # Addresses are unsigned longs: anything wider is a caller's mistake, not a fault.
        self._top = 1 << (8 * arch.word_size)
        self.write_gen = 1
        """Bumped by every write and mapping; the pages written take the new value."""

    # -- mapping ---------------------------------------------------------
    def map(
        self, start: int, size: int, name: str, kind: RegionKind = "other",
        data: bytearray | None = None,
    ) -> Region:
        """Map ``[start, start+size)`` (zero-filled unless *data* is given).

        Without *data* the region's bytes come from :func:`zeroed`: lazily
        zero-filled, so a large mapping costs nothing until it is written.
        """
        check_int("start", start, minimum=0, maximum=self._top - 1)
        check_int("size", size, minimum=1, maximum=self._top - start)
        buf: RegionData
        if data is None:
            buf = zeroed(size)
        elif not isinstance(data, bytearray):
            # Regions are written in place: immutable bytes would fail on the first store.
            raise KmemsimTypeError(f"data must be a bytearray, not {type(data).__name__}")
        elif len(data) != size:
            raise KmemsimValueError("data length does not match size")
        else:
            buf = data
        i = bisect.bisect_right(self._starts, start)
        if (i > 0 and self._regions[i - 1].end > start) or (
            i < len(self._starts) and self._starts[i] < start + size
        ):
            raise KmemsimValueError(f"mapping {start:#x}+{size:#x} overlaps an existing region")
        region = Region(start, buf, name, kind)
        # A new mapping dates all its pages: bytes checked before it are not these.
        self.write_gen += 1
        region.page_gen = np.full(((size - 1) >> GEN_PAGE_SHIFT) + 1, self.write_gen,
                                  dtype=np.int64)
        self._starts.insert(i, start)
        self._regions.insert(i, region)
        return region

    def unmap(self, start: int) -> Region:
        """Remove the region that starts at *start* and return it."""
        check_int("start", start, minimum=0)
        i = bisect.bisect_left(self._starts, start)
        if i == len(self._starts) or self._starts[i] != start:
            raise KmemsimValueError(f"no region starts at {start:#x}")
        del self._starts[i]
        return self._regions.pop(i)

    def regions(self) -> Iterator[Region]:
        """Iterate over the mapped regions in address order."""
        return iter(list(self._regions))

    def region_at(self, addr: int) -> Region | None:
        """The region containing *addr*, or ``None``.  ``O(log(r))``."""
        addr = self.arch.untag(addr) if self.arch.top_byte_tags else addr
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            r = self._regions[i]
            if addr < r.end:
                return r
        return None

    def is_mapped(self, addr: int, size: int = 1) -> bool:
        """True when every byte of ``[addr, addr+size)`` is mapped."""
        check_int("addr", addr, minimum=0, maximum=self._top - 1)
        check_int("size", size, minimum=0)
        try:
            self._spans(addr, size, write=False, fault=False)
        except LookupError:
            return False
        return True

    # -- access ----------------------------------------------------------
    def _fault(self, addr: int, *, write: bool) -> PageFault:
        a = self.arch
        if a.top_byte_tags:
            # arm64 prints untagged_addr(FAR): the address sign-extended from bit 55,
            # so a NULL dereference reads 0000000000000010, not the 0xff-tagged form
            # that kasan_reset_tag (our untag) would give.
            addr &= (1 << 56) - 1
            if addr >> 55:
                addr |= 0xFF << 56
        addr &= a.word_mask  # an access running off the top wraps, as it would
        if a.name == "arm64":
            first = f"Unable to handle kernel paging request at virtual address {a.fmt_addr(addr)}"
            lines = [first, "Mem abort info:", "  ESR = 0x0000000096000007",
                     "Internal error: Oops: 0000000096000007 [#1] PREEMPT SMP"]
        else:
            code = 0x0002 if write else 0x0000
            lines = [
                f"BUG: unable to handle page fault for address: {a.fmt_addr(addr)}",
                f"#PF: supervisor {'write' if write else 'read'} access in kernel mode",
                f"#PF: error_code(0x{code:04x}) - not-present page",
                f"Oops: {code:04x} [#1] PREEMPT SMP" + (" NOPTI" if a.word_size == 8 else ""),
            ]
        exc = PageFault(addr, lines, write=write)
        if self._on_fault is not None:
            self._on_fault(exc)
        return exc

    def _spans(
        self, addr: int, size: int, *, write: bool, fault: bool = True
    ) -> list[tuple[Region, int, int]]:
        """Split ``[addr, addr+size)`` into (region, offset, length) pieces."""
        if self.arch.top_byte_tags:
            addr = self.arch.untag(addr)
        pieces: list[tuple[Region, int, int]] = []
        cur, left = addr, size
        while left > 0:
            r = self.region_at(cur)
            if r is None:
                if not fault:
                    raise LookupError(cur)
                raise self._fault(cur, write=write)
            n = min(left, r.end - cur)
            pieces.append((r, cur - r.start, n))
            cur += n
            left -= n
        return pieces

    def read(self, addr: int, n: int) -> bytes:
        """Read *n* bytes at *addr*.  Faults if any byte is unmapped."""
        check_int("addr", addr, minimum=0, maximum=self._top - 1)
        check_int("n", n, minimum=0)
        pieces = self._spans(addr, n, write=False)
        if len(pieces) == 1:
            r, off, ln = pieces[0]
            return bytes(r.data[off:off + ln])
        return b"".join(bytes(r.data[off:off + ln]) for r, off, ln in pieces)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Write *data* at *addr*.  Nothing is written if any byte would fault."""
        check_int("addr", addr, minimum=0, maximum=self._top - 1)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise KmemsimTypeError(f"data must be bytes-like, not {type(data).__name__}")
        mv = memoryview(data).cast("B")
        pieces = self._spans(addr, len(mv), write=True)
        pos = 0
        self.write_gen += 1
        for r, off, ln in pieces:
            r.data[off:off + ln] = mv[pos:pos + ln]
            pos += ln
            pg = getattr(r, "page_gen", None)  # (unset in a region of an older save)
            if pg is not None and ln:
                pg[off >> GEN_PAGE_SHIFT:((off + ln - 1) >> GEN_PAGE_SHIFT) + 1] = (
                    self.write_gen)
        if self._on_write is not None:
            self._on_write(addr, len(mv))

    def write_each(self, addrs: Sequence[int], data: bytes) -> None:
        """``write(addr, data)`` for each of *addrs*, in order (the same bytes at each).

        When all of them fall in one region the checks and the region lookup
        are done once; otherwise the writes are made one by one.  The write
        hook hears of each write, in order.

        >>> from kmemsim.layout import arch_by_name
        >>> m = AddressSpace(arch_by_name("x86_64")); _ = m.map(0x1000, 64, "r")
        >>> m.write_each([0x1000, 0x1010], b"\\x01\\x02"); m.read(0x1000, 18).hex()
        '010200000000000000000000000000000102'
        """
        n = len(data)
        r = self.region_at(addrs[0]) if addrs and not self.arch.top_byte_tags else None
        if r is None or not isinstance(data, bytes) or not all(
                isinstance(a, int) and r.start <= a and a + n <= r.end for a in addrs):
            for a in addrs:
                self.write(a, data)
            return
        buf, start = r.data, r.start
        for a in addrs:
            buf[a - start:a - start + n] = data
        pg = getattr(r, "page_gen", None)
        if pg is not None and n:
            self.write_gen += 1
            off = (np.array(addrs, dtype=np.uint64) - np.uint64(start)).astype(np.int64)
            if n <= 1 << GEN_PAGE_SHIFT:  # a write touches one page or two
                pg[off >> GEN_PAGE_SHIFT] = self.write_gen
                pg[(off + (n - 1)) >> GEN_PAGE_SHIFT] = self.write_gen
            else:
                for o in off.tolist():
                    pg[o >> GEN_PAGE_SHIFT:((o + n - 1) >> GEN_PAGE_SHIFT) + 1] = (
                        self.write_gen)
        if self._on_write_words is not None:
            if n:
                self._on_write_words(addrs, n)
        elif self._on_write is not None:
            for a in addrs:
                self._on_write(a, n)

    def fill(self, addr: int, size: int, byte: int) -> None:
        """``memset(addr, byte, size)``."""
        check_int("byte", byte, minimum=0, maximum=0xFF)
        check_int("size", size, minimum=0, maximum=self._top)
        self.write(addr, bytes([byte]) * size)

    def read_word(self, addr: int) -> int:
        """Read one little-endian machine word at *addr* (any alignment)."""
        return int.from_bytes(self.read(addr, self._ws), "little")

    def write_word(self, addr: int, value: int) -> None:
        """Write *value* as one little-endian machine word (negative values wrap)."""
        check_int("value", value)
        bits = 8 * self._ws
        if not -(1 << (bits - 1)) <= value < (1 << bits):
            raise KmemsimValueError(f"value {value:#x} does not fit in a {bits}-bit word")
        self.write(addr, (value & self.arch.word_mask).to_bytes(self._ws, "little"))

    def write_words(self, addrs: Sequence[int], values: Sequence[int] | npt.NDArray[np.integer]
                    ) -> None:
        """``write_word(addrs[i], values[i])`` for each *i*, in order, one numpy store per region.

        Every address must be word-aligned, distinct and mapped, and every value
        an unsigned word; otherwise nothing is written and :class:`KmemsimValueError`
        says which (callers that want a fault at the first bad address write one
        by one).  The write hook hears of each word, in order.  *values* may be a
        numpy array of integers (no Python int per value).

        >>> from kmemsim.layout import arch_by_name
        >>> m = AddressSpace(arch_by_name("x86_64")); _ = m.map(0x1000, 64, "r")
        >>> m.write_words([0x1008, 0x1000], [7, 9]); m.read_word(0x1000), m.read_word(0x1008)
        (9, 7)
        """
        ws = self._ws
        if len(addrs) != len(values):
            raise KmemsimValueError("addrs and values differ in length")
        if not len(addrs):
            return
        if isinstance(values, np.ndarray) and (
                values.dtype.kind not in "iu" or (values.dtype.kind == "i" and
                                                  bool((values < 0).any()))):
            # (numpy would wrap a negative value where a Python int overflows)
            raise KmemsimValueError("values must be unsigned machine words")
        try:
            a = np.array(addrs, dtype=np.uint64)
            v = np.array(values, dtype=np.uint64)
        except (OverflowError, TypeError, ValueError):
            raise KmemsimValueError("addresses and values must be unsigned machine words"
                                    ) from None
        if ws == 4 and bool((v >> np.uint64(32)).any()):
            raise KmemsimValueError("values must be unsigned machine words")
        # (a sort, not np.unique: the same answer, faster, and np.unique imports numpy.ma,
        # a tenth of a 10,000-object build in a fresh process)
        s = np.sort(a)
        if bool((s[1:] == s[:-1]).any()) or bool((a % np.uint64(ws)).any()):
            raise KmemsimValueError("addresses must be distinct and word-aligned")
        starts = np.array(self._starts, dtype=np.uint64)
        # The last byte of each region, not its end: a region at the very top of a
        # 64-bit space ends at 2**64, which no uint64 holds (nor does a + ws hold there).
        last = np.array([r.end - 1 for r in self._regions], dtype=np.uint64)
        idx = np.searchsorted(starts, a, side="right").astype(np.int64) - 1
        ok = idx >= 0
        room = last[np.where(ok, idx, 0)]
        ok &= (a <= room) & (room - a >= np.uint64(ws - 1))
        if not bool(ok.all()):
            bad = int(a[np.flatnonzero(~ok)[0]])
            raise KmemsimValueError(f"{bad:#x} is not a mapped whole word")
        dtype = "<u8" if ws == 8 else "<u4"
        self.write_gen += 1
        for i in np.flatnonzero(np.bincount(idx)).tolist():  # the regions written, in order
            r = self._regions[i]
            if r.start % ws:  # pragma: no cover - regions are page-aligned
                raise KmemsimValueError(f"region {r.name} is not word-aligned")
            sel = idx == i
            off = (a[sel] - np.uint64(r.start)).astype(np.int64)
            view = np.frombuffer(r.data, dtype=dtype, count=len(r.data) // ws)
            view[off // ws] = v[sel]
            del view  # no export outlives the call: an exported buffer cannot be resized or closed
            pg = getattr(r, "page_gen", None)
            if pg is not None:  # (an aligned word never straddles two pages)
                pg[off >> GEN_PAGE_SHIFT] = self.write_gen
        if self._on_write_words is not None:
            self._on_write_words(addrs, ws)
        elif self._on_write is not None:
            for addr in addrs:
                self._on_write(addr, ws)

    def words(self, start: int, end: int) -> list[tuple[int, int]]:
        """The aligned whole words inside ``[start, end)`` as ``(address, value)``.

        This is exactly what ``scan_block`` reads: the start is rounded up to
        a word boundary and a word that does not fit entirely is skipped.
        Unmapped words are skipped too (the kernel never scans unmapped
        memory: it only scans what its objects describe).  On arm64 the
        top-byte tags of *start* and *end* are ignored, as on every access;
        the addresses returned are untagged.
        """
        check_int("start", start, minimum=0)
        check_int("end", end, minimum=0)
        if self.arch.top_byte_tags:
            start, end = self.arch.untag(start), self.arch.untag(end)
        ws = self._ws
        p = (start + ws - 1) & ~(ws - 1)
        out: list[tuple[int, int]] = []
        while p + ws <= end:
            r = self.region_at(p)
            if r is None:
                p += ws
                continue
            stop = min(end, r.end)
            n = (stop - p) // ws
            if n <= 0:
                # The word runs past this region's end; it is still a whole word
                # when the next region starts right there.
                if self.is_mapped(p, ws):
                    out.append((p, int.from_bytes(self.read(p, ws), "little")))
                p += ws
                continue
            off = p - r.start
            mv = memoryview(r.data)[off:off + n * ws]
            if _NATIVE_LITTLE:
                vals = mv.cast(self._wcode).tolist()
            else:  # pragma: no cover - big-endian hosts
                vals = [int.from_bytes(mv[i:i + ws], "little") for i in range(0, n * ws, ws)]
            out.extend(zip(range(p, p + n * ws, ws), vals, strict=True))
            p += n * ws
        return out
