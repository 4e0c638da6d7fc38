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
from bisect import bisect_left, bisect_right
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
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

import numpy as np
from sortedcontainers import SortedDict

from .._sorted import ceil_key, floor_key
from ..errors import KmemsimTypeError, KmemsimValueError
from ..memory import paused_gc
from .encodings import Encoding

if TYPE_CHECKING:
    from ..kernel import Kernel

#: The longest piece a built-in encoding writes (one word); user encodings may write longer
#: ones, and :class:`Truth` widens its overlap search to the longest piece it has seen.
_MAX_PIECE = 8

#: One entry of the record slot indexes (``Truth._rec_by_target``, ``Truth._rec_by_holder``;
#: row edges are found through the edge table's runs instead): most blocks
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
_V = TypeVar("_V", covariant=True)
#: Row runs are compacted once this many of their rows are dead (and over half of them).
_COMPACT_MIN = 1 << 16
_WORD_MASK = {n: (1 << (8 * n)) - 1 for n in (1, 2, 4, 8, 16)}  # by word size (row edges are words)
_U64 = np.uint64
#: The attributes of an edge table as saved before rows had columns of their own (and
#: a dict entry each): a table loaded with them is converted on first use.
_OLD_TABLE = ("_d", "_ws", "_runs", "_new", "_kinds", "_live", "_stored")

NpArray = np.ndarray[tuple[int], np.dtype[Any]]


def _np_col(col: array | bytearray) -> NpArray:  # type: ignore[type-arg]
    """A column as a numpy array (a view of its buffer: columns are never resized)."""
    if type(col) is bytearray:
        return np.frombuffer(col, dtype=np.uint8)
    return np.frombuffer(col, dtype={"I": np.uint32, "Q": np.uint64}[col.typecode])  # type: ignore[union-attr]


def _col(a: NpArray, typecode: str) -> array:  # type: ignore[type-arg]
    """*a* as a new ``array`` column of *typecode* (``I``: uint32, ``Q``: uint64)."""
    out = array(typecode)
    c = np.ascontiguousarray(a, dtype=np.uint32 if typecode == "I" else np.uint64)
    out.frombytes(c.data.cast("B"))
    return out


def _perm(keys: NpArray) -> array:  # type: ignore[type-arg]
    """The stable sorting permutation of *keys* as a column (uint32 where it fits)."""
    order = np.argsort(keys, kind="stable")
    return _col(order, "I" if len(keys) < 1 << 32 else "Q")


class _Run:
    """Rows sorted by slot, each with a liveness byte, and the orders by target and by holder.

    Columns are ``array``s (cheap to index one item from Python, numpy views
    for batches): ``slots``, ``targets``, ``tbases`` (target block bases),
    ``holders``, ``seqs`` (uint64), ``kinds`` (uint32), ``live`` (a
    ``bytearray``: a row ends by clearing its byte), ``by_target`` and
    ``by_holder`` (row indexes sorted by target base or holder, then slot).
    A run never changes but for its live bytes; merging makes a new one.
    """

    __slots__ = ("by_holder", "by_target", "holders", "kinds", "live", "seqs", "slots",
                 "targets", "tbases")

    def __init__(self, cols: list[NpArray], order: NpArray) -> None:
        """A run of the rows given as numpy columns (slots, targets, target bases, holders,
        kinds, insertion numbers), put in *order* (by slot; slots distinct).  *cols* is
        emptied a column at a time as each is copied: a lower peak for a big batch."""
        out = []
        for code in "QQQQIQ":
            c = cols.pop(0)
            out.append(_col(c[order], code))
            del c
        self.slots, self.targets, self.tbases, self.holders, self.kinds, self.seqs = out
        self.live = bytearray(b"\x01") * len(self.slots)
        self.by_target = _perm(_np_col(self.tbases))
        self.by_holder = _perm(_np_col(self.holders))

    def __len__(self) -> int:
        return len(self.slots)

    def find(self, slot: int) -> int:
        """The index of the live row of *slot* here, or -1."""
        s = self.slots
        i = bisect_left(s, slot)
        return i if i < len(s) and s[i] == slot and self.live[i] else -1

    def live_index(self) -> NpArray:
        """The indexes of the live rows, ascending (so by slot)."""
        return np.flatnonzero(_np_col(self.live))

    def keyed(self, by_holder: bool, key: int) -> list[int]:
        """The indexes of the live rows whose holder (or target base) is *key*, by slot."""
        perm, col = (self.by_holder, self.holders) if by_holder else (self.by_target,
                                                                       self.tbases)
        j = bisect_left(perm, key, key=col.__getitem__)
        out = []
        live, n = self.live, len(perm)
        while j < n:
            i = perm[j]
            if col[i] != key:
                break
            if live[i]:
                out.append(i)
            j += 1
        return out


