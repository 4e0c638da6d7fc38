"""The object trees: kmemleak's index of tracked blocks by address interval.

kmemleak keeps three red-black trees keyed by ``[pointer, pointer+size)``:
virtual objects (found by pointer scanning), physical objects
(``OBJECT_PHYS``, never found by scanning) and per-CPU objects
(``OBJECT_PERCPU``, found through their own address window).  Here each
tree is a sorted sequence of chunks of two :class:`array.array` columns:
untagged start addresses and the objects' rows in their
:class:`~kmemsim.kmemleak.object.ObjectStore`.  That gives the same answers
with the same complexity as the kernel's tree, in 16 bytes per object, and
hands the fast scan its sorted starts without sorting.

>>> from kmemsim.kmemleak.object import ObjectStore
>>> store = ObjectStore()
>>> t = ObjectTree("object_tree_root", store)
>>> a = store.add(0x1000, 0x100, 1, serial=1)
>>> t.insert(a, 0x1000) is None
True
>>> t.lookup(0x10ff) is a, t.lookup(0x1100)
(True, None)
>>> t.insert(store.add(0x10f0, 8, 1, serial=2), 0x10f0) is a   # overlaps: returns the parent
True
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from ..errors import KmemsimValueError
from .object import KmemleakObject, ObjectStore

#: Chunk length: a chunk is split at twice this, and lookups bisect a list of chunk
#: starts, then one chunk (sortedcontainers' load factor, for the same reasons).
LOAD = 1000


class ObjectTree:
    """One interval index; intervals never overlap (``create_object`` refuses).

    Zero-size objects are kept aside: their interval is empty, so, as in the
    kernel, no lookup can ever find them (not even ``kmemleak_free``).
    Objects are rows of *store*; a lookup returns the row's view.
    """

    __slots__ = ("_firsts", "_len", "_rows", "_starts", "_unfindable", "name", "store")

    def __init__(self, name: str, store: ObjectStore) -> None:
        self.name = name
        self.store = store
        self._starts: list[array[int]] = []   # sorted chunks of untagged starts
        self._rows: list[array[int]] = []     # the rows, parallel to _starts
        self._firsts: list[int] = []          # each chunk's first start
        self._len = 0
        self._unfindable: list[int] = []      # rows of zero-size objects

    def __len__(self) -> int:
        return self._len + len(self._unfindable)

    def __iter__(self) -> Iterator[KmemleakObject]:
        """The objects by start address, then the zero-size ones."""
        view = self.store.view
        for rows in [*self._rows, self._unfindable]:
            yield from map(view, list(rows))

    def _row_of(self, obj: KmemleakObject) -> int:
        if obj._store is not self.store:
            raise KmemsimValueError(f"{obj!r} is not an object of this tree's store")
        return obj._row

    # -- the floor search every lookup and insert starts with ------------------
    def _floor(self, addr: int) -> tuple[int, int]:
        """Chunk and position of the largest start ``<= addr``; ``(-1, -1)`` if none."""
        i = bisect_right(self._firsts, addr) - 1
        if i < 0:
            return -1, -1
        return i, bisect_right(self._starts[i], addr) - 1

    def lookup_row(self, addr: int) -> int:
        """The row of the object whose interval contains untagged *addr*, or -1.

        Runtime complexity: ``O(log(n))``.
        """
        i, j = self._floor(addr)
        if i < 0:
            return -1
        row = self._rows[i][j]
        return row if addr < self._starts[i][j] + self.store.size[row] else -1

    def lookup(self, addr: int) -> KmemleakObject | None:
        """The object whose interval contains untagged *addr*, or ``None``.

        The caller decides what an interior hit means (the alias rule).
        Runtime complexity: ``O(log(n))``.
        """
        row = self.lookup_row(addr)
        return None if row < 0 else self.store.view(row)

    # -- changes ------------------------------------------------------------------
    def insert(self, obj: KmemleakObject, start: int) -> KmemleakObject | None:
        """Insert *obj* at untagged *start*; on overlap return the existing object.

        Runtime complexity: ``O(log(n))`` -- approximate (a chunk insert moves
        at most ``2 * LOAD`` entries).
        """
        row, size = self._row_of(obj), obj.size
        if size == 0:
            self._unfindable.append(row)
            return None
        i, j = self._floor(start)
        if i >= 0:
            prow = self._rows[i][j]
            if self._starts[i][j] + self.store.size[prow] > start:
                return self.store.view(prow)
        nxt = self._successor(i, j)
        if nxt is not None and nxt[0] < start + size:
            return self.store.view(nxt[1])
        self._insert_at(max(i, 0), j + 1, start, row)
        return None

    def _items_after(self, i: int, j: int) -> Iterator[tuple[int, int]]:
        """``(start, row)`` in order, from just after chunk *i* position *j*
        (``i == -1``: from the very first)."""
        if i < 0:
            i, j = 0, -1
        for k in range(i, len(self._starts)):
            st, rw = self._starts[k], self._rows[k]
            for m in range(j + 1 if k == i else 0, len(st)):
                yield st[m], rw[m]

    def _successor(self, i: int, j: int) -> tuple[int, int] | None:
        return next(self._items_after(i, j), None)

    def _insert_at(self, i: int, j: int, start: int, row: int) -> None:
        if not self._starts:
            self._starts.append(array("Q", [start]))
            self._rows.append(array("q", [row]))
            self._firsts.append(start)
        else:
            self._starts[i].insert(j, start)
            self._rows[i].insert(j, row)
            if j == 0:
                self._firsts[i] = start
            if len(self._starts[i]) > 2 * LOAD:
                self._split(i)
        self._len += 1

    def _split(self, i: int) -> None:
        st, rw = self._starts[i], self._rows[i]
        self._starts[i:i + 1] = [st[:LOAD], st[LOAD:]]
        self._rows[i:i + 1] = [rw[:LOAD], rw[LOAD:]]
        self._firsts[i:i + 1] = [st[0], st[LOAD]]

    def can_insert_many(self, starts: Sequence[int] | npt.NDArray[np.uint64],
                        sizes: Sequence[int] | npt.NDArray[np.uint64]) -> bool:
        """Whether blocks at *starts* (all of size > 0) overlap neither each other nor the tree.

        When this holds, inserting them one by one raises no overlap, and
        :meth:`insert_rows` gives the same tree.  Runtime complexity:
        ``O(m log(m) + log(n) + k)`` (numpy) for *m* new blocks whose span
        holds *k* existing ones.
        """
        if not len(starts):
            return True
        st = np.asarray(starts, dtype=np.uint64)
        en = st + np.asarray(sizes, dtype=np.uint64)
        lo, hi = int(st.min()), int(en.max())
        # Existing neighbours: the predecessor of the span and everything inside it.
        first = max(bisect_right(self._firsts, lo) - 1, 0)
        last = bisect_right(self._firsts, hi)
        if first < last:
            near_st = np.concatenate([np.frombuffer(c, dtype=np.uint64)
                                      for c in self._starts[first:last]])
            near_rw = np.concatenate([np.frombuffer(c, dtype=np.int64)
                                      for c in self._rows[first:last]])
            sizes_of = np.frombuffer(self.store.size, dtype=np.uint64)
            st = np.concatenate((st, near_st))
            en = np.concatenate((en, near_st + sizes_of[near_rw]))
            del sizes_of  # a live view would stop the size column from growing
        order = np.argsort(st, kind="stable")
        st, en = st[order], en[order]
        return bool((st[1:] >= en[:-1]).all())

    def insert_rows(self, starts: Sequence[int] | npt.NDArray[np.uint64], rows: Sequence[int]
                    ) -> None:
        """Insert the objects of *rows* (sizes > 0) at *starts*; the caller checked
        :meth:`can_insert_many`.

        Runtime complexity: ``O(m log(n))`` for few rows, ``O((n + m) log(n + m))``
        (one merge, numpy) when *m* is large.
        """
        if len(rows) * 8 < self._len:
            if isinstance(starts, np.ndarray):
                starts = starts.tolist()  # (Python ints: the chunks' searches compare them)
            for start, row in zip(starts, rows, strict=True):
                i, j = self._floor(start)
                self._insert_at(max(i, 0), j + 1, start, row)
            return
        all_starts, all_rows = self.sorted_rows()
        st = np.concatenate((all_starts, np.asarray(starts, dtype=np.uint64)))
        rw = np.concatenate((all_rows, np.asarray(rows, dtype=np.int64)))
        order = np.argsort(st, kind="stable")
        self._rebuild(st[order], rw[order])

    def _rebuild(self, starts: npt.NDArray[np.uint64], rows: npt.NDArray[np.int64]) -> None:
        self._starts, self._rows, self._firsts = [], [], []
        for k in range(0, len(starts), LOAD):
            chunk = array("Q")
            chunk.frombytes(starts[k:k + LOAD].tobytes())
            self._starts.append(chunk)
            rchunk = array("q")
            rchunk.frombytes(rows[k:k + LOAD].tobytes())
            self._rows.append(rchunk)
            self._firsts.append(chunk[0])
        self._len = len(starts)

    def remove(self, obj: KmemleakObject, start: int) -> None:
        """Take *obj* (inserted at untagged *start*) out of the tree.  ``O(log(n))``."""
        row = self._row_of(obj)
        if obj.size == 0:
            if row in self._unfindable:
                self._unfindable.remove(row)
            return
        i, j = self._floor(start)
        if i < 0 or self._starts[i][j] != start or self._rows[i][j] != row:
            return
        del self._starts[i][j]
        del self._rows[i][j]
        self._len -= 1
        if not self._starts[i]:
            del self._starts[i], self._rows[i], self._firsts[i]
        elif j == 0:
            self._firsts[i] = self._starts[i][0]

    def remap(self, new_row: npt.NDArray[np.int64]) -> None:
        """Rows renumbered by a store compaction: row ``r`` is now ``new_row[r]``.  ``O(n)``."""
        for k, rows in enumerate(self._rows):
            remapped = array("q")
            remapped.frombytes(new_row[np.frombuffer(rows, dtype=np.int64)].tobytes())
            self._rows[k] = remapped
        self._unfindable = new_row[self._unfindable].tolist() if self._unfindable else []

    # -- views for the fast scan and the checks -------------------------------------
    def sorted_rows(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
        """Every start (sorted) and its row, as numpy arrays (copies).  ``O(n)``."""
        if not self._starts:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
        starts = np.concatenate([np.frombuffer(c, dtype=np.uint64) for c in self._starts])
        rows = np.concatenate([np.frombuffer(c, dtype=np.int64) for c in self._rows])
        return starts, rows

    def _check(self) -> None:
        """Assert the invariant: sorted, non-overlapping, non-empty intervals."""
        last_end = -1
        assert self._firsts == [c[0] for c in self._starts]
        assert self._len == sum(map(len, self._starts))
        for chunk, rows in zip(self._starts, self._rows, strict=True):
            assert chunk
            assert len(chunk) == len(rows)
            for start, row in zip(chunk, rows, strict=True):
                size = self.store.size[row]
                assert size > 0, row
                assert start >= last_end, (hex(start), row)
                last_end = start + size
