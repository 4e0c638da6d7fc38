"""memblock: boot-time physical allocations, registered as phys objects (min_count 0).

``memblock_alloc`` returns the linear-map address of a physical block and
calls ``kmemleak_alloc_phys``: such blocks are gray roots (many are reached
only through physical addresses, which kmemleak never looks up), scanned
through their linear-map alias, unless they lie outside lowmem, in which
case the scan paints them black.

>>> from kmemsim import Kernel
>>> k = Kernel()
>>> v = k.memblock_alloc(256)
>>> k.kmemleak.find(k.virt_to_phys(v), tree="phys").min_count
0
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import KmemsimTypeError, KmemsimValueError, check_int

if TYPE_CHECKING:
    from ..kernel import Kernel

#: ``MEMBLOCK_ALLOC_NOLEAKTRACE``: the caller asks kmemleak not to track the block.
MEMBLOCK_ALLOC_NOLEAKTRACE = 0


class Memblock:
    """A bump allocator over the boot arena ``[start, end)`` (physical addresses)."""

    def __init__(self, k: Kernel, start: int, end: int) -> None:
        self.k = k
        self.start = start
        self.end = end
        self.next = start
        self.reserved: list[tuple[int, int]] = []

    def alloc(self, size: int, align: int, *, leaktrace: bool = True) -> int:
        """Return the virtual address of a zeroed block, or 0 when the arena is full."""
        check_int("size", size, minimum=1)
        check_int("align", align, minimum=1)
        if align & (align - 1):
            raise KmemsimValueError(f"align must be a power of two, got {align}")
        if not isinstance(leaktrace, bool):
            raise KmemsimTypeError(f"leaktrace must be a bool, not {type(leaktrace).__name__}")
        phys = (self.next + align - 1) & ~(align - 1)
        if phys + size > self.end:
            return 0
        self.next = phys + size
        self.reserved.append((phys, size))
        virt = self.k.phys_to_virt(phys)
        self.k.memory.fill(virt, size, 0)
        if leaktrace:
            self.k.kmemleak.kmemleak_alloc_phys(phys, size)
        return virt

    def free(self, virt: int, size: int) -> None:
        """``memblock_free``: ``kmemleak_free_part_phys`` of the range (memory is not reused)."""
        check_int("ptr", virt, minimum=0)
        check_int("size", size, minimum=1)
        phys = virt - self.k.arch.page_offset
        # Checked here, not by virt_to_phys: its error would name "virt", not the caller's ptr.
        if not (self.start <= phys and phys + size <= self.end):
            raise KmemsimValueError(
                f"ptr {virt:#x} (size {size}) is not memblock memory: the arena is "
                f"{self.k.phys_to_virt(self.start):#x}..{self.k.phys_to_virt(self.end):#x}")
        self.k.kmemleak.kmemleak_free_part_phys(phys, size)
