"""Every tool's view of one heap: LeakSanitizer, Valgrind memcheck, kmemleak and the truth.

:func:`tool_views` reads the same simulated bytes three ways and puts the
answers beside what the program meant, one row per live allocation
(``k.truth.blocks``).  All three tools are conservative: they read aligned
words and treat any word that lands in a block as a possible reference.
They differ in what they scan and in what a reference is worth:

================  ===============================================  ===================================
tool              roots                                            a block is
================  ===============================================  ===================================
LeakSanitizer     kernel ``.data``/``.bss``, module data, per-CPU  ``reachable`` (start or interior
                  static sections, task stacks                     pointer), else ``direct`` or
                                                                   ``indirect`` (held by another leak)
Valgrind          the same, plus the ``struct page`` array and     ``still reachable`` (start-pointer
memcheck          ``alloc_pages`` memory (client memory, not       chain), ``possibly lost`` (an
                  heap blocks)                                     interior link), ``definitely lost``
                                                                   or ``indirectly lost``
kmemleak          its own scan (read, not rerun: the colour        ``white``/``gray``/``black``, and
                  after the last scan)                             ``listed`` in the debugfs report
truth             the program's references (``Kernel.store``)      ``reachable`` or ``leaked``
================  ===============================================  ===================================

Modelling choices (each mirrors the user-space tool on the kernel's memory):

* **Heap blocks.** Both user-space tools see the allocations made through
  the allocator they intercept: here every block except ``alloc_pages``
  memory (the page allocator is below the heap, as ``mmap`` is below
  ``malloc``) and a loaded module's data (a root, like a shared library's
  writable segment).  LSan neither tracks nor scans pages (``untracked``:
  a pointer kept only in a page is invisible to it, the classic
  "pointer stored in mmap'd memory" false leak); memcheck scans them as
  valid client memory (``root``).
* **Per-CPU blocks** are addressed by their cookie: a word inside
  ``[cookie, cookie+size)`` refers to the block, and the block's contents
  are its per-CPU copies (``per_cpu_ptr(cookie, cpu)`` for every CPU).
* **Allocator metadata is heap too.** ``vmap_area`` and ``vm_struct`` are
  slab objects reachable from ``vmap_area_list``, and ``vm_struct.addr``
  holds the area's start: a ``vmalloc`` block is never a leak for LSan or
  memcheck.  kmemleak needs ``min_count`` 2 and ``excess_ref`` to see the
  same leak; the truth, which records only what the program stored, calls
  it leaked.
* **Stacks** are whole ``THREAD_SIZE`` stacks, as kmemleak reads them.
  Real LSan starts at the saved stack pointer, so it would miss the dead
  words *below* the stack pointer that kmemleak (and this model) still read.
* **memcheck's marking** follows ``mc_leakcheck.c``: a start pointer from a
  root or a still-reachable block makes a block still reachable, anything
  else (an interior pointer, or any pointer from a possibly-lost block)
  makes it possibly lost.  Unreached blocks are then grouped into cliques in
  address order: a lost block that another lost block points to (start or
  interior) is indirectly lost.  As in memcheck, a lost cycle that no other
  lost block points into keeps one definitely lost block, its lowest
  address; LSan calls the whole cycle indirect.
* **Tagged words** (arm64) are untagged with ``k.arch.untag`` before lookup,
  and block addresses are indexed untagged, as kmemleak does.

Cost: every scanned word is read once with ``numpy`` and looked up with one
``searchsorted`` per index (virtual and per-CPU), ``O(W log B)`` for *W*
words and *B* blocks; the graph passes are ``O(B + E)`` for *E* references.

>>> from kmemsim import Kernel
>>> from kmemsim.truth import Interior, tool_views
>>> k = Kernel(config={"CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN": False})
>>> head = k.define_static("head", 8)
>>> a, b, c = k.kzalloc(64), k.kzalloc(64), k.kzalloc(64)
>>> k.store(head, a, encoding=Interior(offset=16))   # only a pointer into the middle
>>> k.store(b, c)                                    # nothing holds b: b and c are lost
>>> k.sleep(6); _ = k.kmemleak.scan(); _ = k.kmemleak.scan()
>>> views = tool_views(k)
>>> for p in (a, b, c):
...     r = views[p]
...     print(r.lsan, "|", r.valgrind, "|", r.kmemleak, r.listed, "|", r.truth)
reachable | possibly lost | gray False | reachable
direct | definitely lost | white True | leaked
indirect | indirectly lost | white True | leaked
>>> print(views.subset([a, b, c]))
address             size  kind  LSan       Valgrind         kmemleak      truth      judge
0xffff888...  64  slab  reachable  possibly lost    gray          reachable  TN
0xffff888...  64  slab  direct     definitely lost  white listed  leaked     TP
0xffff888...  64  slab  indirect   indirectly lost  white listed  leaked     TP
3 blocks. LSan: 1 reachable, 1 direct, 1 indirect. Valgrind: 1 possibly lost, 1 definitely lost, 1 indirectly lost. kmemleak: 1 gray, 2 white, 2 listed. truth: 1 reachable, 2 leaked.
legend: ...
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..kmemleak.object import OBJECT_PERCPU, OBJECT_PHYS, OBJECT_REPORTED, KmemleakObject
from .judge import judge
from .model import Block

if TYPE_CHECKING:
    from ..kernel import Kernel
    from ..layout import Arch
    from ..memory import AddressSpace, RegionData

# LeakSanitizer's classes.
LSAN_REACHABLE = "reachable"
LSAN_DIRECT = "direct"
LSAN_INDIRECT = "indirect"
# Valgrind memcheck's four leak kinds.
VG_REACHABLE = "still reachable"
VG_POSSIBLE = "possibly lost"
VG_DEFINITE = "definitely lost"
VG_INDIRECT = "indirectly lost"
# Shared labels: memory the tool scans as a root, memory it does not see at all.
ROOT = "root"
UNTRACKED = "untracked"
#: kmemleak: an object created after the last scan (or before any scan) has no colour yet.
UNSCANNED = "unscanned"
# The truth.
REACHABLE = "reachable"
LEAKED = "leaked"

#: Column order of :meth:`ToolViews.table` and of the text table.
COLUMNS = ("address", "size", "kind", "lsan", "valgrind", "kmemleak", "listed", "truth",
           "verdict")

_SHORT_VERDICT = {"true positive": "TP", "false positive": "FP", "false negative": "FN",
                  "true negative": "TN", "pending": "pending"}

_LEGEND = ("legend: root = the tool scans it as a root; untracked = not a block the tool sees; "
           "kmemleak = colour at the last scan, listed = in its report; "
           "judge = kmemleak's verdict by the truth (TP/FP/FN/TN/pending)")

#: The order classes are counted and summarised in.
_ORDER = {
    "lsan": (LSAN_REACHABLE, LSAN_DIRECT, LSAN_INDIRECT, ROOT, UNTRACKED),
    "valgrind": (VG_REACHABLE, VG_POSSIBLE, VG_DEFINITE, VG_INDIRECT, ROOT),
    "kmemleak": ("gray", "white", "listed", "black", UNSCANNED, UNTRACKED),
    "truth": (REACHABLE, LEAKED),
}

_U64 = npt.NDArray[np.uint64]
_I64 = npt.NDArray[np.int64]

# Owners of scanned words that are not blocks.
_ROOT = -1
"""Roots of both tools."""
_VG_ROOT = -2
"""Roots of memcheck only: ``struct page`` descriptors and ``alloc_pages`` memory."""


@dataclass(frozen=True, slots=True)
class BlockView:
    """One allocation as each tool classifies it.

    ``kmemleak`` is the object's colour (``white``, ``gray``, ``black``),
    ``unscanned`` if it was created after the last scan, or ``untracked``;
    ``listed`` is whether a read of the debugfs file shows it (reported and
    still unreferenced); ``verdict`` is :func:`~kmemsim.truth.judge`'s kind for
    the object (``None`` when kmemleak does not track the block).
    """

    address: int
    size: int
    kind: str
    lsan: str
    valgrind: str
    kmemleak: str
    listed: bool
    truth: str
    verdict: str | None


@dataclass(frozen=True)
class ToolViews:
    """One :class:`BlockView` per live block, in address order; index by block address.

    >>> from kmemsim import Kernel
    >>> k = Kernel()
    >>> p = k.kzalloc(32)
    >>> v = tool_views(k)
    >>> v[p].lsan, v[p].valgrind, v[p].kmemleak, v[p].truth
    ('direct', 'definitely lost', 'unscanned', 'leaked')
    >>> v.table()[-1] == {"address": p, "size": 32, "kind": "slab", "lsan": "direct",
    ...     "valgrind": "definitely lost", "kmemleak": "unscanned", "listed": False,
    ...     "truth": "leaked", "verdict": "pending"}
    True
    """

    rows: tuple[BlockView, ...]
    scan_jiffies: int | None
    """``jiffies`` of kmemleak's last scan (``None`` before the first)."""

    @cached_property
    def _addresses(self) -> list[int]:
        return [r.address for r in self.rows]

    def __getitem__(self, address: int) -> BlockView:
        """The row of the block that starts at *address* (``KeyError`` if none)."""
        i = bisect.bisect_left(self._addresses, address)
        if i < len(self.rows) and self.rows[i].address == address:
            return self.rows[i]
        raise KeyError(f"no block starts at {address:#x}")

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, int):
            return False
        i = bisect.bisect_left(self._addresses, address)
        return i < len(self.rows) and self.rows[i].address == address

    def __iter__(self) -> Iterator[BlockView]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, addresses: Iterable[int]) -> ToolViews:
        """The rows of the blocks starting at *addresses* (a smaller table to show).

        >>> from kmemsim import Kernel
        >>> k = Kernel(); p = k.kzalloc(32)
        >>> len(tool_views(k).subset([p]))
        1
        """
        keep = set(addresses)
        return ToolViews(tuple(r for r in self.rows if r.address in keep), self.scan_jiffies)

    def table(self) -> list[dict[str, int | str | bool | None]]:
        """The rows as plain dicts (``pandas.DataFrame(views.table())``), keys :data:`COLUMNS`."""
        return [{c: getattr(r, c) for c in COLUMNS} for r in self.rows]

    def counts(self) -> dict[str, dict[str, int]]:
        """How many blocks each tool puts in each class: ``{"lsan": {"direct": 2, ...}, ...}``.

        ``counts()["kmemleak"]["listed"]`` counts listed objects (all of them
        are also counted as ``white``).

        >>> from kmemsim import Kernel
        >>> k = Kernel(); p = k.kzalloc(32)
        >>> tool_views(k).subset([p]).counts()["valgrind"]
        {'definitely lost': 1}
        """
        found = {tool: Counter(getattr(r, tool) for r in self.rows) for tool in _ORDER}
        found["kmemleak"]["listed"] = sum(r.listed for r in self.rows)
        return {tool: {label: found[tool][label] for label in order if found[tool][label]}
                for tool, order in _ORDER.items()}

    def __str__(self) -> str:
        header = ("address", "size", "kind", "LSan", "Valgrind", "kmemleak", "truth", "judge")
        body = [(f"0x{r.address:x}", str(r.size), r.kind, r.lsan, r.valgrind,
                 r.kmemleak + (" listed" if r.listed else ""), r.truth,
                 _SHORT_VERDICT.get(r.verdict, r.verdict) if r.verdict else "-")
                for r in self.rows]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        lines = []
        for row in [header, *body]:
            cells = [c.rjust(w) if i == 1 else c.ljust(w)
                     for i, (c, w) in enumerate(zip(row, widths, strict=True))]
            lines.append("  ".join(cells).rstrip())
        counts = self.counts()
        names = {"lsan": "LSan", "valgrind": "Valgrind", "kmemleak": "kmemleak",
                 "truth": "truth"}
        summary = ". ".join(
            f"{names[tool]}: " + ", ".join(f"{n} {label}" for label, n in c.items())
            for tool, c in counts.items() if c)
        lines.append(f"{len(self.rows)} blocks." + (f" {summary}." if summary else ""))
        lines.append(_LEGEND)
        return "\n".join(lines)