class EdgeTable(MutableMapping[int, Edge]):
    """``slot -> Edge`` (``Truth.edges``): a dict in behaviour and order, compact in bytes.

    An edge of a bulk plain store (:meth:`Truth.add_plain_edges`) is kept as
    a row: columns only (slot, target, target block base, holder, kind,
    insertion number, a live byte and its place in two secondary orders,
    about 53 bytes), its :class:`Edge` record built when read, equal to the
    one a single store records.  Every other edge is kept as its record, in
    a dict.  Rows live in a few runs sorted by slot (a new run per batch,
    merged with the previous one when they are of a size, as in a
    log-structured merge tree, dead rows dropped then): a row is found by a
    binary search in each run, newest first, and ended by clearing its live
    byte.  A row edge's one piece, the aligned word at its slot, is found
    through the runs too (:meth:`rows_between`) rather than the truth's piece
    index.  Iteration is in insertion order, as a dict's (a slot that was
    replaced in place keeps its place), by the insertion number every edge
    has.  Records read from a row are new objects each time (equal, not
    identical).  A row's slot is in no dict: the truth finds the row edges
    into a block, or held by one, through each run's orders by target block
    and by holder (:meth:`rows_keyed`), a slot of the table through
    :meth:`contains_mask` for a batch.  Runtime complexity: a lookup is
    ``O(r log(n))`` for *r* runs (``O(log(n))`` of them).  A table saved in
    the layout before rows had columns of their own (a dict entry per row) is
    converted the first time it is used.

    >>> from kmemsim import Kernel
    >>> from kmemsim.truth.encodings import Plain
    >>> enc = Plain().bind(Kernel().arch, 64)
    >>> t = EdgeTable(8)
    >>> kind = t.add_kind(enc, 5, 8)
    >>> t.add_rows([0x1000], [0x2000], [0x2000], [0x3000], [kind])
    >>> e = t[0x1000]
    >>> (hex(e.target), hex(e.holder), e.root, e.jiffies, e.pieces[0][1].hex())
    ('0x2000', '0x3000', None, 5, '0020000000000000')
    >>> list(t) == [0x1000] and t.pop(0x1000) == e and len(t) == 0
    True
    """

    def __init__(self, word_size: int) -> None:
        self._rec: dict[int, Edge] = {}  # slot -> record (the edges that are not rows)
        self._rseq: dict[int, int] = {}  # slot -> insertion number of its record
        self._word = word_size
        self._rows: list[_Run] = []  # oldest first
        self._kind_list: list[tuple[Encoding, int, int]] = []  # (encoding, jiffies, piece length)
        self._nrows = 0  # live rows
        self._nstored = 0  # rows in the runs, dead ones included
        self._seq = 0  # the next insertion number

    if not TYPE_CHECKING:
        def __getattr__(self, name: str) -> Any:
            # Only for an attribute that is missing: a table saved in the old layout.
            if name.startswith("__") or "_d" not in self.__dict__:
                raise AttributeError(name)
            self._upgrade()
            return getattr(self, name)

    def _upgrade(self) -> None:
        """Convert a table loaded from a save of the old layout (a dict entry per row, runs
        of four columns) to this one: same edges, same order."""
        old = self.__dict__
        rows: dict[int, tuple[int, int, int]] = {}  # slot -> (target, holder, kind)
        for s, t, h, k in [*old["_runs"], old["_new"]]:  # later rows win, as in the old table
            rows.update(zip(s, zip(t, h, k, strict=True), strict=True))
        d = old["_d"]
        kinds = list(old["_kinds"])
        word = old["_ws"]
        for name in _OLD_TABLE:
            del old[name]
        self.__init__(word)  # type: ignore[misc]
        self._kind_list = kinds
        cols: list[list[int]] = [[], [], [], [], [], []]
        for seq, (slot, v) in enumerate(d.items()):
            if type(v) is int:
                t, h, k = rows[slot]
                for c, x in zip(cols, (slot, t, v, h, k, seq), strict=True):
                    c.append(x)
            else:
                self._rec[slot] = v
                self._rseq[slot] = seq
        self._seq = len(d)
        self.add_rows(*cols)

    # --------------------------------------------------------------- rows
    def add_kind(self, encoding: Encoding, jiffies: int, piece_len: int) -> int:
        """A new kind of row (the shared fields of some rows); its id for :meth:`add_rows`."""
        self._kind_list.append((encoding, jiffies, piece_len))
        return len(self._kind_list) - 1

    def reserve(self, n: int) -> int:
        """Take *n* insertion numbers (for :meth:`add_rows` and :meth:`put_record`); the first.
        """
        first = self._seq
        self._seq += n
        return first

    def add_rows(self, slots: Sequence[int] | NpArray, targets: Sequence[int] | NpArray,
                 target_bases: Sequence[int] | NpArray, holders: Sequence[int] | NpArray,
                 kinds: Sequence[int] | NpArray, seqs: Sequence[int] | NpArray | None = None
                 ) -> None:
        """Record the plain edges ``slots[i] -> targets[i]`` (distinct slots, none in the
        table) as rows, inserted in order (or at the insertion numbers *seqs*, from
        :meth:`reserve`).

        Runtime complexity: amortised ``O(log(n))`` numpy work per row.
        """
        s = np.asarray(slots, dtype=_U64)
        m = len(s)
        if not m:
            return
        q = (np.arange(self.reserve(m), self._seq, dtype=_U64) if seqs is None
             else np.asarray(seqs, dtype=_U64))
        cols: list[NpArray] = [
            s, np.asarray(targets, dtype=_U64), np.asarray(target_bases, dtype=_U64),
            np.asarray(holders, dtype=_U64), np.asarray(kinds, dtype=np.uint32), q]
        del slots, targets, target_bases, holders, kinds, seqs, s, q
        self._add_run(cols)

    def _add_run(self, cols: list[NpArray]) -> None:
        """:meth:`add_rows` of the columns *cols* (slots, targets, target bases, holders,
        kinds, insertion numbers: numpy, uint64 but the kinds' uint32), emptied as the run
        is made."""
        m = len(cols[0])
        order = np.argsort(cols[0], kind="stable")
        run = _Run(cols, order)
        del order
        self._nrows += m
        self._nstored += m
        runs = self._rows
        runs.append(run)
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
            newer = runs.pop()
            runs[-1] = self._merged([runs[-1], newer])
        self._maybe_compact()

    def _merged(self, runs: list[_Run], kinds: NpArray | None = None) -> _Run:
        """One run of the live rows of *runs* (with *kinds*, their kinds renumbered by it)."""
        parts: list[list[NpArray]] = [[], [], [], [], [], []]
        for r in runs:
            idx = r.live_index()
            for p, c in zip(parts, (r.slots, r.targets, r.tbases, r.holders, r.kinds, r.seqs),
                            strict=True):
                p.append(_np_col(c)[idx])
        cols = [np.concatenate(p) for p in parts]
        del parts
        order = np.argsort(cols[0], kind="stable")
        if kinds is not None:
            cols[4] = kinds[cols[4]]
        run = _Run(cols, order)
        self._nstored += len(run) - sum(len(r) for r in runs)
        return run

    def _maybe_compact(self) -> None:
        if self._nstored - self._nrows >= _COMPACT_MIN and self._nstored > 2 * self._nrows:
            self._compact()

    def _compact(self) -> None:
        """One run of the live rows alone, and only the kinds they use."""
        used = np.zeros(len(self._kind_list), dtype=bool)
        for r in self._rows:
            used[_np_col(r.kinds)[r.live_index()]] = True
        keep = np.flatnonzero(used)
        renumber = np.zeros(len(used), dtype=np.uint32)
        renumber[keep] = np.arange(len(keep), dtype=np.uint32)
        run = self._merged(self._rows, renumber)
        self._kind_list = [self._kind_list[i] for i in keep.tolist()]
        self._rows = [run] if len(run) else []
        self._nstored = len(run)

    def _find(self, slot: int) -> tuple[_Run, int] | None:
        """The run and index of the live row of *slot*, if it has one."""
        for run in reversed(self._rows):
            i = run.find(slot)
            if i >= 0:
                return run, i
        return None

    def _kill(self, run: _Run, i: int) -> None:
        """End the live row *i* of *run*; compact the runs once most of their rows are dead."""
        run.live[i] = 0
        self._nrows -= 1
        self._maybe_compact()

    @property
    def rows(self) -> int:
        """How many edges are kept as rows."""
        return self._nrows

    def is_row(self, slot: int) -> bool:
        """Whether the edge at *slot* is kept as a row."""
        return slot not in self._rec and self._find(slot) is not None

    def rows_between(self, lo: int, hi: int) -> list[int]:
        """The slots of the row edges in ``[lo, hi)``, ascending (row slots are aligned).

        ``O(r log(n) + k)`` for *r* runs.
        """
        found: list[int] = []
        for run in self._rows:
            s, live = run.slots, run.live
            i, j = bisect_left(s, lo), bisect_left(s, hi)
            found += [s[x] for x in range(i, j) if live[x]]
        if len(self._rows) > 1:
            found.sort()
        return found

    def row_mask(self, addrs: NpArray) -> NpArray:
        """Which of *addrs* (uint64) are the slots of row edges (a bool array)."""
        out = np.zeros(len(addrs), dtype=bool)
        for run in self._rows:
            s = _np_col(run.slots)
            if not len(s):
                continue
            i = np.minimum(np.searchsorted(s, addrs), len(s) - 1)
            out |= (s[i] == addrs) & (_np_col(run.live)[i] != 0)
        return out

    def contains_mask(self, addrs: NpArray) -> NpArray:
        """Which of *addrs* (uint64) are slots of the table (a bool array)."""
        out = self.row_mask(addrs)
        if self._rec:  # (not np.isin: it imports numpy.ma, ~8 ms in a fresh process)
            rec = np.sort(np.fromiter(self._rec, dtype=_U64, count=len(self._rec)))
            i = np.minimum(np.searchsorted(rec, addrs), len(rec) - 1)
            out |= rec[i] == addrs
        return out

    def rows_keyed(self, key: int | None, *, by_holder: bool) -> list[tuple[int, _Run, int]]:
        """``(slot, run, index)`` of the row edges whose holder (or target block base) is
        *key*, in no particular order."""
        if key is None or not self._nrows:
            return []  # (a root's edges are records)
        out = []
        for run in self._rows:
            slots = run.slots
            out += [(slots[i], run, i) for i in run.keyed(by_holder, key)]
        return out

    def row_slots(self) -> list[int]:
        """The slots of every row edge, ascending."""
        return self.rows_between(0, 1 << 64)

    def _edge(self, run: _Run, i: int, new: Callable[[type[Edge]], Edge] = _new_record,
              setters: tuple[Callable[[Edge, object], None], ...] = _EDGE_SETTERS) -> Edge:
        """The record of row *i* of *run* (the defaults bind globals as locals)."""
        encoding, jiffies, n = self._kind_list[run.kinds[i]]
        slot, target = run.slots[i], run.targets[i]
        # Edge(slot, target, target_base, encoding, pieces, holder, None, jiffies), faster
        edge = new(Edge)
        e_slot, e_target, e_tbase, e_enc, e_pieces, e_holder, e_root, e_jiffies = setters
        e_slot(edge, slot)
        e_target(edge, target)
        e_tbase(edge, run.tbases[i])
        e_enc(edge, encoding)
        # (the mask is a no-op for a checked target: kept as the stored piece has it)
        e_pieces(edge, ((slot, (target & _WORD_MASK[n]).to_bytes(n, "little")),))
        e_holder(edge, run.holders[i])
        e_root(edge, None)
        e_jiffies(edge, jiffies)
        return edge

    def put_record(self, slot: int, edge: Edge, seq: int) -> None:
        """Record *edge* at *slot* (not in the table) with insertion number *seq*
        (from :meth:`reserve`)."""
        self._rec[slot] = edge
        self._rseq[slot] = seq

    def pop_kept(self, slot: int) -> tuple[Edge, bool] | None:
        """Remove the edge at *slot*: it and whether it was a record (``None``: none there)."""
        edge = self._rec.pop(slot, None)
        if edge is not None:
            del self._rseq[slot]
            return edge, True
        found = self._find(slot)
        if found is None:
            return None
        edge = self._edge(*found)
        self._kill(*found)
        return edge, False

    def _order(self) -> tuple[list[int], list[Any], list[int]]:
        """Slots in insertion order, each with its run (``None``: a record) and row index."""
        rec, rseq = self._rec, self._rseq
        if not self._nrows:
            slots = sorted(rec, key=rseq.__getitem__)
            return slots, [None] * len(slots), [0] * len(slots)
        runs = [r for r in self._rows if r.live.find(1) >= 0]
        idx = [r.live_index() for r in runs]
        seqs = [_np_col(r.seqs)[i] for r, i in zip(runs, idx, strict=True)]
        seqs.append(np.fromiter((rseq[s] for s in rec), dtype=_U64, count=len(rec)))
        which = np.repeat(np.arange(len(runs) + 1), [len(q) for q in seqs])
        at = np.concatenate([*idx, np.arange(len(rec))]) if idx else np.arange(len(rec))
        order = np.argsort(np.concatenate(seqs), kind="stable")
        which_l, at_l = which[order].tolist(), at[order].tolist()
        rec_slots = list(rec)
        out_runs: list[Any] = [*runs, None]
        slots = [out_runs[w].slots[a] if w < len(runs) else rec_slots[a]
                 for w, a in zip(which_l, at_l, strict=True)]
        return slots, [out_runs[w] for w in which_l], at_l

    # ------------------------------------------------------------ mapping
    def __getitem__(self, slot: int) -> Edge:
        edge = self._rec.get(slot)
        if edge is not None:
            return edge
        found = self._find(slot)
        if found is None:
            raise KeyError(slot)
        return self._edge(*found)

    def __setitem__(self, slot: int, edge: Edge) -> None:
        if slot in self._rec:
            self._rec[slot] = edge  # replaced in place: its place in the order stays
            return
        found = self._find(slot)
        if found is None:
            seq = self.reserve(1)
        else:  # a row becomes a record, in the row's place
            run, i = found
            seq = run.seqs[i]
            self._kill(run, i)
        self.put_record(slot, edge, seq)

    def __delitem__(self, slot: int) -> None:
        if self.pop_kept(slot) is None:
            raise KeyError(slot)

    def __contains__(self, slot: object) -> bool:
        return slot in self._rec or (type(slot) is int and self._find(slot) is not None)

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[0])

    def __len__(self) -> int:
        return len(self._rec) + self._nrows

    def __repr__(self) -> str:
        return f"EdgeTable({dict(self.items())!r})"

    @overload
    def get(self, slot: int, /) -> Edge | None: ...
    @overload
    def get(self, slot: int, default: Edge, /) -> Edge: ...
    @overload
    def get(self, slot: int, default: _T, /) -> Edge | _T: ...
    def get(self, slot: int, default: object = None, /) -> Edge | object:
        edge = self._rec.get(slot)
        if edge is not None:
            return edge
        found = self._find(slot) if type(slot) is int else None
        return default if found is None else self._edge(*found)

    def pop_edge(self, slot: int) -> Edge | None:
        """Remove the edge at *slot* and return it (``None`` if there is none)."""
        popped = self.pop_kept(slot)
        return None if popped is None else popped[0]

    def clear(self) -> None:
        self._rec.clear()
        self._rseq.clear()
        self._rows = []
        self._kind_list = []
        self._nrows = self._nstored = 0

    def items(self) -> ItemsView[int, Edge]:
        return _TableItems(self)

    def values(self) -> ValuesView[Edge]:
        return _TableValues(self)

    def _records_in_order(self) -> Iterator[tuple[int, Edge]]:
        slots, runs, at = self._order()
        rec, edge = self._rec, self._edge
        for slot, run, i in zip(slots, runs, at, strict=True):
            yield slot, (rec[slot] if run is None else edge(run, i))

    def _check(self) -> None:
        """Assert that the runs, the records and the counts agree."""
        live = 0
        seen: set[int] = set()
        seqs = list(self._rseq.values())
        assert self._rseq.keys() == self._rec.keys()
        for run in self._rows:
            n = len(run)
            assert n
            assert all(len(c) == n for c in (run.targets, run.tbases, run.holders,
                                                   run.kinds, run.seqs, run.live,
                                                   run.by_target, run.by_holder))
            s = _np_col(run.slots)
            assert bool((s[1:] > s[:-1]).all())
            for perm, col in ((run.by_target, run.tbases), (run.by_holder, run.holders)):
                p = _np_col(perm)
                assert sorted(p.tolist()) == list(range(n))
                keyed = np.stack([_np_col(col)[p], s[p]])  # by key, then slot
                assert sorted(map(tuple, keyed.T.tolist())) == list(map(tuple, keyed.T.tolist()))
            assert set(run.live) <= {0, 1}
            idx = run.live_index().tolist()
            live += len(idx)
            for i in idx:
                slot = run.slots[i]
                assert slot not in seen
                assert slot not in self._rec
                assert run.kinds[i] < len(self._kind_list)
                seen.add(slot)
                seqs.append(run.seqs[i])
        assert live == self._nrows
        assert self._nstored == sum(len(r) for r in self._rows)
        assert len(set(seqs)) == len(seqs)
        assert all(q < self._seq for q in seqs)


