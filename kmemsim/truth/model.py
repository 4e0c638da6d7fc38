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

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from sortedcontainers import SortedDict

from .._sorted import ceil_key, floor_key
from .encodings import Encoding

if TYPE_CHECKING:
    from ..kernel import Kernel

#: The longest piece a built-in encoding writes (one word); user encodings may write longer
#: ones, and :class:`Truth` widens its overlap search to the longest piece it has seen.
_MAX_PIECE = 8


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


class Truth:
    """What the program meant, kept beside the bytes (see the module docstring)."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.blocks: SortedDict = SortedDict()  # base -> Block
        self.edges: dict[int, Edge] = {}  # slot -> Edge
        self._pieces: SortedDict = SortedDict()  # piece address -> (slot, length)
        self._by_target: dict[int, set[int]] = {}  # target block base -> slots
        self._by_holder: dict[int | None, set[int]] = {}
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
        self.blocks.update((b, Block(b, n, kind, cache)) for b, n, kind, cache in entries if b)

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
        for slot in sorted(self._by_target.get(base, ())):  # sorted: sets restore unordered
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
        for slot in sorted(self._by_target.get(block.base, ())):
            edge = self.edges[slot]
            if start <= edge.target < end:
                self._remove(slot, "target freed")
            elif edge.target >= end:
                self._rekey(slot, replace(edge, target_base=end))
        for slot in sorted(self._by_holder.get(block.base, ())):
            if slot >= end:
                self._rekey(slot, replace(self.edges[slot], holder=end))

    def _rekey(self, slot: int, edge: Edge) -> None:
        """Replace the edge at *slot* by *edge* (same slot and pieces, new target or holder)."""
        old = self.edges[slot]
        self._by_target[old.target_base].discard(slot)
        self._by_holder[old.holder].discard(slot)
        self.edges[slot] = edge
        self._by_target.setdefault(edge.target_base, set()).add(slot)
        self._by_holder.setdefault(edge.holder, set()).add(slot)

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
            self._pieces[addr] = (slot, len(data))
            self._max_piece = max(self._max_piece, len(data))
        self._by_target.setdefault(tb.base, set()).add(slot)
        self._by_holder.setdefault(holder, set()).add(slot)
        return edge

    def add_plain_edges(self, slots: Sequence[int], targets: Sequence[int],
                        bind: Callable[[int], Encoding]) -> None:
        """:meth:`add_edge` for each plain word ``slots[i] -> targets[i]``, in order.

        The words are already written and :meth:`on_write` has heard of each;
        the slots are distinct and aligned, so no edge of the batch overlaps
        another.  *bind* gives the bound encoding for a target block's size.
        The block index is snapshotted once into numpy, so each lookup is a
        vectorised ``searchsorted`` instead of a tree walk.  Runtime
        complexity: ``O(n + m log(n))`` for *n* blocks and *m* edges.
        """
        blocks = self.blocks
        keys = np.fromiter(blocks.keys(), dtype=np.uint64, count=len(blocks))
        sl = np.array(slots, dtype=np.uint64)
        t_at = (np.searchsorted(keys, np.array(targets, dtype=np.uint64), side="right")
                - 1).tolist()
        s_at = (np.searchsorted(keys, sl, side="right") - 1).tolist()
        # Only slots inside some root range can be roots: ask root_of about those alone.
        k = self.k
        ranges = [(k.kernel_data_start, k.kernel_data_end)]
        ranges += [(lm.data, lm.data + lm.data_size) for lm in k.modules.values()]
        ranges += k.percpu_static_sections()
        ranges += [(t.stack, t.stack + t.stack_size) for t in k.tasks]
        maybe_root = np.zeros(len(sl), dtype=bool)
        for lo, hi in ranges:
            maybe_root |= (sl >= np.uint64(lo)) & (sl < np.uint64(hi))
        base_of = keys.tolist()
        get = dict.__getitem__
        jiffies = self.k.jiffies
        edges, new_pieces = self.edges, {}
        by_target, by_holder = self._by_target, self._by_holder
        for slot, target, ti, si, rootish in zip(slots, targets, t_at, s_at, maybe_root.tolist(),
                                                 strict=True):
            self._remove(slot, "overwritten")
            if ti < 0:
                continue
            tb: Block = get(blocks, base_of[ti])
            if target >= tb.end:
                continue  # a pointer to something that is not an allocation
            root = self.root_of(slot) if rootish else None
            holder = None
            if root is None:
                hb: Block | None = get(blocks, base_of[si]) if si >= 0 else None
                if hb is None or slot >= hb.end or hb.kind == "percpu":
                    hb = self.holder_block(slot)
                if hb is None:
                    continue  # the slot is in no live memory the program owns
                holder = hb.base
            encoding = bind(tb.size)
            piece = encoding.writes(target, slot)
            edges[slot] = Edge(slot, target, tb.base, encoding, tuple(piece), holder, root,
                               jiffies)
            for addr, data in piece:
                new_pieces[addr] = (slot, len(data))
                self._max_piece = max(self._max_piece, len(data))
            by_target.setdefault(tb.base, set()).add(slot)
            by_holder.setdefault(holder, set()).add(slot)
        self._pieces.update(new_pieces)  # one sorted merge for the batch

    def end_edge(self, slot: int, reason: str = "overwritten") -> None:
        """End the edge stored at *slot*, if any (a NULL store, for instance)."""
        self._remove(slot, reason)

    def _remove(self, slot: int, reason: str) -> None:
        edge = self.edges.pop(slot, None)
        if edge is None:
            return
        for addr, _ in edge.pieces:
            self._pieces.pop(addr, None)
        self._by_target.get(edge.target_base, set()).discard(slot)
        self._by_holder.get(edge.holder, set()).discard(slot)
        self.history[slot] = RemovedEdge(edge, reason, self.k.jiffies)

    def _remove_range(self, start: int, end: int, reason: str) -> None:
        if not self._pieces:
            return
        pieces = self._pieces
        first = ceil_key(pieces, start - self._max_piece + 1)
        if first is None or first >= end:
            return  # no piece starts close enough to overlap (the common case)
        hits = {pieces[a][0] for a in pieces.irange(first, end - 1)
                if a + pieces[a][1] > start}
        for slot in hits:
            self._remove(slot, reason)

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
        pieces = self._pieces
        if not pieces or not addrs:
            return
        ws = self.k.arch.word_size
        starts = np.fromiter(pieces.keys(), dtype=np.uint64, count=len(pieces))
        a = np.array(addrs, dtype=np.uint64)
        # the first piece starting late enough to reach the word, if it starts inside it
        lo = np.where(a >= np.uint64(self._max_piece - 1), a - np.uint64(self._max_piece - 1),
                      np.uint64(0))
        i = np.searchsorted(starts, lo, side="left")
        near = i < len(starts)
        near[near] = starts[i[near]] < a[near] + np.uint64(ws)
        for j in np.flatnonzero(near).tolist():
            self._remove_range(addrs[j], addrs[j] + ws, "overwritten")

    def on_frame_return(self, start: int, end: int) -> None:
        """A stack frame returned: its locals stop being references (their bytes stay)."""
        self._remove_range(start, end, "frame returned")

    # -------------------------------------------------------- reachability
    def referrers(self, base: int) -> list[Edge]:
        """The live edges that point into the block at *base*."""
        return [self.edges[s] for s in sorted(self._by_target.get(base, ()))]

    def out_edges(self, holder: int | None) -> list[Edge]:
        """The live edges held by the block at *holder* (``None``: the roots)."""
        return [self.edges[s] for s in sorted(self._by_holder.get(holder, ()))]

    def reachable_blocks(self, extra_roots: Iterable[int] = ()) -> dict[int, Edge | None]:
        """Every block reachable from the roots, mapped to the edge that first reached it.

        Breadth-first, so following the recorded edges back gives a shortest
        path to a root.  ``O(blocks + edges)``.
        """
        parent: dict[int, Edge | None] = {}
        queue: deque[int] = deque()
        for base in extra_roots:
            if base not in parent:
                parent[base] = None
                queue.append(base)
        for edge in self.out_edges(None):
            if edge.target_base not in parent:
                parent[edge.target_base] = edge
                queue.append(edge.target_base)
        # dict.values: the plain dict underneath, much faster than SortedDict's view
        for base in sorted(b.base for b in dict.values(self.blocks) if b.kind == "module"):
            if base not in parent:
                parent[base] = None  # a loaded module's data is a root
                queue.append(base)
        holders, edges = self._by_holder, self.edges
        while queue:
            # Slots in address order: the recorded parents (and so the paths) are stable.
            for slot in sorted(holders.get(queue.popleft(), ())):
                edge = edges[slot]
                if edge.target_base not in parent:
                    parent[edge.target_base] = edge
                    queue.append(edge.target_base)
        return parent

    def path_to_root(self, base: int, reach: dict[int, Edge | None] | None = None) -> list[Edge]:
        """The chain of edges from a root to the block at *base* (empty if unreachable)."""
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
        for slot, edge in self.edges.items():
            assert edge.slot == slot
            assert slot in self._by_target[edge.target_base]
            assert slot in self._by_holder[edge.holder]
            assert edge.target_base in self.blocks
            assert edge.holder is None or edge.holder in self.blocks
            for addr, data in edge.pieces:
                assert self._pieces[addr] == (slot, len(data))
        for addr, (slot, n) in self._pieces.items():
            assert (addr, n) in {(a, len(d)) for a, d in self.edges[slot].pieces}
        for base, slots in self._by_target.items():
            assert all(self.edges[s].target_base == base for s in slots)
        for holder, slots in self._by_holder.items():
            assert all(self.edges[s].holder == holder for s in slots)