# ----------------------------------------------------------------------- reading words
def _word_dtype(arch: Arch) -> np.dtype[Any]:
    """One little-endian machine word."""
    return np.dtype("<u8") if arch.word_size == 8 else np.dtype("<u4")


def _read_words(memory: AddressSpace, arch: Arch, start: int, end: int) -> _U64:
    """The values of ``memory.words(start, end)`` as a ``uint64`` array, read in bulk.

    Same rules as :meth:`~kmemsim.memory.AddressSpace.words` (aligned whole
    words, unmapped words skipped); whole runs inside one region are copied
    with ``numpy.frombuffer`` instead of word by word.

    >>> from kmemsim import Kernel
    >>> k = Kernel(); p = k.kmalloc(64); k.memory.write_word(p + 8, 0x1234)
    >>> _read_words(k.memory, k.arch, p + 3, p + 64).tolist() == [
    ...     v for _, v in k.memory.words(p + 3, p + 64)]
    True
    """
    ws = arch.word_size
    if arch.top_byte_tags:
        start, end = arch.untag(start), arch.untag(end)
    parts: list[_U64] = []
    p = (start + ws - 1) & ~(ws - 1)
    while p + ws <= end:
        r = memory.region_at(p)
        if r is None or r.end - p < ws:
            # A hole, or a word straddling two regions: let words() apply its rules to the rest.
            rest = [v for _, v in memory.words(p, end)]
            parts.append(np.array(rest, dtype=np.uint64))
            break
        n = (min(end, r.end) - p) // ws
        # astype copies, so no buffer export of the region's bytearray outlives this call.
        parts.append(np.frombuffer(r.data, dtype=_word_dtype(arch), count=n, offset=p - r.start)
                     .astype(np.uint64))
        p += n * ws
    if not parts:
        return np.zeros(0, dtype=np.uint64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _gather(memory: AddressSpace, arch: Arch, ranges: list[tuple[int, int, int]]
            ) -> tuple[_I64, _U64]:
    """Read every ``(owner, start, end)`` range: the owner and value of each word.

    Ranges inside one region (nearly all: slab objects, stacks, sections)
    are read with one fancy-indexing gather per region instead of one call
    per range; the others go through :func:`_read_words`.

    >>> from kmemsim import Kernel
    >>> k = Kernel(); p, q = k.kzalloc(32), k.kzalloc(32); k.store(q, p)
    >>> owners, values = _gather(k.memory, k.arch, [(7, p, p + 32), (9, q, q + 16)])
    >>> owners.tolist(), values.tolist() == [0, 0, 0, 0, p, 0]
    ([7, 7, 7, 7, 9, 9], True)
    """
    ws = arch.word_size
    by_region: dict[int, tuple[RegionData, list[int], list[int], list[int]]] = {}
    owners: list[_I64] = []
    values: list[_U64] = []
    for owner, start, end in ranges:
        if arch.top_byte_tags:
            start, end = arch.untag(start), arch.untag(end)
        p = (start + ws - 1) & ~(ws - 1)
        n = (end - p) // ws if end > p else 0
        if n <= 0:
            continue
        r = memory.region_at(p)
        if r is not None and p + n * ws <= r.end and (p - r.start) % ws == 0:
            group = by_region.setdefault(r.start, (r.data, [], [], []))
            group[1].append(owner)
            group[2].append((p - r.start) // ws)
            group[3].append(n)
        else:
            vals = _read_words(memory, arch, start, end)
            owners.append(np.full(len(vals), owner, dtype=np.int64))
            values.append(vals)
    for data, own, first, count in by_region.values():
        words = np.frombuffer(data, dtype=_word_dtype(arch), count=len(data) // ws)
        counts = np.array(count, dtype=np.int64)
        # Word indexes of every range back to back: first[i], first[i]+1, ... first[i]+n[i]-1.
        shift = np.array(first, dtype=np.int64) - (np.cumsum(counts) - counts)
        idx = np.repeat(shift, counts) + np.arange(int(counts.sum()), dtype=np.int64)
        values.append(words[idx].astype(np.uint64))  # a copy: the region's buffer is let go
        owners.append(np.repeat(np.array(own, dtype=np.int64), counts))
        del words
    if not values:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    return np.concatenate(owners), np.concatenate(values)


class _Index:
    """Sorted, non-overlapping ``[start, end)`` intervals of block ids (one address space)."""

    def __init__(self, spans: list[tuple[int, int, int]]) -> None:
        spans = sorted(spans)
        self.starts: _U64 = np.array([s for s, _, _ in spans], dtype=np.uint64)
        self.ends: _U64 = np.array([e for _, e, _ in spans], dtype=np.uint64)
        self.ids: _I64 = np.array([i for _, _, i in spans], dtype=np.int64)

    def lookup(self, values: _U64) -> tuple[npt.NDArray[np.bool_], _I64, npt.NDArray[np.bool_]]:
        """For each value: whether it lands in a block, which block, and whether at its start."""
        n = len(values)
        if not len(self.starts) or not n:
            return np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
        # uint64 against uint64 only: an int64 operand would make numpy compare in float64.
        pos = np.searchsorted(self.starts, values, side="right") - 1
        inside = pos >= 0
        pos = np.where(inside, pos, 0)
        inside &= values < self.ends[pos]
        return inside, self.ids[pos], values == self.starts[pos]


# -------------------------------------------------------------------------- the views
class _Views:
    """Scan once, classify three ways."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.arch = k.arch
        self.blocks: list[Block] = list(k.truth.blocks.values())
        module_data = {lm.data for lm in k.modules.values()}
        # Which blocks are heap chunks for LSan and memcheck (the same set for both).
        self.module_root = [b.kind == "module" and b.base in module_data for b in self.blocks]
        self.pages = [b.kind == "pages" for b in self.blocks]
        self.chunk = [not (m or p) for m, p in zip(self.module_root, self.pages, strict=True)]
        self.adj: dict[int, list[tuple[int, bool]]] = {}
        """owner (block index, ``_ROOT`` or ``_VG_ROOT``) -> sorted ``(target, at start)``."""

    # -- the one conservative scan --------------------------------------------
    def units(self) -> list[tuple[int, int, int]]:
        """``(owner, start, end)`` of every range either tool scans."""
        k = self.k
        out = [(_ROOT, k.kernel_data_start, k.kernel_data_end)]
        out += [(_ROOT, lm.data, lm.data + lm.data_size) for lm in k.modules.values()]
        out += [(_ROOT, s, e) for s, e in k.percpu_static_sections()]
        out += [(_ROOT, s, e) for s, e in k.task_stacks()]
        out += [(_VG_ROOT, s, e) for s, e in k.struct_page_ranges()]
        for i, b in enumerate(self.blocks):
            if self.pages[i]:
                out.append((_VG_ROOT, b.base, b.end))  # memcheck: client memory
            elif self.chunk[i] and b.kind == "percpu":
                for cpu in k.possible_cpus():
                    copy = k.per_cpu_ptr(b.base, cpu)
                    out.append((i, copy, copy + b.size))
            elif self.chunk[i]:
                out.append((i, b.base, b.end))
        return out

    def scan(self) -> None:
        """Fill :attr:`adj`: which chunks each owner's words point into, and how."""
        untag = self.arch.untag
        virt: list[tuple[int, int, int]] = []
        percpu: list[tuple[int, int, int]] = []
        for i, b in enumerate(self.blocks):
            if self.chunk[i]:
                start = untag(b.base)
                (percpu if b.kind == "percpu" else virt).append((start, start + b.size, i))
        owner_of, values = _gather(self.k.memory, self.arch, self.units())
        if self.arch.top_byte_tags:
            # arch.untag sets the tag byte (an OR), so untag(0) is the mask to OR in.
            values |= np.uint64(untag(0))
        found = [index.lookup(values) for index in (_Index(virt), _Index(percpu))]
        owner = np.concatenate([owner_of[hit] for hit, _, _ in found])
        target = np.concatenate([t[hit] for hit, t, _ in found])
        at_start = np.concatenate([s[hit] for hit, _, s in found]).astype(np.int64)
        if not len(owner):
            return
        # Deduplicate and sort (owner, target, at_start) in bulk, so every traversal
        # below is deterministic without sorting in Python.
        order = np.lexsort((at_start, target, owner))
        owner, target, at_start = owner[order], target[order], at_start[order]
        new = np.ones(len(owner), dtype=bool)
        new[1:] = ((owner[1:] != owner[:-1]) | (target[1:] != target[:-1])
                   | (at_start[1:] != at_start[:-1]))
        adj: dict[int, list[tuple[int, bool]]] = {}
        for o, t, a in zip(owner[new].tolist(), target[new].tolist(), at_start[new].tolist(),
                           strict=True):
            adj.setdefault(o, []).append((t, bool(a)))
        self.adj = adj

    def targets(self, owner: int) -> list[tuple[int, bool]]:
        return self.adj.get(owner, [])

    # -- LeakSanitizer ---------------------------------------------------------
    def lsan(self) -> list[str]:
        n = len(self.blocks)
        reached = [False] * n
        stack = [t for t, _ in self.targets(_ROOT)]
        while stack:
            u = stack.pop()
            if reached[u]:
                continue
            reached[u] = True
            stack.extend(t for t, _ in self.targets(u) if not reached[t])
        # ClassifyAllChunks: each unreached chunk is scanned once; what it points to,
        # other than itself, is indirectly leaked.
        indirect = [False] * n
        for u in range(n):
            if self.chunk[u] and not reached[u]:
                for t, _ in self.targets(u):
                    if t != u and not reached[t]:
                        indirect[t] = True
        labels = []
        for i in range(n):
            if self.module_root[i]:
                labels.append(ROOT)
            elif self.pages[i]:
                labels.append(UNTRACKED)
            elif reached[i]:
                labels.append(LSAN_REACHABLE)
            else:
                labels.append(LSAN_INDIRECT if indirect[i] else LSAN_DIRECT)
        return labels

    # -- Valgrind memcheck -------------------------------------------------------
    def valgrind(self) -> list[str]:
        n = len(self.blocks)
        unreached, possible, reachable, indirect = 0, 1, 2, 3
        state = [unreached] * n
        stack: list[int] = []

        def push(t: int, definite: bool) -> None:
            # lc_push_without_clique_if_a_chunk_ptr: Unreached -> Possible/Reachable,
            # Possible -> Reachable; a block whose state changes is (re)scanned.
            if state[t] == reachable:
                return
            if definite:
                state[t] = reachable
                stack.append(t)
            elif state[t] == unreached:
                state[t] = possible
                stack.append(t)

        for t, at_start in self.targets(_ROOT) + self.targets(_VG_ROOT):
            push(t, at_start)
        while stack:
            u = stack.pop()
            prior_definite = state[u] == reachable
            for t, at_start in self.targets(u):
                push(t, at_start and prior_definite)
        # Cliques, in address order: everything an unreached leader reaches through
        # unreached blocks (any pointer) becomes indirectly lost; the leader stays.
        for leader in range(n):
            if not self.chunk[leader] or state[leader] != unreached:
                continue
            work = [leader]
            while work:
                u = work.pop()
                for t, _ in self.targets(u):
                    if t != leader and state[t] == unreached:
                        state[t] = indirect
                        work.append(t)
        names = {unreached: VG_DEFINITE, possible: VG_POSSIBLE, reachable: VG_REACHABLE,
                 indirect: VG_INDIRECT}
        return [ROOT if not self.chunk[i] else names[state[i]] for i in range(n)]

    # -- kmemleak ----------------------------------------------------------------
    def kmemleak_objects(self) -> dict[tuple[str, int], KmemleakObject]:
        """kmemleak's objects by (tree, untagged start): one dict lookup per block."""
        untag = self.arch.untag
        return {(_tree(obj), untag(obj.pointer)): obj
                for obj in self.k.kmemleak.object_list.values()}

    def kmemleak_object(self, block: Block, by_start: dict[tuple[str, int], KmemleakObject]
                        ) -> KmemleakObject | None:
        """The object tracking *block*: the one starting there, else one containing it."""
        if block.kind == "percpu":
            tree, addr = "percpu", block.base
        elif block.kind == "memblock":
            tree, addr = "phys", self.k.virt_to_phys(block.base)
        else:
            tree, addr = "virtual", block.base
        obj = by_start.get((tree, self.arch.untag(addr)))
        if obj is None:  # e.g. what kmemleak_free_part left of the block
            obj = self.k.kmemleak.find(addr, tree=tree)
        return obj

    def colour(self, obj: KmemleakObject, too_young: set[int]) -> str:
        """The colour the last scan left, or ``unscanned`` for an object it never saw."""
        scan = self.k.kmemleak.last_scan
        if scan is None:
            return UNSCANNED
        # Created after the scan's start (wrap-safe), as judge decides "not scanned yet".
        if (obj.jiffies - scan.jiffies) & self.arch.word_mask < 1 << 31 \
                and obj.jiffies != scan.jiffies:
            return UNSCANNED
        # Same jiffy as the scan: a white object the scan saw was too young to report,
        # so a white one missing from too_young was created after it.
        if obj.jiffies == scan.jiffies and obj.color == "white" and not scan.interrupted \
                and obj.pointer not in too_young:
            return UNSCANNED
        return obj.color

    # -- all together ------------------------------------------------------------
    def run(self) -> ToolViews:
        self.scan()
        lsan, valgrind = self.lsan(), self.valgrind()
        reach = self.k.truth.reachable_blocks()
        verdicts = judge(self.k).verdicts
        kl = self.k.kmemleak
        by_start = self.kmemleak_objects()
        too_young = set(kl.last_scan.too_young) if kl.last_scan is not None else set()
        rows = []
        for i, b in enumerate(self.blocks):
            obj = self.kmemleak_object(b, by_start)
            if obj is None:
                colour, listed, verdict = UNTRACKED, False, None
            else:
                colour = self.colour(obj, too_young)
                listed = bool(obj.flags & OBJECT_REPORTED) and kl.unreferenced_object(obj)
                v = verdicts.get(obj.pointer)
                verdict = v.kind if v is not None else None
            rows.append(BlockView(b.base, b.size, b.kind, lsan[i], valgrind[i], colour, listed,
                                  REACHABLE if b.base in reach else LEAKED, verdict))
        scan = kl.last_scan
        return ToolViews(tuple(rows), scan.jiffies if scan is not None else None)


def _tree(obj: KmemleakObject) -> str:
    """Which of kmemleak's three trees holds *obj*."""
    if obj.flags & OBJECT_PHYS:
        return "phys"
    return "percpu" if obj.flags & OBJECT_PERCPU else "virtual"


def tool_views(k: Kernel) -> ToolViews:
    """Classify every live block of *k* as LSan, memcheck, kmemleak and the truth see it.

    kmemleak is read, not rerun (run a scan first for fresh colours); LSan
    and memcheck scan the memory as it is now.  See the module docstring for
    the rules.

    >>> from kmemsim import Kernel
    >>> k = Kernel()
    >>> holder = k.define_static("holder", 8)
    >>> p = k.kzalloc(64); k.store(holder, p)
    >>> r = tool_views(k)[p]
    >>> r.lsan, r.valgrind, r.truth
    ('reachable', 'still reachable', 'reachable')
    """
    return _Views(k).run()