class _InOrder(Protocol[_V]):
    def _records_in_order(self) -> Iterator[tuple[int, _V]]: ...


class _TableItems(ItemsView[int, _V]):
    """A table's ``items()`` (:class:`EdgeTable`: insertion order, :class:`BlockTable`:
    address order), in one pass."""

    _mapping: _InOrder[_V]

    def __iter__(self) -> Iterator[tuple[int, _V]]:
        return self._mapping._records_in_order()


class _TableValues(ValuesView[_V]):
    """A table's ``values()``, in the order of its ``items()``, in one pass."""

    _mapping: _InOrder[_V]

    def __iter__(self) -> Iterator[_V]:
        for _, value in self._mapping._records_in_order():
            yield value


#: A bulk allocation of fewer blocks than this is kept as records (a run costs some numpy
#: work to make and merge, more than a few records).
_ROW_MIN = 16
_INT = (int, np.integer)  # the keys a row may be looked up by (as a SortedDict would)


class _BlockRun:
    """Blocks sorted by base (distinct): ``bases`` (uint64), ``sizes`` (uint32, or uint64
    for a run with a size that does not fit), ``codes`` (uint32: the kind and cache, by
    :class:`BlockTable`'s code table) and a ``live`` byte each (a block ends by clearing
    it).  A run never changes but for its live bytes; merging makes a new one."""

    __slots__ = ("bases", "codes", "live", "sizes")

    def __init__(self, bases: NpArray, sizes: NpArray, codes: NpArray) -> None:
        """A run of the blocks given as numpy columns, already sorted by base."""
        self.bases = _col(bases, "Q")
        big = len(sizes) and int(sizes.max()) >= 1 << 32
        self.sizes = _col(sizes, "Q" if big else "I")
        self.codes = _col(codes, "I")
        self.live = bytearray(b"\x01") * len(self.bases)

    def __len__(self) -> int:
        return len(self.bases)

    def find(self, base: int | np.integer[Any]) -> int:
        """The index of the live block at *base* here, or -1."""
        b = self.bases
        i = bisect_left(b, base)
        return i if i < len(b) and b[i] == base and self.live[i] else -1

    def floor(self, addr: int) -> int:
        """The index of the live block with the largest base ``<= addr`` here, or -1."""
        i = bisect_right(self.bases, addr)
        return self.live.rfind(1, 0, i) if i else -1

    def live_index(self) -> NpArray:
        """The indexes of the live blocks, ascending (so by base)."""
        return np.flatnonzero(_np_col(self.live))


