"""The fast scan: the same answer as the reference scan, vectorised with numpy.

Instead of walking the gray list word by word, the engine reads each memory
region once as a zero-copy ``uint64`` (or ``uint32``) view, keeps the words
that fall in an address window, finds the range each word lies in (its
*source*: an object's scanned range or a root range) and the object it points
into (its *target*), and so turns memory into an edge list sorted the way
``scan_block`` meets the words.  The object metadata comes from kmemleak's column store
(:class:`~kmemsim.kmemleak.object.ObjectStore`), so building the ranges and
the trees' sorted starts needs no Python loop over plain objects.

The gray list is then drained over the edge list in the kernel's order (the
root ranges, then the gray list, first in first out), wave by wave with
numpy (:mod:`.drain`): each object gets the kernel's ``count`` and each
surplus reference the kernel's ``excess_ref`` forwarding, which depends on
that order.  The checksum pass and the second drain follow, as in the
kernel, and the counts go back to the store as one column write.

A few exotic states where the edge list is not enough (an ``excess_ref``
into the middle of an object, overlapping scan areas, unaligned objects
larger than a chunk) make :func:`fast_scan` return ``None``, and the caller
runs the reference scan instead.

Complexity: ``O(W + E log(E) + N log(N))`` for ``W`` words of mapped memory
in the regions holding sources, ``E`` candidate words and ``N`` objects;
the drain is ``O(N + E)`` numpy work, plus a Python step per row of the
narrow waves a long linked list makes.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .drain import drain_gray_list
from .object import (
    OBJECT_ALLOCATED,
    OBJECT_FULL_SCAN,
    OBJECT_NO_SCAN,
    OBJECT_PERCPU,
    OBJECT_PHYS,
    KmemleakObject,
)
from .scan import GrayedBy, GrayedByMap, RootRange, update_checksum

if TYPE_CHECKING:
    from .hooks import Kmemleak

U64 = np.uint64
I64 = np.int64
#: Source ids below zero are root ranges; ``-1 - i`` is root range ``i``.
_NATIVE_LITTLE = sys.byteorder == "little"


_Arr = npt.NDArray[Any]


class _Fallback(Exception):
    """The heap is in a state where only the reference scan's order gives the answer."""


def _u64(values: Sequence[int]) -> npt.NDArray[np.uint64]:
    return np.fromiter(values, dtype=U64, count=len(values))


class _Edges:
    """Candidate words: which source range holds them, which object they point into,
    and the rank of that range in its object's scan order (scan areas: most recent first)."""

    FIELDS = ("src", "dst", "addr", "value", "seq")

    def __init__(self) -> None:
        self.parts: dict[str, list[_Arr]] = {f: [] for f in self.FIELDS}

    def add(self, **arrays: _Arr) -> None:
        if len(arrays["src"]):
            for f in self.FIELDS:
                self.parts[f].append(arrays[f])

    def arrays(self) -> tuple[_Arr, _Arr, _Arr, _Arr, _Arr]:
        """``src, dst, addr, value, seq`` as whole arrays."""
        src, dst, addr, value, seq = (
            (parts[0] if len(parts) == 1 else np.concatenate(parts)) if parts
            else np.zeros(0, dtype=d)
            for parts, d in zip(map(self.parts.__getitem__, self.FIELDS),
                                (I64, I64, U64, U64, I64), strict=True))
        return src, dst, addr, value, seq


