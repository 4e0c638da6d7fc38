"""The truth: live blocks, logical references (edges) and the program's real roots.

The kernel reports every allocation and free here, and every pointer the
program *means* (``Kernel.store``).  Bytes are what kmemleak sees; edges are
what the program meant.  An edge lives from its store until its slot is
overwritten (by anything, ``write_word`` included), the block holding the
slot is freed, or the stack frame holding it returns; then it moves to the
slot's history, which is how a stale word is recognised later.

Roots of the truth are the program's real roots: kernel statics (``.data``
and ``.bss``), a loaded module's data, per-CPU static variables and the
locals of live stack frames.

>>> from kmemsim import Kernel
>>> k = Kernel()
>>> head = k.define_static("head", 8)
>>> a = k.kmalloc(64); b = k.kmalloc(64)
>>> k.store(head, a); k.store(a + 8, b)
>>> t = k.truth
>>> {a, b} <= set(t.reachable_blocks())
True
>>> k.memory.write_word(head, 0)          # overwriting the slot removes the edge
>>> a in t.reachable_blocks(), t.history[head].reason
(False, 'overwritten')
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    MutableMapping,
    Sequence,
    ValuesView,
)
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np
from sortedcontainers import SortedDict

from .._sorted import ceil_key, floor_key
from ..memory import paused_gc
from .encodings import Encoding

if TYPE_CHECKING:
    from ..kernel import Kernel

#: The longest piece a built-in encoding writes (one word); user encodings may write longer
#: ones, and :class:`Truth` widens its overlap search to the longest piece it has seen.
_MAX_PIECE = 8
#: Bulk stores handle their edges this many at a time (the per-edge lists stay small).
_CHUNK = 1 << 16

#: One entry of the slot indexes (``Truth._by_target``, ``Truth._by_holder``): most blocks
#: are the target (and the holder) of one or two edges, so a lone slot is kept as the int
#: itself, a few as a tuple, and a ``set`` only beyond that (a set costs over 200 bytes).
#: Every reader sorts the slots, so the container's order never shows.
SlotEntry = int | tuple[int, ...] | set[int]
_TUPLE_MAX = 8


def _slots(entry: SlotEntry | None) -> Iterable[int]:
    """The slots of an index entry (none for a missing one).

    >>> sorted(_slots(5)), sorted(_slots((7, 3))), sorted(_slots({9, 1})), list(_slots(None))
    ([5], [3, 7], [1, 9], [])
    """
    if entry is None:
        return ()
    return entry if isinstance(entry, (tuple, set)) else (entry,)


def _index_add(index: dict[int | None, SlotEntry], key: int | None, slot: int) -> None:
    """Add *slot* under *key* (``index.setdefault(key, set()).add(slot)``, compactly).

    >>> d = {}; _index_add(d, 1, 8); _index_add(d, 1, 8); d
    {1: 8}
    >>> _index_add(d, 1, 16); _index_add(d, 1, 8); d
    {1: (8, 16)}
    >>> for s in range(24, 100, 8): _index_add(d, 1, s)
    >>> type(d[1]).__name__, len(d[1])
    ('set', 12)
    """
    cur = index.get(key)
    if cur is None:
        index[key] = slot
    elif isinstance(cur, set):
        cur.add(slot)
    elif isinstance(cur, tuple):
        if slot not in cur:
            index[key] = (*cur, slot) if len(cur) < _TUPLE_MAX else {*cur, slot}
    elif cur != slot:
        index[key] = (cur, slot)


def _index_discard(index: dict[int | None, SlotEntry], key: int | None, slot: int) -> None:
    """Remove *slot* from under *key*, if it is there.

    >>> d = {1: 8, 2: (8, 16), 3: (8, 16, 24), 4: {8, 16}}
    >>> for key in d.copy(): _index_discard(d, key, 8)
    >>> d
    {2: 16, 3: (16, 24), 4: {16}}
    """
    cur = index.get(key)
    if cur is None:
        return
    if isinstance(cur, set):
        cur.discard(slot)
    elif isinstance(cur, tuple):
        if slot in cur:
            rest = tuple(s for s in cur if s != slot)
            index[key] = rest[0] if len(rest) == 1 else rest
    elif cur == slot:
        del index[key]


@dataclass(frozen=True, slots=True)
class Block:
    """One live allocation as the allocator sees it (tracked by kmemleak or not)."""

    base: int
    size: int
    kind: str
    """``slab``, ``kmalloc_large``, ``vmalloc``, ``module``, ``module_text``, ``pages``,
    ``percpu``, ``memblock``."""
    cache: str = ""

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass(frozen=True, slots=True)
class Edge:
    """A reference the program meant: the word(s) at ``slot`` stand for ``target``."""

    slot: int
    target: int
    """The address the program meant (usually the target block's start)."""
    target_base: int
    encoding: Encoding
    pieces: tuple[tuple[int, bytes], ...]
    """What was written: ``(address, bytes)``."""
    holder: int | None
    """Base of the block holding the slot, or ``None`` for a root."""
    root: str | None
    """Which root holds the slot (``"kernel static"``, ``"stack of comm[pid]"`` ...)."""
    jiffies: int


@dataclass(frozen=True, slots=True)
class RemovedEdge:
    """An edge that ended, and why: ``overwritten``, ``holder freed``, ``frame returned``,
    ``target freed``."""

    edge: Edge
    reason: str
    jiffies: int


#: Bulk paths build ``Block`` and ``Edge`` records by storing each field through its slot
#: descriptor: the very stores the frozen dataclass ``__init__`` makes through
#: ``object.__setattr__``, two to three times faster.  The records are the same (same
#: class, fields, equality, hash and frozenness).
_new_record = object.__new__
_BLOCK_SETTERS = tuple(getattr(Block, f).__set__ for f in ("base", "size", "kind", "cache"))
_EDGE_SETTERS = tuple(getattr(Edge, f).__set__ for f in (
    "slot", "target", "target_base", "encoding", "pieces", "holder", "root", "jiffies"))


_T = TypeVar("_T")
#: Row runs are compacted once this many of their rows are dead (and over half of them).
_COMPACT_MIN = 1 << 16
#: A range this many words long or shorter finds its row edges by looking each word up.
_PROBE_WORDS = 32
_U64_MAX = (1 << 64) - 1
_WORD_MASK = {n: (1 << (8 * n)) - 1 for n in (1, 2, 4, 8, 16)}  # by word size (row edges are words)
#: One run of rows, sorted by slot: (slots, targets, holders, kinds).
Run = tuple[array, array, array, array]  # type: ignore[type-arg]


def _np_col(col: array) -> np.ndarray[tuple[int], np.dtype[Any]]:  # type: ignore[type-arg]
    """A run column as a numpy array (a view of its buffer: release it before resizing)."""
    return np.frombuffer(col, dtype=np.uint32 if col.typecode == "I" else np.uint64)


def _take(col: array, idx: np.ndarray[tuple[int], np.dtype[Any]]) -> array:  # type: ignore[type-arg]
    """``col[idx]`` as a new column (one numpy copy, one array copy: a column at a time
    keeps the peak of a merge low)."""
    out = array(col.typecode)
    out.frombytes(memoryview(_np_col(col)[idx]).cast("B"))
    return out


def _no_edge(slot: int, target_base: int) -> None:
    """``reachable_blocks(edges=False)``: a reached block's parent is not recorded."""


class EdgeTable(MutableMapping[int, Edge]):
    """``slot -> Edge`` (``Truth.edges``): a dict in behaviour and order, compact in bytes.

    An edge of a bulk plain store (:meth:`Truth.add_plain_edges`) is kept as
    a row (slot, target, holder, kind) and its :class:`Edge` record is built
    when read, equal to the one a single store records; every other edge is
    kept as its record.  The dict underneath maps each slot to its record,
    or for a row to its target block's base (the blocks' own key object:
    nothing new per edge), in insertion order, so iteration order is that of
    a plain dict.  Rows live in a few runs sorted by slot (a new run per
    batch, merged with the previous one when they are of a size, as in a
    log-structured merge tree): a row is found by a binary search in each
    run, newest first, and a row edge's one piece, the aligned word at its
    slot, is found through the runs too (:meth:`rows_between`) rather than
    the truth's piece index.  A row costs 28 bytes against some 310 for a
    record, its pieces tuple and its piece index entry.  Records read from a
    row are new objects each time (equal, not identical).

    >>> from kmemsim import Kernel
    >>> from kmemsim.truth.encodings import Plain
    >>> enc = Plain().bind(Kernel().arch, 64)
    >>> t = EdgeTable(8)
    >>> kind = t.add_kind(enc, 5, 8)
    >>> t.add_row(0x1000, 0x2000, 0x2000, 0x3000, kind); t.flush()
    >>> e = t[0x1000]
    >>> (hex(e.target), hex(e.holder), e.root, e.jiffies, e.pieces[0][1].hex())
    ('0x2000', '0x3000', None, 5, '0020000000000000')
    >>> list(t) == [0x1000] and t.pop(0x1000) == e and len(t) == 0
    True
    """

    def __init__(self, word_size: int) -> None:
        self._d: dict[int, Edge | int] = {}  # slot -> record, or a row's target block base
        self._ws = word_size
        self._runs: list[Run] = []  # oldest first; a slot's newest row is its live one
        # rows of the batch being added, not yet sorted into a run (see flush)
        self._new: Run = (array("Q"), array("Q"), array("Q"), array("I"))
        self._kinds: list[tuple[Encoding, int, int]] = []  # (encoding, jiffies, piece length)
        self._live = 0  # slots the dict maps to a row
        self._stored = 0  # rows in the runs, dead ones (ended or superseded) included

    # --------------------------------------------------------------- rows
    def add_kind(self, encoding: Encoding, jiffies: int, piece_len: int) -> int:
        """A new kind of row (the shared fields of some rows); its id for :meth:`add_row`."""
        self._kinds.append((encoding, jiffies, piece_len))
        return len(self._kinds) - 1

    def add_row(self, slot: int, target: int, target_base: int, holder: int, kind: int) -> None:
        """Record the plain edge at *slot* (not in the table) as a row; :meth:`flush` ends
        the batch."""
        self._d[slot] = target_base
        s, t, h, k = self._new
        s.append(slot)
        t.append(target)
        h.append(holder)
        k.append(kind)
        self._live += 1

    def flush(self) -> None:
        """Sort the batch's new rows into a run, and merge the runs of a size.

        Runtime complexity: amortised ``O(log(n))`` numpy work per row.
        """
        new = self._new
        if not new[0]:
            return
        order = np.argsort(_np_col(new[0]), kind="stable")
        cols = []
        for c in new:  # a column at a time, each emptied once copied: a lower peak
            cols.append(_take(c, order))
            del c[:]  # emptied in place: callers may hold their append methods
        del order
        s, t, h, k = cols
        self._stored += len(s)
        runs = self._runs
        runs.append((s, t, h, k))
        while len(runs) > 1 and len(runs[-2][0]) <= 2 * len(runs[-1][0]):
            newer = runs.pop()
            runs[-1] = self._merged(runs[-1], newer)
        if self._stored - self._live >= _COMPACT_MIN and self._stored > 2 * self._live:
            self._compact()

    def _merged(self, older: Run, newer: Run,
                live: Callable[[int], bool] | None = None) -> Run:
        """One run of *older* and *newer*, a slot's newer row winning (and with *live*,
        only the rows of the slots it accepts)."""
        both = [array(a.typecode) for a in older]
        for col, a, b in zip(both, older, newer, strict=True):
            col.extend(a)
            col.extend(b)
        slots = _np_col(both[0])
        order = np.argsort(slots, kind="stable")  # stable: the newer row of a slot last
        sorted_slots = slots[order]
        keep = np.ones(len(order), dtype=bool)
        keep[:-1] = sorted_slots[1:] != sorted_slots[:-1]
        if live is not None:
            keep &= np.fromiter(map(live, sorted_slots.tolist()), dtype=bool,
                                count=len(order))
        idx = order[keep]
        del slots, order, sorted_slots, keep
        run: Run = tuple(_take(c, idx) for c in both)  # type: ignore[assignment]
        self._stored -= len(both[0]) - len(idx)
        return run

    def _compact(self) -> None:
        """One run of the live rows alone, and only the kinds they use."""
        self.flush()
        d = self._d
        run: Run = (array("Q"), array("Q"), array("Q"), array("I"))
        for r in self._runs:
            run = self._merged(run, r)
        self._stored = len(run[0])
        run = self._merged(run, (array("Q"), array("Q"), array("Q"), array("I")),
                           lambda slot: type(d.get(slot)) is int)
        used, kinds = np.unique(_np_col(run[3]), return_inverse=True)
        self._kinds = [self._kinds[i] for i in used.tolist()]
        run = (*run[:3], array("I", kinds.astype(np.uint32).tobytes()))
        self._runs = [run] if run[0] else []
        self._stored = len(run[0])

    def _find(self, slot: int) -> tuple[Run, int]:
        """The run and index of the live row of *slot* (the dict maps *slot* to a row)."""
        if self._new[0]:
            self.flush()  # (never between add_row and flush in practice)
        for run in reversed(self._runs):
            slots = run[0]
            i = bisect_left(slots, slot)
            if i < len(slots) and slots[i] == slot:
                return run, i
        raise AssertionError(f"row of slot {slot:#x} missing")  # pragma: no cover

    @property
    def rows(self) -> int:
        """How many edges are kept as rows."""
        return self._live

    def is_row(self, slot: int) -> bool:
        """Whether the edge at *slot* is kept as a row."""
        return type(self._d.get(slot)) is int

    def rows_between(self, lo: int, hi: int) -> list[int]:
        """The slots of the row edges in ``[lo, hi)``, ascending (row slots are aligned).

        ``O(hi - lo)`` word lookups for a short range, else ``O(r log(n) + k)``
        for *r* runs.
        """
        d, ws = self._d, self._ws
        if hi - lo <= _PROBE_WORDS * ws:
            return [a for a in range(lo + (-lo % ws), hi, ws) if type(d.get(a)) is int]
        if not self._live or hi <= 0:
            return []
        if self._new[0]:
            self.flush()
        lo, hi = max(lo, 0), min(hi, _U64_MAX)
        found: set[int] = set()
        for run in self._runs:
            slots = run[0]
            found.update(slots[bisect_left(slots, lo):bisect_left(slots, hi)])
        # a slot of a dead row may be there (ended, or superseded in an older run)
        return sorted(a for a in found if type(d.get(a)) is int)

    def _edge(self, slot: int, target_base: int, new: Callable[[type[Edge]], Edge] = _new_record,
              setters: tuple[Callable[[Edge, object], None], ...] = _EDGE_SETTERS) -> Edge:
        """The record of the row edge at *slot* (the defaults bind globals as locals)."""
        run, i = self._find(slot)
        encoding, jiffies, n = self._kinds[run[3][i]]
        target = run[1][i]
        # Edge(slot, target, target_base, encoding, pieces, holder, None, jiffies), faster
        edge = new(Edge)
        e_slot, e_target, e_tbase, e_enc, e_pieces, e_holder, e_root, e_jiffies = setters
        e_slot(edge, slot)
        e_target(edge, target)
        e_tbase(edge, target_base)
        e_enc(edge, encoding)
        # (the mask is a no-op for a checked target: kept as the stored piece has it)
        e_pieces(edge, ((slot, (target & _WORD_MASK[n]).to_bytes(n, "little")),))
        e_holder(edge, run[2][i])
        e_root(edge, None)
        e_jiffies(edge, jiffies)
        return edge

    def _dropped(self) -> None:
        """A row ended: compact the runs once most of their rows are dead."""
        self._live -= 1
        if self._stored - self._live >= _COMPACT_MIN and self._stored > 2 * self._live:
            self._compact()

    # ------------------------------------------------------------ mapping
    def __getitem__(self, slot: int) -> Edge:
        v = self._d[slot]
        return self._edge(slot, v) if type(v) is int else v  # type: ignore[return-value]

    def __setitem__(self, slot: int, edge: Edge) -> None:
        if type(self._d.get(slot)) is int:
            self._d[slot] = edge
            self._dropped()
        else:
            self._d[slot] = edge

    def __delitem__(self, slot: int) -> None:
        if type(self._d.pop(slot)) is int:
            self._dropped()

    def __contains__(self, slot: object) -> bool:
        return slot in self._d

    def __iter__(self) -> Iterator[int]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"EdgeTable({dict(self.items())!r})"

    @overload
    def get(self, slot: int, /) -> Edge | None: ...
    @overload
    def get(self, slot: int, default: Edge, /) -> Edge: ...
    @overload
    def get(self, slot: int, default: _T, /) -> Edge | _T: ...
    def get(self, slot: int, default: object = None, /) -> Edge | object:
        v = self._d.get(slot)
        if v is None:
            return default
        return self._edge(slot, v) if type(v) is int else v

    def pop_edge(self, slot: int) -> Edge | None:
        """Remove the edge at *slot* and return it (``None`` if there is none)."""
        v = self._d.get(slot)
        if type(v) is int:
            edge = self._edge(slot, v)
            del self._d[slot]
            self._dropped()
            return edge
        if v is not None:
            del self._d[slot]
        return v  # type: ignore[return-value]

    def clear(self) -> None:
        self._d.clear()
        self._live = 0
        self._compact()

    def items(self) -> ItemsView[int, Edge]:
        return _EdgeItems(self)

    def values(self) -> ValuesView[Edge]:
        return _EdgeValues(self)


class _EdgeItems(ItemsView[int, Edge]):
    """``EdgeTable.items()``: one pass over the dict underneath."""

    _mapping: EdgeTable

    def __iter__(self) -> Iterator[tuple[int, Edge]]:
        t = self._mapping
        edge = t._edge
        for slot, v in t._d.items():
            yield slot, (edge(slot, v) if type(v) is int else v)  # type: ignore[misc]


class _EdgeValues(ValuesView[Edge]):
    """``EdgeTable.values()``: one pass over the dict underneath."""

    _mapping: EdgeTable

    def __iter__(self) -> Iterator[Edge]:
        t = self._mapping
        edge = t._edge
        for slot, v in t._d.items():
            yield edge(slot, v) if type(v) is int else v  # type: ignore[misc]


def _add_sorted_keys(sd: SortedDict, new_keys: list[int] | None) -> None:
    """Enter keys stored into *sd*'s dict directly (``dict.__setitem__``) in its sorted key
    list: *new_keys* (not there before) one by one, or with ``None`` all keys re-sorted.

    What ``SortedDict.update`` does after its ``dict.update``, choosing the same way.

    >>> sd = SortedDict({5: "a"})
    >>> dict.__setitem__(sd, 1, "b"); dict.__setitem__(sd, 9, "c")
    >>> _add_sorted_keys(sd, [1, 9]); list(sd.items()), sd.peekitem(0)
    ([(1, 'b'), (5, 'a'), (9, 'c')], (1, 'b'))
    """
    sl = sd._list
    if new_keys is None or 10 * len(new_keys) > len(sd) - len(new_keys):
        sl.clear()
        sl.update(dict.__iter__(sd))
    else:
        for key in new_keys:
            sl.add(key)


class Truth:
    """What the program meant, kept beside the bytes (see the module docstring)."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.blocks: SortedDict = SortedDict()  # base -> Block
        self.edges = EdgeTable(k.arch.word_size)  # slot -> Edge
        # piece address -> (slot, length), or just the slot for a piece one word long
        # (nearly all of them: a tuple per edge would cost more than the entry itself)
        self._pieces: SortedDict = SortedDict()
        self._by_target: dict[int | None, SlotEntry] = {}  # target block base -> slot(s)
        self._by_holder: dict[int | None, SlotEntry] = {}  # holder base (None: roots) -> slot(s)
        self.history: dict[int, RemovedEdge] = {}
        self.percpu_copies: SortedDict = SortedDict()  # copy start -> (cookie, size)
        self._max_piece = _MAX_PIECE  # the longest piece recorded so far
        self.enabled = True

    # ------------------------------------------------------------- blocks
    def on_alloc(self, base: int, size: int, kind: str, cache: str = "") -> None:
        if base:
            self.blocks[base] = Block(base, size, kind, cache)

    def on_alloc_many(self, entries: Iterable[tuple[int, int, str, str]]) -> None:
        """:meth:`on_alloc` for each ``(base, size, kind, cache)`` (a bulk allocation).

        Runtime complexity: ``O(m log(n + m))``.
        """
        new, (s_base, s_size, s_kind, s_cache) = _new_record, _BLOCK_SETTERS
        blocks = self.blocks
        # Straight into the dict, then the sorted key list once, as SortedDict.update
        # does (without a batch-sized list of pairs).
        new_keys: list[int] = []
        append, store = new_keys.append, dict.__setitem__
        with paused_gc():  # a Block per allocation, none of them cyclic
            try:
                for b, n, kind, cache in entries:
                    if b:
                        block = new(Block)  # Block(b, n, kind, cache), faster (_BLOCK_SETTERS)
                        s_base(block, b)
                        s_size(block, n)
                        s_kind(block, kind)
                        s_cache(block, cache)
                        if b not in blocks:
                            append(b)
                        store(blocks, b, block)
            finally:  # the index stays whole even if an entry is malformed
                _add_sorted_keys(blocks, new_keys)

    def on_alloc_percpu(self, cookie: int, size: int) -> None:
        self.on_alloc(cookie, size, "percpu")
        for cpu in self.k.possible_cpus():
            self.percpu_copies[cookie + self.k.per_cpu_offset(cpu)] = (cookie, size)

    def on_free(self, base: int) -> None:
        block = self.blocks.pop(base, None)
        if block is None:
            return
        if block.kind == "percpu":
            for cpu in self.k.possible_cpus():
                copy = base + self.k.per_cpu_offset(cpu)
                self.percpu_copies.pop(copy, None)
                self._remove_range(copy, copy + block.size, "holder freed")
        else:
            self._remove_range(block.base, block.end, "holder freed")
        for slot in sorted(_slots(self._by_target.get(base))):  # sorted: sets restore unordered
            self._remove(slot, "target freed")

    def on_free_part(self, start: int, size: int) -> None:
        """Part of a block was freed (``memblock_free`` of a range): keep what is left."""
        block = self.block_at(start)
        if block is None:
            return
        end = min(start + size, block.end)
        del self.blocks[block.base]
        self._remove_range(start, end, "holder freed")
        if start > block.base:
            self.blocks[block.base] = Block(block.base, start - block.base, block.kind, block.cache)
        if end < block.end:
            self.blocks[end] = Block(end, block.end - end, block.kind, block.cache)
        # Edges into the freed range end; those into (or held by) the part after it now
        # belong to the block that starts at ``end``.
        for slot in sorted(_slots(self._by_target.get(block.base))):
            edge = self.edges[slot]
            if start <= edge.target < end:
                self._remove(slot, "target freed")
            elif edge.target >= end:
                self._rekey(slot, replace(edge, target_base=end))
        for slot in sorted(_slots(self._by_holder.get(block.base))):
            if slot >= end:
                self._rekey(slot, replace(self.edges[slot], holder=end))

    def _rekey(self, slot: int, edge: Edge) -> None:
        """Replace the edge at *slot* by *edge* (same slot and pieces, new target or holder)."""
        old = self.edges[slot]
        _index_discard(self._by_target, old.target_base, slot)
        _index_discard(self._by_holder, old.holder, slot)
        if self.edges.is_row(slot):  # a record from now on: its piece goes in the index
            self._pieces[slot] = slot
        self.edges[slot] = edge
        _index_add(self._by_target, edge.target_base, slot)
        _index_add(self._by_holder, edge.holder, slot)

    def block_at(self, addr: int) -> Block | None:
        """The live block containing *addr*.  ``O(log(n))``."""
        base = floor_key(self.blocks, addr)
        if base is not None:
            block: Block = self.blocks[base]
            if addr < block.end:
                return block
        return None

    def holder_block(self, addr: int) -> Block | None:
        """The block whose memory holds *addr* (per-CPU copies map to their cookie)."""
        block = self.block_at(addr)
        if block is not None and block.kind != "percpu":
            return block
        start = floor_key(self.percpu_copies, addr)
        if start is not None:
            cookie, size = self.percpu_copies[start]
            if addr < start + size:
                return self.blocks.get(cookie)  # type: ignore[no-any-return]
        return None

    # -------------------------------------------------------------- roots
    def root_of(self, addr: int) -> str | None:
        """Name the real root holding *addr*, or ``None`` if it is not a root."""
        k = self.k
        if k.kernel_data_start <= addr < k.kernel_data_end:
            return "kernel static"
        for lm in k.modules.values():
            if lm.data <= addr < lm.data + lm.data_size:
                return f"static of module {lm.name}"
        for start, end in k.percpu_static_sections():
            if start <= addr < end:
                return "per-CPU variable"
        for task in k.tasks:
            if task.stack <= addr < task.stack + task.stack_size:
                for frame in task.frames:
                    if frame.base <= addr < frame.base + frame.nwords * frame.word_size:
                        return f"local in a live frame of {task.comm}[{task.pid}]"
                return None
        return None

    # -------------------------------------------------------------- edges
    def add_edge(self, slot: int, target: int, encoding: Encoding,
                 pieces: list[tuple[int, bytes]], target_block: Block | None = None
                 ) -> Edge | None:
        """Record the edge ``slot -> target`` (after its bytes were written).

        *target_block*, when the caller has already looked it up, is the live
        block containing *target*.
        """
        # A new value for the slot ends what it held, even where the new bytes do not
        # cover the old ones (an unaligned or split pointer stored over another layout).
        self._remove(slot, "overwritten")
        tb = target_block if target_block is not None else self.block_at(target)
        if tb is None:
            return None  # a pointer to something that is not an allocation
        root = self.root_of(slot)
        holder = None
        if root is None:
            hb = self.holder_block(slot)
            if hb is None:
                return None  # the slot is in no live memory the program owns
            holder = hb.base
        edge = Edge(slot, target, tb.base, encoding, tuple(pieces), holder, root,
                    self.k.jiffies)
        self.edges[slot] = edge
        for addr, data in pieces:
            self._pieces[addr] = slot if len(data) == self.k.arch.word_size else (slot, len(data))
            self._max_piece = max(self._max_piece, len(data))
        _index_add(self._by_target, tb.base, slot)
        _index_add(self._by_holder, holder, slot)
        return edge

    def add_plain_edges(self, slots: Sequence[int], targets: Sequence[int],
                        bind: Callable[[int], Encoding]) -> None:
        """:meth:`add_edge` for each plain word ``slots[i] -> targets[i]``, in order.

        The words are already written and :meth:`on_write` has heard of each;
        the slots are distinct and aligned, so no edge of the batch overlaps
        another.  *bind* gives the bound encoding for a target block's size.
        The block index (addresses, sizes, kinds) is snapshotted once into
        numpy, so finding each target's block and each slot's holder is a
        vectorised ``searchsorted`` and compare instead of a tree walk; the
        edges are then entered one by one, in chunks: a plain word held by a
        block as a row of the edge table (no record, no piece index entry),
        any other (a root's, or from an encoding of its own) as a record.
        Runtime complexity: ``O(n log(n) + m log(n))`` for *n* blocks and *m*
        edges.
        """
        blocks = self.blocks
        nb = len(blocks)
        if not nb:  # no target can be an allocation: the slots' old edges just end
            for slot in slots:
                self._remove(slot, "overwritten")
            return
        base_objs = list(blocks.keys())  # in address order (the dict's own key objects)
        keys = np.array(base_objs, dtype=np.uint64)
        # Each block's size and kind, read once in dict order (memory order) and put in
        # address order, so no edge looks a block up by itself.
        in_dict = list(dict.values(blocks))
        order = np.argsort(np.fromiter(dict.keys(blocks), dtype=np.uint64, count=nb))
        sizes = np.fromiter((bl.size for bl in in_dict), dtype=np.uint64, count=nb)[order]
        percpu = np.fromiter((bl.kind == "percpu" for bl in in_dict), dtype=bool,
                             count=nb)[order]
        del in_dict
        sl = np.array(slots, dtype=np.uint64)
        tg = np.array(targets, dtype=np.uint64)
        t_at = np.searchsorted(keys, tg, side="right") - 1
        s_at = np.searchsorted(keys, sl, side="right") - 1
        t_safe, s_safe = np.maximum(t_at, 0), np.maximum(s_at, 0)
        # the target lies in a block (differences, not ends: no overflow at the top)
        t_ok = (t_at >= 0) & (tg - keys[t_safe] < sizes[t_safe])
        # the slot lies in a block that holds it (per-CPU blocks: see holder_block)
        h_ok = (s_at >= 0) & (sl - keys[s_safe] < sizes[s_safe]) & ~percpu[s_safe]
        # Only slots inside some root range can be roots: ask root_of about those alone.
        k = self.k
        ranges = [(k.kernel_data_start, k.kernel_data_end)]
        ranges += [(lm.data, lm.data + lm.data_size) for lm in k.modules.values()]
        ranges += k.percpu_static_sections()
        ranges += [(t.stack, t.stack + t.stack_size) for t in k.tasks]
        maybe_root = np.zeros(len(sl), dtype=bool)
        for lo, hi in ranges:
            maybe_root |= (sl >= np.uint64(lo)) & (sl < np.uint64(hi))
        # per edge: 1 the target is in a block, 2 the slot may be a root, 4 a block holds it
        flags = (t_ok.astype(np.int8) | (maybe_root.astype(np.int8) << 1)
                 | (h_ok.astype(np.int8) << 2))
        t_size = sizes[t_safe]
        # (the peak of a big batch: only what the loop reads stays)
        del t_safe, s_safe, t_ok, h_ok, maybe_root, sl, tg, keys, sizes, percpu, order
        jiffies = self.k.jiffies
        edges = self.edges
        table = edges._d  # slot -> record or row (EdgeTable)
        add_row = edges.add_row
        # New pieces go straight into the piece index's dict; its sorted key list is
        # updated once at the end, as SortedDict.update would (no batch-sized dict).  No
        # _remove below can drop one of them: the old pieces over the batch's words ended
        # when the words were written, and the batch's slots are distinct.
        pieces = self._pieces
        rebuild = 10 * len(slots) > len(pieces)
        new_keys: list[int] = []
        set_piece = dict.__setitem__
        by_target, by_holder = self._by_target, self._by_holder
        # Per target size: the bound encoding, the word size when it writes the plain word
        # at the slot (Encoding.writes unchanged), so its piece is built right here, and
        # then the kind of its edges' rows in the edge table.
        bound: dict[int, tuple[Encoding, int, int]] = {}
        word = k.arch.word_size
        max_piece = self._max_piece
        new = _new_record
        e_slot, e_target, e_tbase, e_enc, e_pieces, e_holder, e_root, e_jiffies = _EDGE_SETTERS
        m = len(slots)
        with paused_gc():  # many new objects, none of them cyclic: no collection needed
            # The slots' old edges end first, in order: what ends and when is the same as
            # edge by edge (no new edge of the batch can end: the slots are distinct), and
            # no row is read while the batch's new rows wait to be sorted into a run.
            for slot in slots:
                if slot in table:
                    self._remove(slot, "overwritten")
            try:
                for lo in range(0, m, _CHUNK):  # per chunk: the per-edge lists stay small
                    hi = min(m, lo + _CHUNK)
                    for slot, target, ti, si, flag, tsize in zip(
                            slots[lo:hi], targets[lo:hi], t_at[lo:hi].tolist(), s_at[lo:hi].tolist(),
                            flags[lo:hi].tolist(), t_size[lo:hi].tolist(), strict=True):
                        if not flag & 1:
                            continue  # a pointer to something that is not an allocation
                        root = self.root_of(slot) if flag & 2 else None
                        holder = None
                        if root is None:
                            if flag & 4:
                                holder = base_objs[si]
                            else:
                                hb = self.holder_block(slot)
                                if hb is None:
                                    continue  # the slot is in no live memory the program owns
                                holder = hb.base
                        b = bound.get(tsize)
                        if b is None:
                            enc = bind(tsize)
                            cls = type(enc)
                            plain = cls.writes is Encoding.writes and cls.encode is Encoding.encode
                            ws = enc.word_size if plain else 0
                            b = bound[tsize] = (enc, ws,
                                                edges.add_kind(enc, jiffies, ws) if ws == word
                                                else -1)
                        encoding, ws, kind = b
                        tbase = base_objs[ti]
                        if ws == word and holder is not None and not slot % word:
                            # The edge as a row of the table, the common case: no record,
                            # and its piece is found through the table's row slots.
                            add_row(slot, target, tbase, holder, kind)
                        else:
                            if ws:
                                piece: tuple[tuple[int, bytes], ...] = (
                                    (slot, (target & ((1 << (8 * ws)) - 1)).to_bytes(ws,
                                                                                    "little")),)
                            else:
                                piece = tuple(encoding.writes(target, slot))
                            # Edge(slot, target, tbase, encoding, piece, holder, root,
                            # jiffies), faster
                            edge = new(Edge)
                            e_slot(edge, slot)
                            e_target(edge, target)
                            e_tbase(edge, tbase)
                            e_enc(edge, encoding)
                            e_pieces(edge, piece)
                            e_holder(edge, holder)
                            e_root(edge, root)
                            e_jiffies(edge, jiffies)
                            edges[slot] = edge
                            for addr, data in piece:
                                n = len(data)
                                if not rebuild and addr not in pieces:
                                    new_keys.append(addr)
                                set_piece(pieces, addr, slot if n == word else (slot, n))
                                if n > max_piece:
                                    max_piece = n
                        if tbase in by_target:
                            _index_add(by_target, tbase, slot)
                        else:
                            by_target[tbase] = slot
                        if holder in by_holder:
                            _index_add(by_holder, holder, slot)
                        else:
                            by_holder[holder] = slot
            finally:  # the indexes stay whole even if an encoding raised
                self._max_piece = max_piece
                _add_sorted_keys(pieces, None if rebuild else new_keys)
                del t_at, s_at, flags, t_size, new_keys  # gone before the rows are sorted
                base_objs.clear()
                edges.flush()

    def end_edge(self, slot: int, reason: str = "overwritten") -> None:
        """End the edge stored at *slot*, if any (a NULL store, for instance)."""
        self._remove(slot, reason)

    def _remove(self, slot: int, reason: str) -> None:
        edge = self.edges.pop_edge(slot)
        if edge is None:
            return
        for addr, _ in edge.pieces:
            self._pieces.pop(addr, None)
        _index_discard(self._by_target, edge.target_base, slot)
        _index_discard(self._by_holder, edge.holder, slot)
        self.history[slot] = RemovedEdge(edge, reason, self.k.jiffies)

    def _remove_range(self, start: int, end: int, reason: str) -> None:
        ws = self.k.arch.word_size
        # the row edges' pieces (one aligned word at the slot) that overlap the range
        found = self.edges.rows_between(start - ws + 1, end) if self.edges.rows else []
        pieces = self._pieces
        first = ceil_key(pieces, start - self._max_piece + 1) if pieces else None
        if first is not None and first < end:
            rows = len(found)
            for a in pieces.irange(first, end - 1):
                v = pieces[a]
                slot, n = v if isinstance(v, tuple) else (v, ws)
                if a + n > start:
                    found.append(a)
            if rows and len(found) > rows:
                found.sort()  # every piece in address order, as if all were in the index
            # the slot of each piece (a row edge's piece is at its slot, not in the index),
            # in address order: the set iterates as the index's walk would have built it
            hits = set()
            for a in found:
                v = pieces.get(a, a)
                hits.add(v[0] if isinstance(v, tuple) else v)
        elif not found:
            return  # no piece starts close enough to overlap (the common case)
        else:
            hits = set(found)  # a row edge's slot is its piece's address
        for slot in hits:
            self._remove(slot, reason)

    def _piece_list(self) -> list[tuple[int, int | tuple[int, int]]]:
        """Every recorded piece as ``(address, index entry)``, in address order, the row
        edges' pieces included: the piece index as it would be with no row edges.

        >>> from kmemsim import Kernel
        >>> k = Kernel(); a, b = k.kmalloc_bulk([64, 64])
        >>> k.store_many([a], [b]); k.store(a + 8, b)
        >>> pieces = k.truth._piece_list()
        >>> k.truth.edges.is_row(a), (a, a) in pieces, (a + 8, a + 8) in pieces
        (True, True, True)
        """
        rows = [(s, s) for s in self.edges if self.edges.is_row(s)]
        return sorted([*self._pieces.items(), *rows])

    def _piece(self, addr: int) -> tuple[int, int]:
        """``(slot, length)`` of the piece recorded at *addr*."""
        v = self._pieces[addr]
        return v if isinstance(v, tuple) else (v, self.k.arch.word_size)

    def on_write(self, addr: int, n: int) -> None:
        """Bytes at ``[addr, addr+n)`` changed: edges whose slot they touch end."""
        if n > 0:
            self._remove_range(addr, addr + n, "overwritten")

    def on_write_words(self, addrs: Sequence[int]) -> None:
        """:meth:`on_write` for one word at each of *addrs* (distinct, aligned), in order.

        Only the words that some recorded piece may overlap are looked at one
        by one.  Runtime complexity: ``O(p + m log(p))`` for *p* pieces and *m*
        words.
        """
        pieces, edges = self._pieces, self.edges
        if not addrs or not (pieces or edges.rows):
            return
        ws = self.k.arch.word_size
        m = len(addrs)
        if pieces:
            starts = np.fromiter(pieces.keys(), dtype=np.uint64, count=len(pieces))
            a = np.array(addrs, dtype=np.uint64)
            # the first piece starting late enough to reach the word, if it starts inside it
            lo = np.where(a >= np.uint64(self._max_piece - 1),
                          a - np.uint64(self._max_piece - 1), np.uint64(0))
            i = np.searchsorted(starts, lo, side="left")
            near = i < len(starts)
            near[near] = starts[i[near]] < a[near] + np.uint64(ws)
        else:
            near = np.zeros(m, dtype=bool)
        if edges.rows:
            # a row edge's piece is the aligned word at its slot: only that word overlaps it
            d = edges._d
            near[[j for j, x in enumerate(addrs) if type(d.get(x)) is int]] = True
        for j in np.flatnonzero(near).tolist():
            self._remove_range(addrs[j], addrs[j] + ws, "overwritten")

    def on_frame_return(self, start: int, end: int) -> None:
        """A stack frame returned: its locals stop being references (their bytes stay)."""
        self._remove_range(start, end, "frame returned")

    # -------------------------------------------------------- reachability
    def referrers(self, base: int) -> list[Edge]:
        """The live edges that point into the block at *base*."""
        return [self.edges[s] for s in sorted(_slots(self._by_target.get(base)))]

    def out_edges(self, holder: int | None) -> list[Edge]:
        """The live edges held by the block at *holder* (``None``: the roots)."""
        return [self.edges[s] for s in sorted(_slots(self._by_holder.get(holder)))]

    def reachable_blocks(self, extra_roots: Iterable[int] = (), *, edges: bool = True
                         ) -> dict[int, Edge | None]:
        """Every block reachable from the roots, mapped to the edge that first reached it.

        Breadth-first, so following the recorded edges back gives a shortest
        path to a root.  With ``edges=False`` every value is ``None``: only
        which blocks are reachable, without building a record per bulk-stored
        edge (not for :meth:`path_to_root`).  ``O(blocks + edges)``.
        """
        parent: dict[int, Edge | None] = {}
        queue: deque[int] = deque()
        for base in extra_roots:
            if base not in parent:
                parent[base] = None
                queue.append(base)
        for edge in self.out_edges(None):
            if edge.target_base not in parent:
                parent[edge.target_base] = edge if edges else None
                queue.append(edge.target_base)
        # dict.values: the plain dict underneath, much faster than SortedDict's view
        for base in sorted(b.base for b in dict.values(self.blocks) if b.kind == "module"):
            if base not in parent:
                parent[base] = None  # a loaded module's data is a root
                queue.append(base)
        holders, table = self._by_holder, self.edges._d
        row_edge = self.edges._edge if edges else _no_edge
        # a record built per block reached (from the rows), none of them cyclic
        with paused_gc():
            while queue:
                # Slots in address order: the recorded parents (and so the paths) are stable.
                for slot in sorted(_slots(holders.get(queue.popleft()))):
                    # the target block from the row or the record: a record is built only
                    # for an edge that reaches a block first
                    v = table[slot]
                    if type(v) is int:  # a row: the dict holds its target block's base
                        tbase = v
                        if tbase not in parent:
                            parent[tbase] = row_edge(slot, v)
                            queue.append(tbase)
                    elif v.target_base not in parent:  # type: ignore[union-attr]
                        parent[v.target_base] = v if edges else None  # type: ignore[union-attr,assignment]
                        queue.append(v.target_base)  # type: ignore[union-attr]
        return parent

    def path_to_root(self, base: int, reach: dict[int, Edge | None] | None = None) -> list[Edge]:
        """The chain of edges from a root to the block at *base* (empty if unreachable).

        *reach* is a :meth:`reachable_blocks` result with its edges (computed if not given).
        """
        reach = self.reachable_blocks() if reach is None else reach
        path: list[Edge] = []
        cur: int | None = base
        while cur is not None and cur in reach:
            edge = reach[cur]
            if edge is None:
                break
            path.append(edge)
            cur = edge.holder
        return path[::-1]

    def _check(self) -> None:
        """Assert that the indexes agree with the edge table, both ways, and that every
        edge joins live blocks."""
        ws = self.k.arch.word_size
        assert list(self._pieces._list) == sorted(dict.keys(self._pieces))
        assert self.edges.rows == sum(self.edges.is_row(s) for s in self.edges)
        for slot, edge in self.edges.items():
            assert edge.slot == slot
            assert slot in _slots(self._by_target[edge.target_base])
            assert slot in _slots(self._by_holder[edge.holder])
            assert edge.target_base in self.blocks
            assert edge.holder is None or edge.holder in self.blocks
            if self.edges.is_row(slot):  # one aligned word, found through the row slots
                assert edge.pieces == ((slot, edge.pieces[0][1]),)
                assert len(edge.pieces[0][1]) == ws
                assert not slot % ws
                assert slot not in self._pieces
                assert self.edges.rows_between(slot, slot + 1) == [slot]
                assert self.edges.rows_between(slot - 64 * ws, slot + 64 * ws).count(slot) == 1
                continue
            for addr, data in edge.pieces:
                assert self._piece(addr) == (slot, len(data))
        for addr in self._pieces:
            slot, n = self._piece(addr)
            assert (addr, n) in {(a, len(d)) for a, d in self.edges[slot].pieces}
        for base, entry in self._by_target.items():
            assert all(self.edges[s].target_base == base for s in _slots(entry))
        for holder, entry in self._by_holder.items():
            assert all(self.edges[s].holder == holder for s in _slots(entry))