class BlockTable(MutableMapping[int, Block]):
    """``base -> Block`` (``Truth.blocks``): a ``SortedDict`` in behaviour, compact in bytes.

    A block of a bulk allocation (:meth:`add_rows`) is kept as a row:
    columns only (base, size, a kind-and-cache code and a live byte, 17
    bytes), its :class:`Block` record built when read, equal to the one
    :meth:`Truth.on_alloc` stores.  Every other block is kept as its record,
    in a ``SortedDict``.  Rows live in a few runs sorted by base (a new run
    per batch, merged with the previous one when they are of a size, as in a
    log-structured merge tree, dead rows dropped then): a row is found by a
    binary search in each run, and ended by clearing its live byte.
    Iteration (keys, values, items) is in ascending address order, as a
    ``SortedDict``'s; :meth:`floor_key` and :meth:`block_at` find the block
    at or below an address.  Records read from a row are new objects each
    time (equal, not identical).  Runtime complexity: a lookup is
    ``O(r log(n))`` for *r* runs (``O(log(n))`` of them); iterating is
    ``O(n log(r))`` (numpy) plus a record per block.

    >>> t = BlockTable()
    >>> t.add_rows([0x3000, 0x1000], [64, 32], "slab", [1, 0], ["kmalloc-32", "kmalloc-64"])
    >>> t[0x2000] = Block(0x2000, 16, "vmalloc")
    >>> [hex(b) for b in t], t[0x1000]
    (['0x1000', '0x2000', '0x3000'], Block(base=4096, size=32, kind='slab', cache='kmalloc-32'))
    >>> t.block_at(0x3010).cache, t.block_at(0x3040), t.floor_key(0x2fff)
    ('kmalloc-64', None, 8192)
    >>> t.pop(0x3000).size, 0x3000 in t, len(t)
    (64, False, 2)
    """

    def __init__(self) -> None:
        self._rec: SortedDict = SortedDict()  # base -> Block (the blocks that are not rows)
        self._runs: list[_BlockRun] = []  # oldest first
        self._codes: list[tuple[str, str]] = []  # code -> (kind, cache)
        self._code_of: dict[tuple[str, str], int] = {}
        self._nrows = 0  # live rows
        self._nstored = 0  # rows in the runs, dead ones included

    # --------------------------------------------------------------- rows
    def code(self, kind: str, cache: str = "") -> int:
        """The code of rows of *kind* from *cache* (made on first use)."""
        key = (kind, cache)
        c = self._code_of.get(key)
        if c is None:
            c = self._code_of[key] = len(self._codes)
            self._codes.append(key)
        return c

    def add_rows(self, bases: Sequence[int] | NpArray, sizes: Sequence[int] | NpArray,
                 kind: str, caches: Sequence[int] | NpArray, names: Sequence[str]) -> None:
        """Enter the blocks ``Block(bases[i], sizes[i], kind, names[caches[i]])`` as rows,
        in order (a later block at a base replaces an earlier one; base 0 is no block).

        Runtime complexity: amortised ``O(log(n))`` numpy work per block.
        """
        if not len(bases):
            return
        if not names:
            raise KmemsimValueError("add_rows: names is empty (no cache to name the blocks)")
        table = np.array([self.code(kind, name) for name in names], dtype=np.uint32)
        self.add_coded(bases, sizes, table[np.asarray(caches, dtype=np.intp)])

    def add_coded(self, bases: Sequence[int] | NpArray, sizes: Sequence[int] | NpArray,
                  codes: Sequence[int] | NpArray) -> None:
        """:meth:`add_rows` with each block's kind and cache given by its :meth:`code`."""
        b = np.asarray(bases, dtype=_U64)
        s = np.asarray(sizes, dtype=_U64)
        c = np.asarray(codes, dtype=np.uint32)
        del codes
        if len(s) != len(b) or len(c) != len(b):
            raise KmemsimValueError("add_rows: bases, sizes and caches differ in length")
        if not len(b):
            return
        if int(c.max()) >= len(self._codes):
            raise KmemsimValueError("add_coded: codes has a code the table never made")
        order = np.argsort(b, kind="stable")
        b, s, c = b[order], s[order], c[order]
        del order
        # the last block at each base, and none at 0
        keep = b != 0
        keep[:-1] &= b[1:] != b[:-1]
        if not keep.all():
            b, s, c = b[keep], s[keep], c[keep]
        del keep
        if not len(b):
            return
        # a base already in the table: its old block goes
        for run in self._runs:
            rb = _np_col(run.bases)
            i = np.minimum(np.searchsorted(rb, b), len(rb) - 1)
            hit = (rb[i] == b) & (_np_col(run.live)[i] != 0)
            if hit.any():
                dead = i[hit]
                _np_col(run.live)[dead] = 0
                self._nrows -= len(dead)
        rec = self._rec
        if rec:
            if len(rec) <= 4 * len(b):
                rk = np.fromiter(dict.keys(rec), dtype=_U64, count=len(rec))
                i = np.minimum(np.searchsorted(b, rk), len(b) - 1)
                gone = rk[b[i] == rk].tolist()
            else:
                gone = [x for x in b.tolist() if x in rec]
            for x in gone:
                del rec[x]
        self._add_run(b, s, c)

    def _add_run(self, b: NpArray, s: NpArray, codes: NpArray) -> None:
        run = _BlockRun(b, s, codes)
        self._nrows += len(run)
        self._nstored += len(run)
        runs = self._runs
        runs.append(run)
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
            newer = runs.pop()
            runs[-1] = self._merged([runs[-1], newer])
        self._maybe_compact()

    def _merged(self, runs: list[_BlockRun]) -> _BlockRun:
        """One run of the live rows of *runs*."""
        parts: list[list[NpArray]] = [[], [], []]
        for r in runs:
            idx = r.live_index()
            for p, c in zip(parts, (r.bases, r.sizes, r.codes), strict=True):
                p.append(_np_col(c)[idx])
        bc, sc, cc = (np.concatenate(p) for p in parts)
        del parts
        order = np.argsort(bc, kind="stable")
        run = _BlockRun(bc[order], sc[order].astype(_U64), cc[order])
        self._nstored += len(run) - sum(len(r) for r in runs)
        return run

    def _maybe_compact(self) -> None:
        if self._nstored - self._nrows >= _COMPACT_MIN and self._nstored > 2 * self._nrows:
            run = self._merged(self._runs)
            self._runs = [run] if len(run) else []
            self._nstored = len(run)

    def _find(self, base: int | np.integer[Any]) -> tuple[_BlockRun, int] | None:
        """The run and index of the live row at *base*, if there is one."""
        for run in self._runs:
            i = run.find(base)
            if i >= 0:
                return run, i
        return None

    def _kill(self, run: _BlockRun, i: int) -> None:
        run.live[i] = 0
        self._nrows -= 1
        self._maybe_compact()

    def _block(self, run: _BlockRun, i: int, new: Callable[[type[Block]], Block] = _new_record,
               setters: tuple[Callable[[Block, object], None], ...] = _BLOCK_SETTERS) -> Block:
        """The record of row *i* of *run* (the defaults bind globals as locals)."""
        kind, cache = self._codes[run.codes[i]]
        # Block(base, size, kind, cache), faster
        block = new(Block)
        s_base, s_size, s_kind, s_cache = setters
        s_base(block, run.bases[i])
        s_size(block, run.sizes[i])
        s_kind(block, kind)
        s_cache(block, cache)
        return block

    @property
    def rows(self) -> int:
        """How many blocks are kept as rows."""
        return self._nrows

    def is_row(self, base: int) -> bool:
        """Whether the block at *base* is kept as a row."""
        return base not in self._rec and self._find(base) is not None

    # ------------------------------------------------------------ lookups
    def floor_key(self, addr: int) -> int | None:
        """The largest base ``<= addr``, or ``None``.  ``O(r log(n))``."""
        best: int | None = floor_key(self._rec, addr)
        for run in self._runs:
            i = run.floor(addr)
            if i >= 0:
                b = run.bases[i]
                if best is None or b > best:
                    best = b
        return best

    def block_at(self, addr: int) -> Block | None:
        """The live block containing *addr* (the one with the largest base ``<= addr``, if
        it reaches *addr*).  ``O(r log(n))``."""
        base = floor_key(self._rec, addr)
        best: tuple[_BlockRun, int] | None = None
        for run in self._runs:
            i = run.floor(addr)
            if i >= 0 and (base is None or run.bases[i] > base):
                base = run.bases[i]
                best = run, i
        if base is None:
            return None
        if best is None:
            block: Block = dict.__getitem__(self._rec, base)
            return block if addr < block.end else None
        run, i = best
        return self._block(run, i) if addr - base < run.sizes[i] else None

    def columns(self, kind: str) -> tuple[NpArray, NpArray, NpArray]:
        """Every block's base and size (uint64) and whether it is of *kind* (bool), in
        address order.  ``O(n log(r))`` numpy, and a step per record."""
        rec = self._rec
        nr = len(rec)
        parts: list[list[NpArray]] = [[], [], []]
        if nr:
            vals = list(dict.values(rec))
            rk = np.fromiter(dict.keys(rec), dtype=_U64, count=nr)
            order = np.argsort(rk)
            parts[0].append(rk[order])
            parts[1].append(np.fromiter((v.size for v in vals), dtype=_U64, count=nr)[order])
            parts[2].append(np.fromiter((v.kind == kind for v in vals), dtype=bool,
                                        count=nr)[order])
            del vals, order
        is_kind = np.array([k == kind for k, _ in self._codes], dtype=bool)
        for run in self._runs:
            idx = run.live_index()
            if len(idx) == len(run):
                parts[0].append(_np_col(run.bases))
                parts[1].append(_np_col(run.sizes).astype(_U64))
                parts[2].append(is_kind[_np_col(run.codes)])
            else:
                parts[0].append(_np_col(run.bases)[idx])
                parts[1].append(_np_col(run.sizes)[idx].astype(_U64))
                parts[2].append(is_kind[_np_col(run.codes)[idx]])
        if not parts[0]:
            return np.zeros(0, dtype=_U64), np.zeros(0, dtype=_U64), np.zeros(0, dtype=bool)
        if len(parts[0]) == 1:
            return parts[0][0].copy(), parts[1][0], parts[2][0]
        b = np.concatenate(parts[0])
        order = np.argsort(b, kind="stable")  # (sorted runs: a merge)
        return b[order], np.concatenate(parts[1])[order], np.concatenate(parts[2])[order]

    def _order(self) -> tuple[list[int], list[Any], list[int]]:
        """Bases in ascending order, each with its run (``None``: a record) and row index."""
        rec = self._rec
        if not self._nrows:
            keys = list(rec)
            return keys, [None] * len(keys), [0] * len(keys)
        runs = [r for r in self._runs if r.live.find(1) >= 0]
        idx = [r.live_index() for r in runs]
        bases = [_np_col(r.bases)[i] for r, i in zip(runs, idx, strict=True)]
        rk = list(rec)
        bases.append(np.array(rk, dtype=_U64))
        which = np.repeat(np.arange(len(runs) + 1), [len(q) for q in bases])
        at = np.concatenate([*idx, np.arange(len(rk))])
        all_b = np.concatenate(bases)
        order = np.argsort(all_b, kind="stable")
        which_l, at_l = which[order].tolist(), at[order].tolist()
        out_runs: list[Any] = [*runs, None]
        return all_b[order].tolist(), [out_runs[w] for w in which_l], at_l

    def _records_in_order(self) -> Iterator[tuple[int, Block]]:
        keys, runs, at = self._order()
        rec, block = self._rec, self._block
        for key, run, i in zip(keys, runs, at, strict=True):
            yield key, (dict.__getitem__(rec, key) if run is None else block(run, i))

    # ------------------------------------------------------------ mapping
    def __getitem__(self, base: int) -> Block:
        block: Block | None = dict.get(self._rec, base)
        if block is not None:
            return block
        found = self._find(base) if isinstance(base, _INT) else None
        if found is None:
            raise KeyError(base)
        return self._block(*found)

    @overload
    def get(self, base: int, /) -> Block | None: ...
    @overload
    def get(self, base: int, default: Block, /) -> Block: ...
    @overload
    def get(self, base: int, default: _T, /) -> Block | _T: ...
    def get(self, base: int, default: object = None, /) -> Block | object:
        block: Block | None = dict.get(self._rec, base)
        if block is not None:
            return block
        found = self._find(base) if self._nrows and isinstance(base, _INT) else None
        return default if found is None else self._block(*found)

    def __setitem__(self, base: int, block: Block) -> None:
        if self._nrows:
            found = self._find(base)
            if found is not None:  # the row goes: the record replaces it
                self._kill(*found)
        self._rec[base] = block

    def __delitem__(self, base: int) -> None:
        if self.pop_block(base) is None:
            raise KeyError(base)

    def pop_block(self, base: int) -> Block | None:
        """Remove the block at *base* and return it (``None`` if there is none)."""
        if base in self._rec:
            return self._rec.pop(base)  # type: ignore[no-any-return]
        found = self._find(base) if self._nrows and isinstance(base, _INT) else None
        if found is None:
            return None
        block = self._block(*found)
        self._kill(*found)
        return block

    _MISSING: Any = object()

    def pop(self, base: int, default: Any = _MISSING) -> Any:
        block = self.pop_block(base)
        if block is not None:
            return block
        if default is BlockTable._MISSING:
            raise KeyError(base)
        return default

    def __contains__(self, base: object) -> bool:
        return dict.__contains__(self._rec, base) or (
            bool(self._nrows) and isinstance(base, _INT) and self._find(base) is not None)

    def __iter__(self) -> Iterator[int]:
        if not self._nrows:
            return iter(self._rec)
        return iter(self._order()[0])

    def __len__(self) -> int:
        return len(self._rec) + self._nrows

    def __repr__(self) -> str:
        return f"BlockTable({dict(self.items())!r})"

    def peekitem(self, index: int = -1) -> tuple[int, Block]:
        """The *index*-th ``(base, block)`` in address order (as ``SortedDict.peekitem``)."""
        if not self._nrows:
            return self._rec.peekitem(index)  # type: ignore[no-any-return]
        keys, runs, at = self._order()
        key, run, i = keys[index], runs[index], at[index]
        return key, (self._rec[key] if run is None else self._block(run, i))

    def clear(self) -> None:
        self._rec.clear()
        self._runs = []
        self._codes = []
        self._code_of = {}
        self._nrows = self._nstored = 0

    def items(self) -> ItemsView[int, Block]:
        return _TableItems(self)

    def values(self) -> ValuesView[Block]:
        return _TableValues(self)

    def _check(self) -> None:
        """Assert that the runs, the records and the counts agree."""
        rec = self._rec
        assert list(rec._list) == sorted(dict.keys(rec))
        assert all(type(b) is Block and b.base == base for base, b in dict.items(rec))
        assert 0 not in rec
        assert self._code_of == {c: i for i, c in enumerate(self._codes)}
        live = 0
        seen: set[int] = set()
        for run in self._runs:
            n = len(run)
            assert n
            assert len(run.sizes) == len(run.codes) == len(run.live) == n
            b = _np_col(run.bases)
            assert bool((b[1:] > b[:-1]).all())
            assert b[0] != 0
            assert set(run.live) <= {0, 1}
            assert not len(run.codes) or max(run.codes) < len(self._codes)
            for i in run.live_index().tolist():
                base = run.bases[i]
                assert base not in seen
                assert base not in rec
                seen.add(base)
                live += 1
        assert live == self._nrows
        assert self._nstored == sum(len(r) for r in self._runs)
        keys = list(self)
        assert keys == sorted(keys)
        assert len(keys) == len(set(keys)) == len(self)
        for base in keys[:: max(1, len(keys) // 64)]:  # (lookups agree with iteration)
            assert self.floor_key(base) == base
            assert self[base].base == base


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
        self._blocks = BlockTable()  # base -> Block
        self.edges = EdgeTable(k.arch.word_size)  # slot -> Edge
        # piece address -> (slot, length), or just the slot for a piece one word long
        # (nearly all of them: a tuple per edge would cost more than the entry itself)
        self._pieces: SortedDict = SortedDict()
        # the slots of the record edges (not the rows: see EdgeTable) by target block base,
        # and by holder base (None: the roots)
        self._rec_by_target: dict[int | None, SlotEntry] = {}
        self._rec_by_holder: dict[int | None, SlotEntry] = {}
        self.history: dict[int, RemovedEdge] = {}
        self.percpu_copies: SortedDict = SortedDict()  # copy start -> (cookie, size)
        self._max_piece = _MAX_PIECE  # the longest piece recorded so far
        self.enabled = True

    @property
    def blocks(self) -> BlockTable:
        """The live blocks, ``base -> Block`` in address order (a :class:`BlockTable`)."""
        return self._blocks

    @blocks.setter
    def blocks(self, value: BlockTable | SortedDict) -> None:
        # (a load sets it: a save before the table holds a SortedDict, whose blocks stay
        # records)
        if isinstance(value, SortedDict):
            table = BlockTable()
            table._rec = value
            value = table
        if not isinstance(value, BlockTable):
            raise KmemsimTypeError(f"blocks: a BlockTable, not {type(value).__name__}")
        self._blocks = value

    if not TYPE_CHECKING:
        def __getattr__(self, name: str) -> Any:
            # Only for an attribute that is missing: a truth saved in an old layout.
            if name == "_blocks" and "blocks" in self.__dict__:
                # blocks in a SortedDict of records: they stay records
                table = BlockTable()
                table._rec = self.__dict__.pop("blocks")
                self._blocks = table
                return table
            # Indexes that held the row edges' slots too.
            if name not in ("_rec_by_target", "_rec_by_holder") or "_by_target" not in \
                    self.__dict__:
                raise AttributeError(name)
            rec = self.edges._rec  # (converts the table first)
            for old, new in (("_by_target", "_rec_by_target"), ("_by_holder", "_rec_by_holder")):
                index: dict[int | None, SlotEntry] = {}
                for key, entry in self.__dict__.pop(old).items():
                    for slot in sorted(_slots(entry)):
                        if slot in rec:
                            _index_add(index, key, slot)
                setattr(self, new, index)
            return getattr(self, name)

    def _slots_by(self, key: int | None, *, by_holder: bool) -> list[int]:
        """The slots of the live edges held by (or pointing into) the block at *key*,
        ascending."""
        index = self._rec_by_holder if by_holder else self._rec_by_target
        rows = self.edges.rows_keyed(key, by_holder=by_holder)
        return sorted([*_slots(index.get(key)), *(r[0] for r in rows)])

    def _edges_by(self, key: int | None, *, by_holder: bool) -> list[Edge]:
        """The live edges held by (or pointing into) the block at *key*, by slot."""
        index = self._rec_by_holder if by_holder else self._rec_by_target
        table = self.edges
        found: list[tuple[int, Any, int]] = [
            (s, None, 0) for s in _slots(index.get(key))]
        found += table.rows_keyed(key, by_holder=by_holder)
        found.sort(key=lambda x: x[0])
        rec, edge = table._rec, table._edge
        return [rec[s] if run is None else edge(run, i) for s, run, i in found]

    # ------------------------------------------------------------- blocks
    def on_alloc(self, base: int, size: int, kind: str, cache: str = "") -> None:
        if base:
            self._blocks[base] = Block(base, size, kind, cache)

    def on_alloc_many(self, entries: Iterable[tuple[int, int, str, str]]) -> None:
        """:meth:`on_alloc` for each ``(base, size, kind, cache)`` (a bulk allocation).

        Runtime complexity: ``O(m log(n + m))``.
        """
        entries = list(entries)
        if len(entries) < _ROW_MIN:
            for entry in entries:
                self.on_alloc(*entry)
            return
        code = self._blocks.code
        self._blocks.add_coded([e[0] for e in entries], [e[1] for e in entries],
                               [code(e[2], e[3]) for e in entries])

    def on_alloc_array(self, bases: Sequence[int] | NpArray, sizes: Sequence[int] | NpArray,
                       kind: str, caches: Sequence[int] | NpArray, names: Sequence[str]
                       ) -> None:
        """:meth:`on_alloc` for each ``(bases[i], sizes[i], kind, names[caches[i]])`` (a bulk
        allocation), kept as rows of the block table (columns, no record).

        >>> from kmemsim import Kernel
        >>> t = Kernel().truth
        >>> t.on_alloc_array([0x1000 + 64 * i for i in range(20)], [64] * 20, "slab",
        ...                  [i % 2 for i in range(20)], ["a-64", "b-64"])
        >>> t.block_at(0x1000 + 64 * 3 + 5), t.blocks.is_row(0x1000)
        (Block(base=4288, size=64, kind='slab', cache='b-64'), True)

        Runtime complexity: amortised ``O(log(n))`` numpy work per block.
        """
        if len(bases) < _ROW_MIN:
            for b, n, c in zip(np.asarray(bases, dtype=_U64).tolist(),
                               np.asarray(sizes, dtype=_U64).tolist(),
                               np.asarray(caches, dtype=np.intp).tolist(), strict=True):
                self.on_alloc(b, n, kind, names[c])
            return
        self._blocks.add_rows(bases, sizes, kind, caches, names)

    def on_alloc_percpu(self, cookie: int, size: int) -> None:
        self.on_alloc(cookie, size, "percpu")
        for cpu in self.k.possible_cpus():
            self.percpu_copies[cookie + self.k.per_cpu_offset(cpu)] = (cookie, size)

    def on_free(self, base: int) -> None:
        block = self._blocks.pop_block(base)
        if block is None:
            return
        if block.kind == "percpu":
            for cpu in self.k.possible_cpus():
                copy = base + self.k.per_cpu_offset(cpu)
                self.percpu_copies.pop(copy, None)
                self._remove_range(copy, copy + block.size, "holder freed")
        else:
            self._remove_range(block.base, block.end, "holder freed")
        for slot in self._slots_by(base, by_holder=False):
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
        for slot in self._slots_by(block.base, by_holder=False):
            edge = self.edges[slot]
            if start <= edge.target < end:
                self._remove(slot, "target freed")
            elif edge.target >= end:
                self._rekey(slot, replace(edge, target_base=end))
        for slot in self._slots_by(block.base, by_holder=True):
            if slot >= end:
                self._rekey(slot, replace(self.edges[slot], holder=end))

    def _rekey(self, slot: int, edge: Edge) -> None:
        """Replace the edge at *slot* by *edge* (same slot and pieces, new target or holder)."""
        if self.edges.is_row(slot):  # a record from now on: its piece goes in the index
            self._pieces[slot] = slot
        else:
            old = self.edges[slot]
            _index_discard(self._rec_by_target, old.target_base, slot)
            _index_discard(self._rec_by_holder, old.holder, slot)
        self.edges[slot] = edge  # (a row becomes a record in its place)
        _index_add(self._rec_by_target, edge.target_base, slot)
        _index_add(self._rec_by_holder, edge.holder, slot)

    def block_at(self, addr: int) -> Block | None:
        """The live block containing *addr*.  ``O(log(n))``."""
        return self._blocks.block_at(addr)

    def holder_block(self, addr: int) -> Block | None:
        """The block whose memory holds *addr* (per-CPU copies map to their cookie)."""
        block = self.block_at(addr)
        if block is not None and block.kind != "percpu":
            return block
        start = floor_key(self.percpu_copies, addr)
        if start is not None:
            cookie, size = self.percpu_copies[start]
            if addr < start + size:
                return self._blocks.get(cookie)
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
        _index_add(self._rec_by_target, tb.base, slot)
        _index_add(self._rec_by_holder, holder, slot)
        return edge

    def add_plain_edges(self, slots: Sequence[int], targets: Sequence[int],
                        bind: Callable[[int], Encoding]) -> None:
        """:meth:`add_edge` for each plain word ``slots[i] -> targets[i]``, in order.

        The words are already written and :meth:`on_write` has heard of each;
        the slots are distinct and aligned, so no edge of the batch overlaps
        another.  *bind* gives the bound encoding for a target block's size.
        The block index (addresses, sizes, kinds) is snapshotted once into
        numpy, so finding each target's block and each slot's holder is a
        vectorised ``searchsorted`` and compare instead of a tree walk.  A
        plain word held by a block (the common case) becomes a row of the edge
        table, all of them in one numpy step (no record, no piece index or slot
        index entry); any other edge (a root's, or from an encoding of its own)
        is entered one by one as a record.  Every edge takes its place in the
        table's order as if entered one by one.
        Runtime complexity: ``O(n log(n) + m log(n))`` for *n* blocks and *m*
        edges.
        """
        blocks = self._blocks
        nb = len(blocks)
        if not nb:  # no target can be an allocation: the slots' old edges just end
            for slot in slots:
                self._remove(slot, "overwritten")
            return
        # Each block's address, size and kind, read once in address order (columns), so no
        # edge looks a block up by itself.
        keys, sizes, percpu = blocks.columns("percpu")
        m = len(slots)
        sl = np.array(slots, dtype=np.uint64)
        tg = np.array(targets, dtype=np.uint64)
        # the block at or below each target and each slot (index 0 if none: see *_ok)
        t_safe = np.searchsorted(keys, tg, side="right") - 1
        t_ok = t_safe >= 0
        np.maximum(t_safe, 0, out=t_safe)
        s_safe = np.searchsorted(keys, sl, side="right") - 1
        h_ok = s_safe >= 0
        np.maximum(s_safe, 0, out=s_safe)
        # the target lies in a block (differences, not ends: no overflow at the top)
        t_ok &= tg - keys[t_safe] < sizes[t_safe]
        # the slot lies in a block that holds it (per-CPU blocks: see holder_block)
        h_ok &= (sl - keys[s_safe] < sizes[s_safe]) & ~percpu[s_safe]
        del percpu
        # Only slots inside some root range can be roots: ask root_of about those alone.
        k = self.k
        ranges = [(k.kernel_data_start, k.kernel_data_end)]
        ranges += [(lm.data, lm.data + lm.data_size) for lm in k.modules.values()]
        ranges += k.percpu_static_sections()
        ranges += [(t.stack, t.stack + t.stack_size) for t in k.tasks]
        maybe_root = np.zeros(m, dtype=bool)
        for lo, hi in ranges:
            maybe_root |= (sl >= np.uint64(lo)) & (sl < np.uint64(hi))
        maybe_root &= t_ok
        t_size = sizes[t_safe]
        del sizes
        jiffies = k.jiffies
        word = k.arch.word_size
        edges = self.edges
        with paused_gc():  # many new objects, none of them cyclic: no collection needed
            # The slots' old edges end first, in order: what ends and when is the same as
            # edge by edge (no new edge of the batch can end: the slots are distinct).
            if len(edges):
                for j in np.flatnonzero(edges.contains_mask(sl)).tolist():
                    self._remove(slots[j], "overwritten")
            # (root_of's first answer, for the slots in kernel statics, without asking it)
            static = maybe_root & (sl >= np.uint64(k.kernel_data_start)) & (
                sl < np.uint64(k.kernel_data_end))
            roots = dict.fromkeys(np.flatnonzero(static).tolist(), "kernel static")
            for j in np.flatnonzero(maybe_root & ~static).tolist():
                root = self.root_of(slots[j])
                if root is not None:
                    roots[j] = root
            is_root = np.zeros(m, dtype=bool)
            is_root[list(roots)] = True
            # Per target size: the bound encoding, and the word size when it writes the
            # plain word at the slot (Encoding.writes unchanged), so its piece is built here.
            # (a sort, not np.unique: np.unique imports numpy.ma, ~8 ms in a fresh process)
            sizes_used = np.sort(t_size[t_ok])
            sizes_used = sizes_used[np.concatenate(([True], sizes_used[1:] != sizes_used[:-1]))
                                    [:len(sizes_used)]]
            size_at = np.searchsorted(sizes_used, t_size)  # (meaningful where t_ok)
            bound: dict[int, tuple[Encoding, int]] = {}
            plain_word = np.zeros(len(sizes_used), dtype=bool)
            for u, tsize in enumerate(sizes_used.tolist()):
                enc = bind(tsize)
                cls = type(enc)
                plain = cls.writes is Encoding.writes and cls.encode is Encoding.encode
                bound[tsize] = (enc, enc.word_size if plain else 0)
                plain_word[u] = plain and enc.word_size == word
            # A plain word at an aligned slot held by a block: a row, the common case.
            row = t_ok & h_ok & ~is_root & (sl % np.uint64(word) == 0)
            row[t_ok] &= plain_word[size_at[t_ok]]
            ri = np.flatnonzero(row)
            seq0 = edges.reserve(m)  # every edge of the batch takes its place in the order
            done = [m]  # the edges before this one are entered (all: no encoding raised)
            try:
                which = np.flatnonzero(t_ok & ~row)
                self._add_records(slots, targets, which.tolist(), keys[t_safe[which]].tolist(),
                                  keys[s_safe[which]].tolist(), h_ok[which].tolist(), roots,
                                  t_size[which].tolist(), bound, seq0, jiffies, done)
                del which
            finally:  # the rows of the edges before a failing one are entered all the same
                ri = ri[ri < done[0]]
                del row, t_ok, h_ok, t_size, maybe_root, static, is_root
                if len(ri):
                    kinds = np.zeros(len(sizes_used), dtype=np.uint32)
                    used = np.zeros(len(sizes_used), dtype=bool)
                    at = size_at[ri]
                    del size_at
                    used[at] = True
                    for u in np.flatnonzero(used).tolist():
                        kinds[u] = edges.add_kind(bound[int(sizes_used[u])][0], jiffies, word)
                    # (each column made as the arrays it comes from go: a lower peak)
                    cols: list[NpArray] = [sl[ri]]
                    del sl
                    cols.append(tg[ri])
                    del tg
                    cols.append(keys[t_safe[ri]])
                    del t_safe
                    cols.append(keys[s_safe[ri]])
                    del s_safe, keys
                    cols.append(kinds[at])
                    del at
                    cols.append(ri.astype(np.uint64) + np.uint64(seq0))
                    del ri
                    edges._add_run(cols)

    def _add_records(self, slots: Sequence[int], targets: Sequence[int], which: list[int],
                     tbases: list[int], bases: list[int], in_block: list[bool],
                     roots: dict[int, str], t_size: list[int],
                     bound: dict[int, tuple[Encoding, int]], seq0: int, jiffies: int,
                     done: list[int]) -> None:
        """Enter the edges ``which`` of a batch of :meth:`add_plain_edges` as records, in
        order (edge ``j`` at insertion number ``seq0 + j``), given for each its target's
        block, the block at or below its slot, whether that block holds it, and its
        target's size; one whose slot is in no live memory the program owns is skipped.
        If an encoding raises, ``done[0]`` is set to the edge it raised for."""
        if not which:
            return
        word = self.k.arch.word_size
        edges = self.edges
        rec, rseq = edges._rec, edges._rseq
        # New pieces go straight into the piece index's dict; its sorted key list is
        # updated once at the end, as SortedDict.update would.  No _remove can drop one of
        # them: the old pieces over the batch's words ended when the words were written,
        # and the batch's slots are distinct.
        pieces = self._pieces
        rebuild = 10 * len(which) > len(pieces)
        new_keys: list[int] = []
        set_piece = dict.__setitem__
        by_target, by_holder = self._rec_by_target, self._rec_by_holder
        max_piece = self._max_piece
        new = _new_record
        e_slot, e_target, e_tbase, e_enc, e_pieces, e_holder, e_root, e_jiffies = _EDGE_SETTERS
        j = 0
        try:
            for j, tbase, base, ok, tsize in zip(which, tbases, bases, in_block, t_size,
                                                 strict=True):
                slot, target = slots[j], targets[j]
                root = roots.get(j)
                holder = None
                if root is None:
                    if ok:
                        holder = base
                    else:
                        hb = self.holder_block(slot)
                        if hb is None:
                            continue  # the slot is in no live memory the program owns
                        holder = hb.base
                encoding, ws = bound[tsize]
                if ws:
                    piece: tuple[tuple[int, bytes], ...] = (
                        (slot, (target & ((1 << (8 * ws)) - 1)).to_bytes(ws, "little")),)
                else:
                    piece = tuple(encoding.writes(target, slot))
                # Edge(slot, target, tbase, encoding, piece, holder, root, jiffies), faster
                edge = new(Edge)
                e_slot(edge, slot)
                e_target(edge, target)
                e_tbase(edge, tbase)
                e_enc(edge, encoding)
                e_pieces(edge, piece)
                e_holder(edge, holder)
                e_root(edge, root)
                e_jiffies(edge, jiffies)
                rec[slot] = edge  # (put_record, inlined)
                rseq[slot] = seq0 + j
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
        except BaseException:
            done[0] = j
            raise
        finally:  # the indexes stay whole even if an encoding raised
            self._max_piece = max_piece
            _add_sorted_keys(pieces, None if rebuild else new_keys)

    def end_edge(self, slot: int, reason: str = "overwritten") -> None:
        """End the edge stored at *slot*, if any (a NULL store, for instance)."""
        self._remove(slot, reason)

    def _remove(self, slot: int, reason: str) -> None:
        popped = self.edges.pop_kept(slot)
        if popped is None:
            return
        edge, record = popped
        if record:  # (a row has no piece index or slot index entries)
            for addr, _ in edge.pieces:
                self._pieces.pop(addr, None)
            _index_discard(self._rec_by_target, edge.target_base, slot)
            _index_discard(self._rec_by_holder, edge.holder, slot)
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
        rows = [(s, s) for s in self.edges.row_slots()]
        return sorted([*self._pieces.items(), *rows])

    def _piece(self, addr: int) -> tuple[int, int]:
        """``(slot, length)`` of the piece recorded at *addr*."""
        v = self._pieces[addr]
        return v if isinstance(v, tuple) else (v, self.k.arch.word_size)

    def on_write(self, addr: int, n: int) -> None:
        """Bytes at ``[addr, addr+n)`` changed: edges whose slot they touch end."""
        if n > 0:
            self._remove_range(addr, addr + n, "overwritten")

    def on_write_words(self, addrs: Sequence[int], n: int | None = None) -> None:
        """:meth:`on_write` of *n* bytes (``None``: one word) at each of *addrs*, in order.

        Only the writes that some recorded piece may overlap are looked at
        one by one; ending edges changes no later write's answer but to find
        nothing, so the edges end as with the writes told one by one.
        Runtime complexity: ``O(p + m log(p))`` for *p* pieces and *m* writes.

        >>> from kmemsim import Kernel
        >>> k = Kernel(); a, b = k.kmalloc_bulk([64, 64])
        >>> k.store_many([a, a + 8], [b, b]); k.store(a + 16, b)
        >>> k.truth.on_write_words([a + 4, a + 20, a + 40], 4)  # (rows at a, a + 8)
        >>> [s in k.truth.edges for s in (a, a + 8, a + 16)], k.truth.history[a + 16].reason
        ([False, True, False], 'overwritten')
        """
        pieces, edges = self._pieces, self.edges
        if not len(addrs) or not (pieces or edges.rows):
            return
        ws = self.k.arch.word_size
        if n is None:
            n = ws
        if n <= 0:
            return  # (no byte written)
        m = len(addrs)
        if m < _ROW_MIN:  # a few: each looked at (the batch's numpy costs more)
            for addr in addrs:
                self._remove_range(addr, addr + n, "overwritten")
            return
        a = np.array(addrs, dtype=np.uint64)
        if pieces:
            starts = np.fromiter(pieces.keys(), dtype=np.uint64, count=len(pieces))
            # the first piece starting late enough to reach the write, if it starts inside it
            lo = np.where(a >= np.uint64(self._max_piece - 1),
                          a - np.uint64(self._max_piece - 1), np.uint64(0))
            i = np.searchsorted(starts, lo, side="left")
            near = i < len(starts)
            near[near] = starts[i[near]] < a[near] + np.uint64(n)
        else:
            near = np.zeros(m, dtype=bool)
        if edges.rows:
            if n == ws and not bool((a % np.uint64(ws)).any()):
                # a row edge's piece is the aligned word at its slot: only that word overlaps
                near |= edges.row_mask(a)
            else:  # the first row slot that reaches the write, if it starts inside it
                lo = np.where(a >= np.uint64(ws - 1), a - np.uint64(ws - 1), np.uint64(0))
                for run in edges._rows:  # (a dead row only makes a write looked at)
                    rs = _np_col(run.slots)
                    i = np.searchsorted(rs, lo, side="left")
                    hit = i < len(rs)
                    hit[hit] = rs[i[hit]] < a[hit] + np.uint64(n)
                    near |= hit
        for j in np.flatnonzero(near).tolist():
            self._remove_range(addrs[j], addrs[j] + n, "overwritten")

    def on_frame_return(self, start: int, end: int) -> None:
        """A stack frame returned: its locals stop being references (their bytes stay)."""
        self._remove_range(start, end, "frame returned")

    # -------------------------------------------------------- reachability
    def referrers(self, base: int) -> list[Edge]:
        """The live edges that point into the block at *base*, by slot."""
        return self._edges_by(base, by_holder=False)

    def out_edges(self, holder: int | None) -> list[Edge]:
        """The live edges held by the block at *holder* (``None``: the roots), by slot."""
        return self._edges_by(holder, by_holder=True)

    def reachable_blocks(self, extra_roots: Iterable[int] = (), *, edges: bool = True
                         ) -> dict[int, Edge | None]:
        """Every block reachable from the roots, mapped to the edge that first reached it.

        Breadth-first (each block's edges in slot order), so following the
        recorded edges back gives a shortest path to a root.  With
        ``edges=False`` every value is ``None``: only which blocks are
        reachable, without building a record per bulk-stored edge (not for
        :meth:`path_to_root`).  The edges held by blocks are laid out once as
        arrays by holder, then slot (numpy), so the walk itself only follows
        block numbers.  ``O(blocks + edges log(edges))``.
        """
        parent: dict[int, Edge | None] = {}
        first: list[int] = []  # the roots' blocks, in queue order
        for base in extra_roots:
            if base not in parent:
                parent[base] = None
                first.append(base)
        for edge in self.out_edges(None):
            if edge.target_base not in parent:
                parent[edge.target_base] = edge if edges else None
                first.append(edge.target_base)
        keys, _, module = self._blocks.columns("module")
        for base in keys[module].tolist():
            if base not in parent:
                parent[base] = None  # a loaded module's data is a root
                first.append(base)
        table = self.edges
        if not table.rows:
            # Records alone (a heap stored one by one): a plain walk over the holder index
            # is faster than laying the edges out as arrays.
            records, holders = table._rec, self._rec_by_holder
            todo = deque(first)
            while todo:
                for held_at in sorted(_slots(holders.get(todo.popleft()))):
                    found = records[held_at]
                    if found.target_base not in parent:
                        parent[found.target_base] = found if edges else None
                        todo.append(found.target_base)
            return parent
        # the records held by blocks, by slot (as a run's rows are)
        held = sorted(((h, s) for h, entry in self._rec_by_holder.items() if h is not None
                       for s in _slots(entry)), key=lambda hs: hs[1])
        if not (held or table.rows) or not first:
            return parent
        bases = keys.tolist()  # block number -> base
        # Every edge held by a block: its holder, slot and target block, rows then records.
        runs = [r for r in table._rows if r.live.find(1) >= 0]
        idx = [r.live_index() for r in runs]
        holder = [_np_col(r.holders)[i] for r, i in zip(runs, idx, strict=True)]
        slot = [_np_col(r.slots)[i] for r, i in zip(runs, idx, strict=True)]
        target = [_np_col(r.tbases)[i] for r, i in zip(runs, idx, strict=True)]
        rec = table._rec
        holder.append(np.array([h for h, _ in held], dtype=np.uint64))
        slot.append(np.array([s for _, s in held], dtype=np.uint64))
        target.append(np.array([rec[s].target_base for _, s in held], dtype=np.uint64))
        h, s, t = (np.concatenate(c) for c in (holder, slot, target))
        del holder, slot, target
        # by holder, then slot: the order the walk takes them (one run alone is by slot)
        order = (np.argsort(h, kind="stable") if len(runs) + bool(held) == 1
                 else np.lexsort((s, h)))
        del s
        h_at = np.searchsorted(keys, h[order])
        del h
        t_at = np.searchsorted(keys, t[order])
        del t
        # each holder's edges are adj[off[b]:off[b + 1]] (holders and targets are live blocks)
        off = np.searchsorted(h_at, np.arange(len(bases) + 1)).tolist()
        adj = t_at.tolist()
        del h_at, t_at
        seen = bytearray(len(bases))
        # the block numbers of the roots' blocks (an extra root may be no block's base)
        queue = np.searchsorted(keys, np.array(
            [b for b in first if b in self._blocks], dtype=np.uint64)).tolist()
        for b in queue:
            seen[b] = 1
        via: list[int] = []  # the position (in adj) of the edge that reached each new block
        roots = len(queue)
        add, reach = queue.append, via.append
        if edges:
            for b in queue:  # (a list grown while iterated: the blocks in discovery order)
                j = off[b]
                for c in adj[j:off[b + 1]]:
                    if not seen[c]:
                        seen[c] = 1
                        add(c)
                        reach(j)
                    j += 1
        else:  # the same walk, without noting the edges
            for b in queue:
                for c in adj[off[b]:off[b + 1]]:
                    if not seen[c]:
                        seen[c] = 1
                        add(c)
        reached = map(bases.__getitem__, queue[roots:])
        if not edges:
            parent.update(dict.fromkeys(reached))
            return parent
        # the edge of each: a row (run, index) or a record, by its place in the arrays
        n_rows = sum(len(i) for i in idx)
        src = order[via]
        run_of = np.repeat(np.arange(len(runs)), [len(i) for i in idx])
        at = np.concatenate([*idx, src[:0]])
        in_rows = src < n_rows
        rows_src = src[in_rows]
        run_l, at_l = run_of[rows_src].tolist(), at[rows_src].tolist()
        rec_l = (src[~in_rows] - n_rows).tolist()
        row_edge = table._edge
        ri = ci = 0
        with paused_gc():  # a record built per block reached from the rows, none cyclic
            for base, is_row in zip(reached, in_rows.tolist(), strict=True):
                if is_row:
                    parent[base] = row_edge(runs[run_l[ri]], at_l[ri])
                    ri += 1
                else:
                    parent[base] = rec[held[rec_l[ci]][1]]
                    ci += 1
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
        table = self.edges
        table._check()
        self._blocks._check()
        assert list(self._pieces._list) == sorted(dict.keys(self._pieces))
        assert table.rows == sum(table.is_row(s) for s in table)
        by_target: dict[int | None, set[int]] = {}
        by_holder: dict[int | None, set[int]] = {}
        for slot, edge in table.items():
            assert edge.slot == slot
            assert edge.target_base in self.blocks
            assert edge.holder is None or edge.holder in self.blocks
            by_target.setdefault(edge.target_base, set()).add(slot)
            by_holder.setdefault(edge.holder, set()).add(slot)
            if table.is_row(slot):  # one aligned word, found through the row slots
                assert edge.holder is not None
                assert edge.root is None
                assert edge.pieces == ((slot, edge.pieces[0][1]),)
                assert len(edge.pieces[0][1]) == ws
                assert not slot % ws
                assert slot not in self._pieces
                assert slot not in _slots(self._rec_by_target.get(edge.target_base))
                assert slot not in _slots(self._rec_by_holder.get(edge.holder))
                assert table.rows_between(slot, slot + 1) == [slot]
                assert table.rows_between(slot - 64 * ws, slot + 64 * ws).count(slot) == 1
                continue
            assert slot in _slots(self._rec_by_target[edge.target_base])
            assert slot in _slots(self._rec_by_holder[edge.holder])
            for addr, data in edge.pieces:
                assert self._piece(addr) == (slot, len(data))
        for addr in self._pieces:
            slot, n = self._piece(addr)
            assert (addr, n) in {(a, len(d)) for a, d in table[slot].pieces}
        for index, full in ((self._rec_by_target, by_target), (self._rec_by_holder, by_holder)):
            for key, entry in index.items():
                assert all(not table.is_row(s) and s in full[key] for s in _slots(entry))
        # the slots by target and by holder, rows and records together, are exactly the edges'
        for key, slots in by_target.items():
            assert key is not None
            assert self._slots_by(key, by_holder=False) == sorted(slots)
        for key, slots in by_holder.items():
            assert self._slots_by(key, by_holder=True) == sorted(slots)