class StartIndex:
    """``searchsorted(starts, v, "right") - 1`` for many values at once, through a table.

    A binary search over a million starts costs twenty cache misses per
    value.  Here the starts are split into clusters at gaps wider than
    ``MAX_GAP`` (the direct map, the kernel image, vmalloc space ...), each
    cluster is cut into cells of ``1 << shift`` bytes, and a table holds the
    last start at or before each cell's end; a value then costs a search
    among the few clusters, one table read and a step back over the starts
    of its cell above it (none when it points at or past the cell's last
    start, as most pointers into a heap do).  The cell size is the smallest
    power of two (at least ``1 << MIN_SHIFT``) giving at most
    ``CELLS_PER_START`` cells a start, so cells hold a start or two; when
    even ``1 << MAX_SHIFT`` bytes would give more (sparse starts), it falls
    back to ``searchsorted``.

    >>> idx = StartIndex(np.array([0x1000, 0x1040, 0x9000_0000], dtype=np.uint64))
    >>> idx.floor(np.array([0xfff, 0x1000, 0x1050, 0x8fff_ffff, 0x9000_0001], dtype=np.uint64))
    array([-1,  0,  1,  1,  2])
    """

    MIN_SHIFT = 4
    MAX_SHIFT = 12
    CELLS_PER_START = 4
    MAX_GAP = 1 << 24

    def __init__(self, starts: npt.NDArray[np.uint64]) -> None:
        """Build the table.  Runtime complexity: ``O(n + cells)``, at most ``O(n)`` cells."""
        self.starts = starts
        n = len(starts)
        self.table: _Arr | None = None
        if n == 0:
            return
        cut = np.flatnonzero(np.diff(starts) > U64(self.MAX_GAP)) + 1
        first = np.concatenate(([0], cut)).astype(I64)
        last = np.concatenate((cut, [n])).astype(I64) - 1
        spans = starts[last] - starts[first]
        budget = self.CELLS_PER_START * n + 4096
        for shift in range(self.MIN_SHIFT, self.MAX_SHIFT + 1):
            # ((span >> shift) + 2 per cluster bounds its cells, whatever its alignment)
            if int((spans >> U64(shift)).sum()) + 2 * len(first) <= budget:
                break
        else:
            return  # sparse: plain binary search
        self.shift = U64(shift)
        self.base = (starts[first] >> self.shift) << self.shift
        self.cells = ((starts[last] - self.base) >> self.shift).astype(I64) + 1
        total = int(self.cells.sum())
        self.offset = np.concatenate(([0], np.cumsum(self.cells)[:-1])).astype(I64)
        cluster = np.repeat(np.arange(len(first), dtype=I64), last - first + 1)
        cell = self.offset[cluster] + ((starts - self.base[cluster]) >> self.shift).astype(I64)
        # table[g]: the last start at or before the end of cell g (a count of starts per
        # cell, summed); int32 where it fits, half the cache lines read
        counts = np.bincount(cell, minlength=total)
        del cell, cluster
        self.table = np.cumsum(counts, dtype=np.int32 if n < 1 << 31 else I64)
        self.table -= 1
        self.last = last

    def floor(self, values: npt.NDArray[np.uint64]) -> _Arr:
        """Index of the largest start ``<= v`` for each value (``-1``: none).

        Runtime complexity: ``O(V log(C) + V k)`` for ``V`` values, ``C``
        clusters and at most ``k`` starts in one cell.
        """
        starts, table = self.starts, self.table
        if table is None:
            return np.searchsorted(starts, values, side="right").astype(I64) - 1
        c = np.searchsorted(self.base, values, side="right").astype(I64) - 1
        before = c < 0  # below the first cluster: no start
        c[before] = 0
        cell = ((values - self.base[c]) >> self.shift).astype(I64)
        cells = self.cells[c]
        beyond = cell >= cells  # past the cluster's last cell: its last start
        np.minimum(cell, cells - 1, out=cell)
        cell += self.offset[c]
        j = table[cell].astype(I64)
        j[beyond] = self.last[c[beyond]]
        j[before] = -1
        # step back over the starts of the value's cell that lie above it
        active = np.flatnonzero(~(before | beyond))
        active = active[starts[j[active]] > values[active]]
        while len(active):
            j[active] -= 1
            at = j[active]
            keep = at >= 0
            active, at = active[keep], at[keep]
            active = active[starts[at] > values[active]]
        return j


