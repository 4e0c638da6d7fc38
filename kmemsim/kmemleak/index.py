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

from collections.abc import Iterator

from sortedcontainers import SortedDict

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
        i = sd.bisect_right(start)
        if i > 0:
            pstart, prev = sd.peekitem(i - 1)
            if pstart + prev.size > start:
                return prev  # type: ignore[no-any-return]
        if i < len(sd):
            nstart, nxt = sd.peekitem(i)
            if nstart < end:
                return nxt  # type: ignore[no-any-return]
        sd[start] = obj
        return None

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
        sd = self._by_start
        i = sd.bisect_right(addr) - 1
        if i < 0:
            return None
        start, obj = sd.peekitem(i)
        if addr < start + obj.size:
            return obj  # type: ignore[no-any-return]
        return None

    def _check(self) -> None:
        """Assert the invariant: sorted, non-overlapping, non-empty intervals."""
        last_end = -1
        for start, obj in self._by_start.items():
            assert obj.size > 0, obj
            assert start >= last_end, (hex(start), obj)
            last_end = start + obj.size
