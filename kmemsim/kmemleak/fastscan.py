"""The fast scan: the same answer as the reference scan, vectorised with numpy.

Instead of walking the gray list word by word, the engine reads each memory
region once as a zero-copy ``uint64`` (or ``uint32``) view, keeps the words
that fall in an address window, finds the object each word lies in (its
*source*: an object's scanned range or a root range) and the object it points
into (its *target*), and so turns memory into an edge list.  Colours are
then a least fixed point over that list, computed round by round:

* a round activates the sources that turned gray in the previous one and adds
  their edges' targets to the per-object reference counts (``bincount``);
* an object is gray once its count reaches ``min_count``; references that
  arrive after that are surplus and, through ``excess_ref``, count for the
  forwarded target instead (that is how a ``vm_struct`` passes references on
  to its vmalloc block);
* the checksum pass grays white objects whose contents changed, and the
  rounds run again (the kernel's second drain).

Final colours and counts do not depend on the gray-list order, so they equal
the reference scan's.  A few exotic states where the kernel's result *does*
depend on order (an ``excess_ref`` target that forwards again, a reference
from a forwarding target back to its forwarder, unaligned objects, overlapping
scan areas) make :func:`fast_scan` return ``None``, and the caller runs the
reference scan instead.

Complexity: ``O(W + E log E + N)`` for ``W`` words of mapped memory in the
regions holding sources, ``E`` candidate words and ``N`` objects.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .object import (
    OBJECT_ALLOCATED,
    OBJECT_FULL_SCAN,
    OBJECT_NO_SCAN,
    OBJECT_PERCPU,
    OBJECT_PHYS,
    KmemleakObject,
    color_white,
)
from .scan import GrayedBy, RootRange, update_checksum

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
            np.concatenate(self.parts[f]) if self.parts[f] else np.zeros(0, dtype=d)
            for f, d in zip(self.FIELDS, (I64, I64, U64, U64, I64), strict=True))
        return src, dst, addr, value, seq


class _FastScanner:
    def __init__(self, kl: Kmemleak, objs: list[KmemleakObject],
                 roots: list[RootRange]) -> None:
        self.kl = kl
        self.k = kl.k
        self.objs = objs
        self.roots = roots
        self.n = len(objs)
        self.ws = self.k.arch.word_size
        self.index = {o.serial: i for i, o in enumerate(objs)}

    # -- sources: what would be read if its owner were gray -----------------
    def sources(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64],
                               npt.NDArray[np.int64], npt.NDArray[np.int64]]:
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
        for i, obj in enumerate(self.objs):
            if obj.flags & OBJECT_NO_SCAN or not obj.flags & OBJECT_ALLOCATED:
                continue
            if obj.flags & OBJECT_PERCPU:
                for cpu in k.possible_cpus():
                    s = obj.pointer + k.per_cpu_offset(cpu)
                    starts.append(s)
                    ends.append(s + obj.size)
                    ids.append(i)
                    ranks.append(cpu)
            elif not obj.areas or obj.flags & OBJECT_FULL_SCAN:
                s = k.phys_to_virt(obj.pointer) if obj.flags & OBJECT_PHYS else untag(obj.pointer)
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
        order = sorted(range(len(starts)), key=starts.__getitem__)
        st = _u64([starts[j] for j in order])
        en = _u64([ends[j] for j in order])
        if len(st) > 1 and bool(np.any(st[1:] < en[:-1])):
            raise _Fallback("overlapping scan ranges")
        return (st, en, np.fromiter((ids[j] for j in order), dtype=I64, count=len(order)),
                np.fromiter((ranks[j] for j in order), dtype=I64, count=len(order)))

    def targets(self, percpu: bool) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64],
                                             npt.NDArray[np.int64]]:
        kl = self.kl
        tree = kl.object_percpu_tree_root if percpu else kl.object_tree_root
        sd = tree._by_start
        keys = list(sd.keys())
        objs = list(map(sd.__getitem__, keys))  # SortedDict is a dict: C-speed lookups
        starts = _u64(keys)
        ends = starts + np.fromiter((o.size for o in objs), dtype=U64, count=len(objs))
        index = self.index
        idx = np.fromiter((index[o.serial] for o in objs), dtype=I64, count=len(objs))
        return starts, ends, idx

    def collect(self) -> tuple[_Arr, _Arr, _Arr, _Arr, _Arr]:
        """Every candidate word inside a source range: source, target, address, value, rank."""
        kl, ws = self.kl, self.ws
        src_st, src_en, src_id, src_rank = self.sources()
        vt = self.targets(False)
        pt = self.targets(True)
        dt = np.dtype("<u8" if ws == 8 else "<u4")
        vmin, vmax = U64(kl.min_addr), U64(kl.max_addr)
        pmin, pmax = U64(kl.min_percpu_addr), U64(kl.max_percpu_addr)
        tagmask = U64(0xFF00_0000_0000_0000) if self.k.arch.top_byte_tags else None
        edges = _Edges()
        if not len(src_st):
            return edges.arrays()
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
            vals = words | tagmask if tagmask is not None else words
            cand = np.flatnonzero(((vals >= vmin) & (vals < vmax)) | ((vals >= pmin) & (vals < pmax)))
            if not len(cand):
                continue
            addr = U64(first) + cand.astype(U64) * U64(ws)
            own = np.searchsorted(src_st, addr, side="right").astype(I64) - 1
            ok = own >= 0
            own_c = np.where(ok, own, 0)
            ok &= (addr + U64(ws)) <= src_en[own_c]
            cand, addr, own_c = cand[ok], addr[ok], own_c[ok]
            v, raw = vals[cand], words[cand]
            src, seq = src_id[own_c], src_rank[own_c]
            for (starts, ends, idx), wmin, wmax in ((vt, vmin, vmax), (pt, pmin, pmax)):
                if not len(starts):
                    continue
                inwin = (v >= wmin) & (v < wmax)
                ti = np.searchsorted(starts, v, side="right").astype(I64) - 1
                hit = inwin & (ti >= 0)
                ti_c = np.where(hit, ti, 0)
                hit &= v < ends[ti_c]
                dst = idx[ti_c]
                hit &= dst != src  # self-references are skipped
                edges.add(src=src[hit], dst=dst[hit], addr=addr[hit], value=raw[hit].astype(U64),
                          seq=seq[hit])
        return edges.arrays()

    # -- the gray list over the edge list -------------------------------------
    def run(self, gray0: list[KmemleakObject]) -> tuple[list[int], dict[int, GrayedBy], int]:
        """Drain the gray list exactly as the kernel does, but over precomputed edges.

        Edges are ordered by source, then by address, so a source's references
        are met in the order ``scan_block`` meets them; sources are taken from
        a FIFO in the kernel's order (roots, then the gray list).  Each object
        therefore gets the kernel's count, and each surplus reference the
        kernel's forwarding.  Runtime complexity: ``O(E log E)`` for the sort,
        then ``O(N + E)`` Python steps.
        """
        kl, k, n, objs = self.kl, self.k, self.n, self.objs
        src, dst, addr, value, seq = self.collect()
        # excess_ref targets, resolved by exact lookup as the kernel does.
        fwd = [-1] * n
        for i, o in enumerate(objs):
            if o.excess_ref:
                t = kl.object_tree_root.lookup(k.arch.untag(o.excess_ref))
                if t is None:
                    continue
                if k.arch.untag(t.pointer) != k.arch.untag(o.excess_ref):
                    raise _Fallback("excess_ref into the middle of an object (alias warning)")
                fwd[i] = self.index[t.serial]
        nroots = len(self.roots)
        # rows: root i is row i (kernel order), object j is row nroots + j
        row = np.where(src < 0, -1 - src, src + nroots)
        order = np.lexsort((addr, seq, row))  # by source, its ranges in scan order, address
        dst_l = dst[order].tolist()
        addr_l = addr[order].tolist()
        value_l = value[order].tolist()
        indptr = np.concatenate(([0], np.cumsum(np.bincount(row, minlength=n + nroots))))
        ptr = indptr.tolist()

        count = [0] * n
        min_count = [o.min_count for o in objs]
        gray = [m == 0 for m in min_count]
        scannable = [not o.flags & OBJECT_NO_SCAN for o in objs]
        grayed_by: dict[int, GrayedBy] = {}
        queue: deque[int] = deque(self.index[o.serial] for o in gray0)
        scanned = [False] * n
        roots = self.roots

        def update_refs(t: int, e: int, s: int) -> None:
            if gray[t] or min_count[t] < 0:
                return  # not white: gray already, or black
            count[t] += 1
            if count[t] >= min_count[t]:
                gray[t] = True
                holder = objs[s].pointer if s >= 0 else None
                root = roots[-1 - s].kind if s < 0 else None
                grayed_by[objs[t].pointer] = GrayedBy(addr_l[e], value_l[e], holder, root)
                queue.append(t)

        def scan_source(s: int, r: int) -> None:
            for e in range(ptr[r], ptr[r + 1]):
                t = dst_l[e]
                if gray[t] and min_count[t] >= 0:
                    f = fwd[t]  # saturated: only the surplus is forwarded
                    if f >= 0 and f != s:
                        update_refs(f, e, s)
                else:
                    update_refs(t, e, s)

        def drain() -> None:
            while queue:
                j = queue.popleft()
                if scannable[j] and not scanned[j]:
                    scanned[j] = True
                    scan_source(j, nroots + j)

        for i in range(nroots):
            scan_source(-1 - i, i)
        drain()
        # the checksum pass, in object_list order, then the second drain
        spared: list[int] = []
        for i, obj in enumerate(objs):
            if gray[i] or min_count[i] < 0:
                continue
            obj.count = count[i]
            if color_white(obj) and obj.flags & OBJECT_ALLOCATED and update_checksum(kl, obj):
                spared.append(i)
                count[i] = min_count[i]
                gray[i] = True
                queue.append(i)
        drain()
        for i, obj in enumerate(objs):
            obj.count = count[i]
        return spared, grayed_by, self._words_read(scanned)

    def _words_read(self, scanned: list[bool]) -> int:
        """How many aligned words the reference scan would have read."""
        k, ws = self.k, self.ws
        total = 0
        for r in self.roots:
            total += _aligned_words(r.start, r.end, ws)
        for i in (j for j, done in enumerate(scanned) if done):
            obj = self.objs[i]
            if obj.flags & OBJECT_PERCPU:
                total += _aligned_words(0, obj.size, ws) * len(k.possible_cpus())
            elif not obj.areas or obj.flags & OBJECT_FULL_SCAN:
                s = k.phys_to_virt(obj.pointer) if obj.flags & OBJECT_PHYS else obj.pointer
                total += _aligned_words(s, s + obj.size, ws)
            else:
                total += sum(_aligned_words(a.start, a.start + a.size, ws) for a in obj.areas)
        return total


def _aligned_words(start: int, end: int, ws: int) -> int:
    first = (start + ws - 1) & ~(ws - 1)
    return max(0, (end - first) // ws)


def fast_scan(kl: Kmemleak, gray0: list[KmemleakObject], roots: list[RootRange]
              ) -> tuple[list[int], dict[int, GrayedBy], int] | None:
    """Colour every object (already whitened) as the kernel's scan would; ``None``: use the
    reference walk.

    *gray0* is the initial gray list (``whiten``'s result).  Sets every
    object's ``count`` and, through the checksum pass, ``checksum``.  Returns
    the ``object_list`` indexes of the objects the checksum pass spared, the
    word that grayed each object, and the number of words read.
    """
    objs = list(kl.object_list.values())
    try:
        return _FastScanner(kl, objs, roots).run(gray0)
    except _Fallback:
        return None