class _FastScanner:
    def __init__(self, kl: Kmemleak, roots: list[RootRange]) -> None:
        self.kl = kl
        self.k = kl.k
        store = kl.store
        # the live objects, in object_list order: position i is store row rows[i]
        self.rows = store.live_rows()
        self.position_of_row = np.full(len(store), -1, dtype=I64)
        self.position_of_row[self.rows] = np.arange(len(self.rows), dtype=I64)
        self.size_of_row = store.column("size")
        self.roots = roots
        self.n = len(self.rows)
        self._tree_rows: dict[bool, tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]] = {}
        self.ws = self.k.arch.word_size
        # Columns of the object metadata, gathered from the store: the vectorised phases
        # work on these.
        rows = self.rows
        self.pointer = store.column("pointer", rows)
        self.size = self.size_of_row[rows]
        self.flags = store.column("flags", rows)
        self.min_count = store.column("min_count", rows)
        self.excess_ref = store.column("excess_ref", rows)
        if store.areas.count(()) == len(store.areas):  # C speed: () is shared
            self.has_areas = np.zeros(self.n, dtype=bool)
        else:
            self.has_areas = np.fromiter(map(bool, map(store.areas.__getitem__, rows.tolist())),
                                         dtype=bool, count=self.n)
        if self.k.arch.top_byte_tags:
            self.untagged = self.pointer | U64(0xFF00_0000_0000_0000)
        else:
            self.untagged = self.pointer
        f = self.flags
        # Objects scanned as one plain range of their own memory (most of them).
        self.plain = ((f & OBJECT_ALLOCATED != 0) & (f & (OBJECT_NO_SCAN | OBJECT_PERCPU
                                                           | OBJECT_PHYS) == 0)
                      & (~self.has_areas | (f & OBJECT_FULL_SCAN != 0)))

    def position(self, obj: KmemleakObject) -> int:
        """*obj*'s position in ``object_list`` (a live object).  ``O(1)``."""
        return int(self.position_of_row[obj._row])

    def tree_rows(self, percpu: bool) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
        """The virtual (or per-CPU) tree's sorted starts and rows, read once a scan."""
        got = self._tree_rows.get(percpu)
        if got is None:
            kl = self.kl
            tree = kl.object_percpu_tree_root if percpu else kl.object_tree_root
            got = self._tree_rows[percpu] = tree.sorted_rows()
        return got

    def obj(self, i: int) -> KmemleakObject:
        """The object at position *i* of ``object_list``.  ``O(1)``."""
        return self.kl.store.view(int(self.rows[i]))

    # -- sources: what would be read if its owner were gray -----------------
    def sources(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64],
                               npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Every range a gray owner would have read, sorted by start: ``start, end, owner,
        rank`` (the rank orders an object's ranges as the kernel scans them).

        Plain objects are handled as whole columns, in the virtual tree's
        order; roots, per-CPU and phys objects and objects with scan areas one
        by one.  ``O(N + R log(N))`` for ``R`` other ranges.
        """
        k, ws = self.k, self.ws
        starts: list[int] = []
        ends: list[int] = []
        ids: list[int] = []
        ranks: list[int] = []  # the kernel scans an object's areas in list order
        for i, r in enumerate(self.roots):
            starts.append(r.start)
            ends.append(r.end)
            ids.append(-1 - i)
            ranks.append(0)
        untag = k.arch.untag
        f = self.flags
        special = (f & OBJECT_ALLOCATED != 0) & (f & OBJECT_NO_SCAN == 0) & ~self.plain
        for i in np.flatnonzero(special).tolist():
            obj = self.obj(i)
            if obj.flags & OBJECT_PERCPU:
                for cpu in k.possible_cpus():
                    s = obj.pointer + k.per_cpu_offset(cpu)
                    starts.append(s)
                    ends.append(s + obj.size)
                    ids.append(i)
                    ranks.append(cpu)
            elif not obj.areas or obj.flags & OBJECT_FULL_SCAN:  # phys
                s = k.phys_to_virt(obj.pointer)
                if s % ws and obj.size > 4096:
                    raise _Fallback("unaligned object scanned in chunks")
                starts.append(s)
                ends.append(s + obj.size)
                ids.append(i)
                ranks.append(0)
            else:
                for rank, area in enumerate(obj.areas):
                    s = untag(area.start)
                    starts.append(s)
                    ends.append(s + area.size)
                    ids.append(i)
                    ranks.append(rank)
        # Plain objects in the virtual tree's order, which is already by start (a plain
        # object of size 0 is in no tree; it reads nothing).
        tree_starts, tree_rows = self.tree_rows(False)
        in_tree = self.position_of_row[tree_rows]
        keep = self.plain[in_tree]
        pst, plain = tree_starts[keep], in_tree[keep]
        psz = self.size[plain]
        if bool(np.any((pst % U64(ws) != 0) & (psz > 4096))):
            raise _Fallback("unaligned object scanned in chunks")
        # The few others, sorted, go in before plain ranges of equal start (the order a
        # stable sort of "others first, then plain" gives).
        order = np.argsort(_u64(starts), kind="stable")
        sst = _u64(starts)[order]
        at = np.searchsorted(pst, sst, side="left")
        st = np.insert(pst, at, sst)
        en = np.insert(pst + psz, at, _u64(ends)[order])
        owner = np.insert(plain, at, np.array(ids, dtype=I64)[order])
        ranked = np.insert(np.zeros(len(plain), dtype=I64), at, np.array(ranks, dtype=I64)[order])
        if len(st) > 1 and bool(np.any(st[1:] < en[:-1])):
            raise _Fallback("overlapping scan ranges")
        return st, en, owner, ranked

    def targets(self, percpu: bool) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64],
                                             npt.NDArray[np.int64]]:
        """The tree's objects sorted by start: ``start, end, position in object_list``.

        The tree keeps its starts sorted, with their store rows.  ``O(N)``.
        """
        starts, rows = self.tree_rows(percpu)
        return starts, starts + self.size_of_row[rows], self.position_of_row[rows]

    def collect(self) -> tuple[_Arr, _Arr, _Arr, _Arr, _Arr]:
        """Every candidate word inside a source range: source, target, address, value, rank.

        Runtime complexity: ``O(W + C log(S + N))`` for ``W`` words of the
        regions that source ranges cover, ``C`` words inside kmemleak's address
        windows, ``S`` source ranges and ``N`` objects (numpy, no Python loop
        per word).
        """
        kl, ws = self.kl, self.ws
        src_st, src_en, src_id, src_rank = self.sources()
        vt = self.targets(False)
        pt = self.targets(True)
        vindex, pindex = StartIndex(vt[0]), StartIndex(pt[0])
        dt = np.dtype("<u8" if ws == 8 else "<u4")
        vmin, vmax = U64(kl.min_addr), U64(kl.max_addr)
        pmin, pmax = U64(kl.min_percpu_addr), U64(kl.max_percpu_addr)
        tagmask = U64(0xFF00_0000_0000_0000) if self.k.arch.top_byte_tags else None
        edges = _Edges()
        windows = [(lo, hi) for lo, hi in ((vmin, vmax), (pmin, pmax)) if lo < hi]
        if not len(src_st) or not windows:
            return edges.arrays()
        in_windows = _WindowFilter(windows, tagmask, ws)
        # Pass 1, region by region: the address and value of every word in a window.
        addr_parts: list[_Arr] = []
        raw_parts: list[_Arr] = []
        for region in self.k.memory.regions():
            lo = int(np.searchsorted(src_en, U64(region.start), side="right"))
            hi = int(np.searchsorted(src_st, U64(region.end), side="left"))
            if lo >= hi:
                continue  # no source range touches this region
            # Read only the span of the region that source ranges cover.
            first = max(region.start, int(src_st[lo])) & ~(ws - 1)
            last = min(region.end, int(src_en[lo:hi].max()))
            nwords = (last - first) // ws
            if nwords <= 0:
                continue
            words = np.frombuffer(region.data, dtype=dt, count=nwords,
                                  offset=first - region.start).astype(U64, copy=False)
            cand = in_windows(words)
            if len(cand):
                addr_parts.append(U64(first) + cand.astype(U64) * U64(ws))
                raw_parts.append(words[cand])
            del words  # release the region's buffer
        if not addr_parts:
            return edges.arrays()
        # Pass 2, all candidates at once (regions come in address order, so addr is
        # sorted): the source range holding each word, then the object it points into.
        addr, raw = np.concatenate(addr_parts), np.concatenate(raw_parts)
        own = np.searchsorted(src_st, addr, side="right").astype(I64) - 1
        ok = own >= 0
        own_c = np.where(ok, own, 0)
        ok &= (addr + U64(ws)) <= src_en[own_c]
        addr, raw, own_c = addr[ok], raw[ok], own_c[ok]
        v = raw | tagmask if tagmask is not None else raw
        src, seq = src_id[own_c], src_rank[own_c]
        for starts, ends, idx, index, wmin, wmax in ((*vt, vindex, vmin, vmax),
                                                     (*pt, pindex, pmin, pmax)):
            if not len(starts):
                continue
            inwin = (v >= wmin) & (v < wmax)
            ti = index.floor(v)
            hit = inwin & (ti >= 0)
            ti_c = np.where(hit, ti, 0)
            hit &= v < ends[ti_c]
            dst = idx[ti_c]
            hit &= dst != src  # self-references are skipped
            edges.add(src=src[hit], dst=dst[hit], addr=addr[hit], value=raw[hit], seq=seq[hit])
        return edges.arrays()

    # -- the gray list over the edge list -------------------------------------
    def run(self, gray0: list[KmemleakObject]
            ) -> tuple[list[int], Mapping[int, GrayedBy], int]:
        """Drain the gray list exactly as the kernel does, but over precomputed edges.

        Edges are ordered by source, then by address, so a source's references
        are met in the order ``scan_block`` meets them; sources are taken from
        a FIFO in the kernel's order (roots, then the gray list), wave by wave
        (:func:`~kmemsim.kmemleak.drain.drain_gray_list`).  Each object
        therefore gets the kernel's count, and each surplus reference the
        kernel's forwarding.  Runtime complexity: ``O(E log(E))`` for the sort,
        then ``O(N + E)`` numpy work, plus Python steps for narrow waves.
        """
        kl, k, n = self.kl, self.k, self.n
        src, dst, addr, value, seq = self.collect()
        # excess_ref targets, resolved by exact lookup as the kernel does.
        fwd = np.full(n, -1, dtype=I64)
        for i in np.flatnonzero(self.excess_ref).tolist():
            t = kl.object_tree_root.lookup(k.arch.untag(int(self.excess_ref[i])))
            if t is None:
                continue
            if k.arch.untag(t.pointer) != k.arch.untag(int(self.excess_ref[i])):
                raise _Fallback("excess_ref into the middle of an object (alias warning)")
            fwd[i] = self.position(t)
        nroots = len(self.roots)
        # rows: root i is row i (kernel order), object j is row nroots + j
        row = np.where(src < 0, -1 - src, src + nroots)
        order = np.lexsort((addr, seq, row))  # by source, its ranges in scan order, address
        indptr = np.zeros(n + nroots + 1, dtype=I64)
        np.cumsum(np.bincount(row, minlength=n + nroots), out=indptr[1:])
        mc = self.min_count
        # need[t]: references object t still needs to turn gray (count = min_count - need);
        # 0 is gray, -1 black
        need = np.where(mc > 0, mc, np.where(mc == 0, 0, -1)).astype(I64)
        # the row that grayed each object and the object its word points to (for the
        # word itself, found afterwards with numpy)
        gray_row = np.full(n, -1, dtype=I64)
        gray_dst = np.zeros(n, dtype=I64)
        first = np.flatnonzero(mc == 0)
        if len(first) != len(gray0):  # whiten's gray list is exactly min_count 0
            first = np.array([self.position(o) for o in gray0], dtype=I64)
        # The FIFO: the root ranges first (scanned before the gray list), then the
        # initial gray list, then whatever turns gray, in order: the kernel's order.
        queue = np.concatenate((np.arange(nroots, dtype=I64), nroots + first.astype(I64)))
        # done[r]: row r was scanned, or is never scanned (OBJECT_NO_SCAN)
        done = np.concatenate((np.zeros(nroots, dtype=bool), self.flags & OBJECT_NO_SCAN != 0))
        never = done.copy()
        dst_o = dst[order]
        drain_gray_list(queue, indptr, dst_o, need, fwd, done, gray_row, gray_dst, nroots)
        # the checksum pass, in object_list order, then the second drain
        store = kl.store
        store.set_column("count", self.rows, np.where(mc > 0, mc - need, 0))
        # need > 0: count < min_count, so white; only allocated ones are checksummed
        spared = self.checksum_pass(np.flatnonzero((need > 0)
                                                   & (self.flags & OBJECT_ALLOCATED != 0)))
        need[spared] = 0
        drain_gray_list(nroots + np.array(spared, dtype=I64), indptr, dst_o, need, fwd, done,
                        gray_row, gray_dst, nroots)
        store.set_column("count", self.rows, np.where(mc > 0, mc - need, 0))
        grayed_by = self._grayed_by(gray_row, gray_dst, row[order], dst_o, addr, value, order)
        return (self.pointer[spared].tolist(), grayed_by,
                self._words_read((done & ~never)[nroots:]))

    def checksum_pass(self, white: _Arr) -> list[int]:
        """``update_checksum`` for the objects at positions *white* (in order); return the
        positions whose CRC changed.

        Plain objects lying in one mapped region are checksummed straight from
        the region's bytes and their checksums written as one column; the rest
        (per-CPU, phys, unmapped or straddling) go through ``update_checksum``.
        An object whose checksum was found right at a memory write generation
        (:attr:`ObjectStore.crc_gen`) and none of whose pages was written
        since (:meth:`~kmemsim.memory.Region.written_since`) keeps it without
        a CRC: its bytes, and so their CRC, are those of then.
        Runtime complexity: ``O(W + B)`` for ``W`` objects of ``B`` bytes
        written since their last CRC (a C-speed CRC each).
        """
        kl = self.kl
        store = kl.store
        zcrc = zlib.crc32
        rows = self.rows[white]
        addr, size = self.untagged[white], self.size[white]
        regions = list(self.k.memory.regions())
        starts = np.array([r.start for r in regions], dtype=U64)
        ends = np.array([r.end for r in regions], dtype=U64)
        ri = np.searchsorted(starts, addr, side="right").astype(I64) - 1
        inside = ((self.flags[white] & (OBJECT_PERCPU | OBJECT_PHYS) == 0) & (ri >= 0)
                  & (addr + size <= ends[np.maximum(ri, 0)]))
        old = store.column("checksum", rows)
        new = old.copy()
        now = self.k.memory.write_gen
        dated = np.frombuffer(store.crc_gens(), dtype=U64)[rows].astype(I64)  # (a copy)
        for r in np.flatnonzero(np.bincount(ri[inside], minlength=len(regions))).tolist():
            sel = np.flatnonzero(inside & (ri == r))
            first = (addr[sel] - starts[r]).astype(I64)
            stale = (dated[sel] == 0) | regions[r].written_since(
                first, np.maximum(size[sel], U64(1)).astype(I64), dated[sel])
            sel, first = sel[stale], first[stale]
            with memoryview(regions[r].data) as data:
                # crc32() inlined (the fast engine never runs with a fault injected), as
                # map chains: no Python bytecode per object
                crcs = np.fromiter(map(zcrc, map(data.__getitem__,
                                                 map(slice, first.tolist(),
                                                     (first + size[sel].astype(I64)).tolist())),
                                       repeat(0xFFFFFFFF)), dtype=U64, count=len(sel))
            new[sel] = crcs ^ U64(0xFFFFFFFF)
        changed = inside & (new != old)
        store.set_column("checksum", rows[changed], new[changed])
        gens = np.frombuffer(store.crc_gens(), dtype=U64)
        gens[rows[inside]] = now  # every inside object's checksum is its bytes' CRC now
        del gens  # release the buffer: the column must stay growable
        for i in np.flatnonzero(~inside).tolist():
            changed[i] = update_checksum(kl, self.obj(int(white[i])))
        return white[changed].tolist()  # type: ignore[no-any-return]

    def _grayed_by(self, gray_row: _Arr, gray_dst: _Arr, edge_row: _Arr, edge_dst: _Arr,
                   addr: _Arr, value: _Arr, order: _Arr) -> GrayedByMap:
        """For each grayed object, the first word of the row that grayed it pointing to the
        object it named (the object itself, or the one that forwarded to it).  The
        edges are given sorted (``edge_row``, ``edge_dst``); *addr* and *value* as
        collected, with *order* the sort.

        The edges are sorted by row, so each object's candidates are the edges
        of its graying row that point to the object it names; the first is
        kept with ``np.minimum.at``.  The few objects grayed through a
        forwarding look their word up one by one.  ``O(E + G log(E))`` for
        ``G`` forwarded grays.
        """
        grayed = np.flatnonzero(gray_row >= 0)
        rows, dsts = gray_row[grayed], gray_dst[grayed]
        n_edges = len(edge_dst)
        direct = np.flatnonzero((gray_dst[edge_dst] == edge_dst)
                                & (gray_row[edge_dst] == edge_row))
        first = np.full(self.n, n_edges, dtype=I64)
        np.minimum.at(first, edge_dst[direct], direct)
        e = first[grayed]
        for k in np.flatnonzero(dsts != grayed).tolist():  # grayed through an excess_ref
            lo = int(np.searchsorted(edge_row, rows[k], side="left"))
            hi = int(np.searchsorted(edge_row, rows[k], side="right"))
            e[k] = lo + int(np.flatnonzero(edge_dst[lo:hi] == dsts[k])[0])
        nroots = len(self.roots)
        sources = np.where(rows >= nroots, rows - nroots, -1 - rows)
        e = order[e]  # edge e of the sorted list is edge order[e] as collected
        return GrayedByMap(self.pointer[grayed], addr[e], value[e], sources,
                           self.pointer, [r.kind for r in self.roots])

    def _words_read(self, scanned: _Arr) -> int:
        """How many aligned words the reference scan would have read.  ``O(N)``."""
        k, ws = self.k, self.ws
        total = 0
        for r in self.roots:
            total += _aligned_words(r.start, r.end, ws)
        done = scanned
        plain = done & self.plain
        st = self.pointer[plain]
        first = (st + U64(ws - 1)) & ~U64(ws - 1)
        end = st + self.size[plain]
        fits = end >= first + U64(ws)
        total += int(((end[fits] - first[fits]) // U64(ws)).sum())
        for i in np.flatnonzero(done & ~self.plain).tolist():
            obj = self.obj(i)
            if obj.flags & OBJECT_PERCPU:
                total += _aligned_words(0, obj.size, ws) * len(k.possible_cpus())
            elif not obj.areas or obj.flags & OBJECT_FULL_SCAN:
                s = k.phys_to_virt(obj.pointer) if obj.flags & OBJECT_PHYS else obj.pointer
                total += _aligned_words(s, s + obj.size, ws)
            else:
                total += sum(_aligned_words(a.start, a.start + a.size, ws) for a in obj.areas)
        return total


class _WindowFilter:
    """The positions of the words that fall in any address window, region after region.

    One pass over the words tests the span from the lowest window start to
    the highest window end (one subtraction and one unsigned compare: values
    below the start wrap above the span); for 64-bit words only their high
    halves are tested (a strided view, half the arithmetic), which lets
    through a superset.  The buffers are reused from region to region (fresh
    temporaries would cost a page fault per page); the few candidates are
    then checked exactly against each window.
    """

    def __init__(self, windows: list[tuple[np.uint64, np.uint64]], tagmask: np.uint64 | None,
                 word_size: int) -> None:
        self.windows = windows
        self.tagmask = tagmask
        lo = min(lo for lo, _ in windows)
        last = max(hi for _, hi in windows) - U64(1)
        self.lo, self.span = lo, last - lo + U64(1)
        # high halves: [lo >> 32, last >> 32] holds the high half of every value in a window
        self.halves = word_size == 8
        self.hlo = np.uint32(int(lo) >> 32)
        self.hspan = np.uint32((int(last) >> 32) - (int(lo) >> 32))
        self.htag = np.uint32(int(tagmask) >> 32) if tagmask is not None else None
        self.tmp = np.empty(0, dtype=U64)
        self.mask = np.empty(0, dtype=bool)

    def __call__(self, words: _Arr) -> _Arr:
        n = len(words)
        if len(self.tmp) < n:
            self.tmp = np.empty(n, dtype=U64)
            self.mask = np.empty(n, dtype=bool)
        mask = self.mask[:n]
        # (value - lo) within the span, on the high halves (inclusive bound: the span of
        # high halves may be all of uint32) or on the whole words
        vals: _Arr
        tmp: _Arr
        tag: Any
        lo: Any
        bound: Any
        inside: Any
        if self.halves:
            vals = words.view(np.uint32)[1::2] if _NATIVE_LITTLE else words.view(np.uint32)[::2]
            tmp, tag, lo, bound, inside = (self.tmp.view(np.uint32)[:n], self.htag, self.hlo,
                                           self.hspan, np.less_equal)
        else:
            vals, tmp, tag, lo, bound, inside = (words, self.tmp[:n], self.tagmask, self.lo,
                                                 self.span, np.less)
        if tag is not None:
            np.bitwise_or(vals, tag, out=tmp)
            vals = tmp
        np.subtract(vals, lo, out=tmp)
        inside(tmp, bound, out=mask)
        cand = np.flatnonzero(mask)
        if len(cand) and (self.halves or len(self.windows) > 1):
            v = words[cand] | self.tagmask if self.tagmask is not None else words[cand]
            keep = np.zeros(len(cand), dtype=bool)
            for lo, hi in self.windows:
                keep |= (v - lo) < (hi - lo)
            cand = cand[keep]
        return cand


def _aligned_words(start: int, end: int, ws: int) -> int:
    first = (start + ws - 1) & ~(ws - 1)
    return max(0, (end - first) // ws)


def fast_scan(kl: Kmemleak, gray0: list[KmemleakObject], roots: list[RootRange]
              ) -> tuple[list[int], Mapping[int, GrayedBy], int] | None:
    """Colour every object (already whitened) as the kernel's scan would; ``None``: use the
    reference walk.

    *gray0* is the initial gray list (``whiten``'s result).  Sets every
    object's ``count`` and, through the checksum pass, ``checksum``.  Returns
    the pointers of the objects the checksum pass spared, the word that
    grayed each object, and the number of words read.
    """
    try:
        return _FastScanner(kl, roots).run(gray0)
    except _Fallback:
        return None
