"""The object trees: kmemleak's index of tracked blocks by address interval.

kmemleak keeps three red-black trees keyed by ``[pointer, pointer+size)``:
virtual objects (found by pointer scanning), physical objects
(``OBJECT_PHYS``, never found by scanning) and per-CPU objects
(``OBJECT_PERCPU``, found through their own address window).  Here each
tree is a :class:`~sortedcontainers.SortedDict` from untagged start address
to object, which gives the same answers with the same complexity.

>>> from kmemsim.kmemleak.object import KmemleakObject
>>> t = ObjectTree("object_tree_root")
>>> a = KmemleakObject(0x1000, 0x100, 1, serial=1)
>>> t.insert(a, 0x1000) is None
True
>>> t.lookup(0x10ff) is a, t.lookup(0x1100)
(True, None)
>>> t.insert(KmemleakObject(0x10f0, 8, 1, serial=2), 0x10f0) is a   # overlaps: returns the parent
True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import pairwise

from sortedcontainers import SortedDict

from .._sorted import ceil_key, floor_key
from .object import KmemleakObject


class ObjectTree:
    """One interval index; intervals never overlap (``create_object`` refuses).

    Zero-size objects are kept aside: their interval is empty, so, as in the
    kernel, no lookup can ever find them (not even ``kmemleak_free``).
    """

    __slots__ = ("_by_start", "_unfindable", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._by_start: SortedDict = SortedDict()
        self._unfindable: list[KmemleakObject] = []

    def __len__(self) -> int:
        return len(self._by_start) + len(self._unfindable)

    def __iter__(self) -> Iterator[KmemleakObject]:
        yield from self._by_start.values()
        yield from self._unfindable

    def insert(self, obj: KmemleakObject, start: int) -> KmemleakObject | None:
        """Insert *obj* at untagged *start*; on overlap return the existing object.

        Runtime complexity: ``O(log(n))`` -- approximate.
        """
        if obj.size == 0:
            self._unfindable.append(obj)
            return None
        end = start + obj.size
        sd = self._by_start
        pstart = floor_key(sd, start)
        if pstart is not None and pstart + sd[pstart].size > start:
            return sd[pstart]  # type: ignore[no-any-return]
        nstart = ceil_key(sd, start + 1)
        if nstart is not None and nstart < end:
            return sd[nstart]  # type: ignore[no-any-return]
        sd[start] = obj
        return None

    def can_insert_many(self, starts: Sequence[int], sizes: Sequence[int]) -> bool:
        """Whether blocks at *starts* (all of size > 0) overlap neither each other nor the tree.

        When this holds, inserting them one by one raises no overlap, and
        :meth:`insert_many` gives the same tree.  Runtime complexity:
        ``O(m log(m) + log(n) + k)`` for *m* new blocks whose span holds *k*
        existing ones.
        """
        if not starts:
            return True
        pairs = sorted(zip(starts, sizes, strict=True))
        lo, hi = pairs[0][0], pairs[-1][0] + pairs[-1][1]
        sd = self._by_start
        # Existing neighbours: the predecessor of the span and everything inside it.
        near = list(sd.irange(lo, hi, inclusive=(True, False)))
        before = floor_key(sd, lo - 1)
        if before is not None:
            near.append(before)
        if near:
            pairs = sorted(pairs + [(s, sd[s].size) for s in near])
        return all(s0 + n0 <= s1 for (s0, n0), (s1, _) in pairwise(pairs))

    def insert_many(self, objs: Sequence[KmemleakObject], starts: Sequence[int]) -> None:
        """Insert every object at its start; the caller checked :meth:`can_insert_many`.

        Runtime complexity: ``O(m log(n + m))``, ``O((n + m) log(n + m))`` at worst
        (sortedcontainers rebuilds when *m* is large).
        """
        self._by_start.update(zip(starts, objs, strict=True))

    def remove(self, obj: KmemleakObject, start: int) -> None:
        """Take *obj* (inserted at untagged *start*) out of the tree.  ``O(log(n))``."""
        if obj.size == 0:
            self._unfindable.remove(obj)
        elif self._by_start.get(start) is obj:
            del self._by_start[start]

    def lookup(self, addr: int) -> KmemleakObject | None:
        """The object whose interval contains untagged *addr*, or ``None``.

        The caller decides what an interior hit means (the alias rule).
        Runtime complexity: ``O(log(n))``.
        """
        start = floor_key(self._by_start, addr)
        if start is None:
            return None
        obj: KmemleakObject = self._by_start[start]
        if addr < start + obj.size:
            return obj
        return None

    def _check(self) -> None:
        """Assert the invariant: sorted, non-overlapping, non-empty intervals."""
        last_end = -1
        for start, obj in self._by_start.items():
            assert obj.size > 0, obj
            assert start >= last_end, (hex(start), obj)
            last_end = start + obj.size
