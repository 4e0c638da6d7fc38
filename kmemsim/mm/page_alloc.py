"""The page allocator: physical pages, ``struct page`` descriptors, the direct map.

A buddy allocator over page frame numbers (lowest address first, blocks
aligned to their order, buddies merged on free).  Physical memory is mapped
into the direct map in 4 MiB sections the first time a page of the section
is handed out, so a 1 GiB machine costs only what it uses.  Freed pages keep
their bytes (unless ``init_on_free=1``): reused memory is stale, as on a real
machine.

kmemleak does not track page-allocator memory and never scans page
contents; it scans the ``struct page`` of every page in use (a root).

>>> from kmemsim import Kernel
>>> k = Kernel()
>>> addr = k.alloc_pages(1)                 # order 1: two pages
>>> k.kmemleak.find(addr) is None           # untracked
True
>>> k.free_pages(addr, 1)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sortedcontainers import SortedList

from ..errors import KmemsimValueError
from ..layout import PAGE_SHIFT, PAGE_SIZE, Arch
from ..memory import AddressSpace

#: ``MAX_PAGE_ORDER``: the largest block is 2**10 pages (4 MiB).
MAX_PAGE_ORDER = 10
SECTION_PAGES = 1 << MAX_PAGE_ORDER
#: Offset of ``_refcount`` inside ``struct page`` (64-bit; 32-bit uses 20).
REFCOUNT_OFFSET = {8: 52, 4: 20}
#: Offset of ``slab_cache`` in the ``struct slab`` overlay.
SLAB_CACHE_OFFSET = {8: 8, 4: 4}
PG_SLAB = 1 << 9


class PageAllocator:
    """Buddy allocator over ``[first_pfn, end_pfn)``.

    ``alloc(order)``/``free(pfn, order)``: Runtime complexity ``O(MAX_PAGE_ORDER * log(n))``.
    """

    def __init__(self, arch: Arch, memory: AddressSpace, first_pfn: int, end_pfn: int,
                 warn: Callable[[str], None]) -> None:
        self.arch = arch
        self.memory = memory
        self.first_pfn = first_pfn
        self.end_pfn = end_pfn
        self.total_pages = end_pfn - first_pfn
        self.free_pages = self.total_pages
        self.charged_pages = 0
        self._warn = warn
        self.free_area: list[SortedList] = [SortedList() for _ in range(MAX_PAGE_ORDER + 1)]
        self.allocated: dict[int, int] = {}  # head pfn -> order
        self.init_on_free = False
        self.init_on_alloc = False
        self._sections: set[int] = set()
        pfn = first_pfn
        while pfn < end_pfn:
            order = MAX_PAGE_ORDER
            while order and (pfn & ((1 << order) - 1) or pfn + (1 << order) > end_pfn):
                order -= 1
            self.free_area[order].add(pfn)
            pfn += 1 << order

    # -- addresses -----------------------------------------------------------
    def pfn_to_virt(self, pfn: int) -> int:
        return self.arch.page_offset + (pfn << PAGE_SHIFT)

    def virt_to_pfn(self, addr: int) -> int:
        return (addr - self.arch.page_offset) >> PAGE_SHIFT

    def struct_page(self, pfn: int) -> int:
        """Address of the ``struct page`` of *pfn* (``pfn_to_page``)."""
        return self.arch.vmemmap_start + pfn * self.arch.struct_page_size

    def _ensure_section(self, pfn: int) -> None:
        sec = pfn // SECTION_PAGES
        if sec in self._sections:
            return
        self._sections.add(sec)
        base = sec * SECTION_PAGES
        self.memory.map(self.pfn_to_virt(base), SECTION_PAGES * PAGE_SIZE,
                        f"direct map section {sec}", "direct")
        sp = self.arch.struct_page_size
        self.memory.map(self.struct_page(base), SECTION_PAGES * sp,
                        f"struct pages of section {sec}", "vmemmap")

    # -- allocation ------------------------------------------------------------
    def alloc(self, order: int, *, zero: bool = False) -> int:
        """Allocate 2**order contiguous pages; return the head pfn, or 0 when out of memory."""
        if not 0 <= order <= MAX_PAGE_ORDER:
            raise KmemsimValueError(f"order must be 0..{MAX_PAGE_ORDER}, got {order}")
        if self.free_pages - (1 << order) < 0 or not any(self.free_area[order:]):
            return 0
        pfn = self._take_block(order)
        ref = self.struct_page(pfn) + REFCOUNT_OFFSET[self.arch.word_size]
        sp = self.arch.struct_page_size
        self.memory.write_each(range(ref, ref + (sp << order), sp), (1).to_bytes(4, "little"))
        if zero or self.init_on_alloc:
            self.memory.fill(self.pfn_to_virt(pfn), PAGE_SIZE << order, 0)
        return pfn

    def _take_block(self, order: int) -> int:
        """Take the lowest free block of the smallest order from *order* up that has one
        (the caller checked there is one), split it down to *order* keeping the low
        half, and account for it; its head pfn."""
        o = order
        while not self.free_area[o]:
            o += 1
        pfn: int = self.free_area[o].pop(0)
        while o > order:  # split, keeping the low half
            o -= 1
            self.free_area[o].add(pfn + (1 << o))
        self.allocated[pfn] = order
        self.free_pages -= 1 << order
        self._ensure_section(pfn)
        return pfn

    def alloc_many(self, orders: list[int]) -> list[int] | None:
        """``alloc(order)`` for each of *orders* in turn: the head pfns, the same blocks,
        free lists and bytes as the calls one by one (the ``struct page`` refcounts are
        written together); ``None``, and nothing done, when one of them would fail.

        Whether they all succeed depends only on how many free blocks each order
        has, so the splits are first replayed on the counts.

        >>> from kmemsim import Kernel
        >>> a, b = Kernel(seed=1).page_allocator, Kernel(seed=1).page_allocator
        >>> a.alloc_many([0, 3, 1]) == [b.alloc(0), b.alloc(3), b.alloc(1)]
        True
        >>> a.alloc_many([MAX_PAGE_ORDER] * (a.free_pages >> MAX_PAGE_ORDER) * 2) is None
        True
        """
        count = [len(fl) for fl in self.free_area]
        free = self.free_pages
        for order in orders:
            if not 0 <= order <= MAX_PAGE_ORDER:
                raise KmemsimValueError(f"order must be 0..{MAX_PAGE_ORDER}, got {order}")
            free -= 1 << order
            o = order
            while o <= MAX_PAGE_ORDER and not count[o]:
                o += 1
            if free < 0 or o > MAX_PAGE_ORDER:
                return None
            count[o] -= 1
            for lower in range(order, o):  # the upper halves of the split stay free
                count[lower] += 1
        pfns: list[int] = []
        refs: dict[int, list[int]] = {}  # section -> refcount addresses (one region each)
        sp = self.arch.struct_page_size
        ref_offset = REFCOUNT_OFFSET[self.arch.word_size]
        for order in orders:
            pfn = self._take_block(order)
            pfns.append(pfn)
            ref = self.struct_page(pfn) + ref_offset
            refs.setdefault(pfn // SECTION_PAGES, []).extend(range(ref, ref + (sp << order), sp))
        for addrs in refs.values():
            self.memory.write_each(addrs, (1).to_bytes(4, "little"))
        if self.init_on_alloc:
            for pfn, order in zip(pfns, orders, strict=True):
                self.memory.fill(self.pfn_to_virt(pfn), PAGE_SIZE << order, 0)
        return pfns

    def free(self, pfn: int, order: int) -> None:
        """Return a block; its bytes stay unless ``init_on_free``."""
        if self.allocated.get(pfn) != order:
            raise KmemsimValueError(f"pfn {pfn:#x} order {order} is not an allocated block")
        del self.allocated[pfn]
        self.free_pages += 1 << order
        sp = self.arch.struct_page_size
        self.memory.write(self.struct_page(pfn), bytes(sp << order))
        if self.init_on_free:
            self.memory.fill(self.pfn_to_virt(pfn), PAGE_SIZE << order, 0)
        while order < MAX_PAGE_ORDER:
            buddy = pfn ^ (1 << order)
            if buddy in self.free_area[order]:
                self.free_area[order].remove(buddy)
                pfn = min(pfn, buddy)
                order += 1
            else:
                break
        self.free_area[order].add(pfn)

    def charge(self, pages: int) -> bool:
        """Take *pages* from the free count for memory not modelled byte by byte."""
        if self.free_pages < pages:
            return False
        self.free_pages -= pages
        self.charged_pages += pages
        return True

    def uncharge(self, pages: int) -> None:
        self.free_pages += pages
        self.charged_pages -= pages

    def mark_slab(self, pfn: int, order: int, cache_ptr: int) -> None:
        """Write ``PG_slab`` and ``slab->slab_cache`` into the head ``struct page``."""
        ws = self.arch.word_size
        head = self.struct_page(pfn)
        if SLAB_CACHE_OFFSET[ws] == ws:  # flags then slab_cache: two adjacent words, one write
            self.memory.write(head, PG_SLAB.to_bytes(ws, "little") + cache_ptr.to_bytes(ws, "little"))
        else:  # pragma: no cover - every layout has slab_cache right after the flags
            self.memory.write(head, PG_SLAB.to_bytes(ws, "little"))
            self.memory.write(head + SLAB_CACHE_OFFSET[ws], cache_ptr.to_bytes(ws, "little"))

    def in_use_ranges(self) -> list[tuple[int, int]]:
        """``struct page`` address ranges of all pages in use, merged when adjacent.

        Runtime complexity: ``O(B log(B))`` for ``B`` allocated blocks (numpy).
        """
        if not self.allocated:
            return []
        sp = self.arch.struct_page_size
        n = len(self.allocated)
        pfn = np.fromiter(self.allocated.keys(), dtype=np.int64, count=n)
        order = np.fromiter(self.allocated.values(), dtype=np.int64, count=n)
        by_pfn = np.argsort(pfn)
        pfn, order = pfn[by_pfn], order[by_pfn]
        # struct_page(pfn) for each block, and the end of its run of struct pages
        begin = pfn * sp
        end = begin + (np.int64(sp) << order)
        new_run = np.concatenate(([True], begin[1:] != end[:-1]))
        heads = np.flatnonzero(new_run)
        tails = np.concatenate((heads[1:], [n])) - 1
        base = self.arch.vmemmap_start
        return [(base + b, base + e) for b, e in
                zip(begin[heads].tolist(), end[tails].tolist(), strict=True)]

    def _check(self) -> None:
        """Assert that free and allocated blocks tile the managed range exactly."""
        seen = 0
        for order, fl in enumerate(self.free_area):
            for pfn in fl:
                assert pfn % (1 << order) == 0
                seen += 1 << order
        assert seen == self.free_pages + self.charged_pages
        assert seen + sum(1 << o for o in self.allocated.values()) == self.total_pages


def get_order(size: int) -> int:
    """``get_order(size)``: the smallest order whose block holds *size* bytes.

    >>> get_order(4096), get_order(4097), get_order(8192 * 4)
    (0, 1, 3)
    """
    order, block = 0, PAGE_SIZE
    while block < size:
        block <<= 1
        order += 1
    return order
