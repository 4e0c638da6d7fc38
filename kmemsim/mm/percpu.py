"""Per-CPU memory: one unit per possible CPU, a static section and a dynamic area.

A per-CPU pointer is a *cookie*: ``per_cpu_ptr(cookie, cpu)`` is
``cookie + __per_cpu_offset[cpu]``.  The units come from memblock at boot
and are painted black for kmemleak (``kmemleak_ignore_phys``, as
``pcpu_embed_first_chunk`` does): kmemleak tracks per-CPU allocations
separately, one ``OBJECT_PERCPU`` object per ``alloc_percpu`` (min_count 1),
found through the per-CPU address window.  The static sections
(``[__per_cpu_start, __per_cpu_end)`` of each CPU) are direct roots.

>>> from kmemsim import Kernel
>>> k = Kernel(ncpus=2)
>>> c = k.alloc_percpu(16)
>>> k.kmemleak.find(c, tree="percpu").min_count
1
>>> k.per_cpu_ptr(c, 1) - k.per_cpu_ptr(c, 0) == k.percpu.unit_size
True
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from ..errors import KmemsimValueError, check_int

if TYPE_CHECKING:
    from ..kernel import Kernel

#: Bytes of each unit's static section (``__per_cpu_end - __per_cpu_start``).
PERCPU_STATIC_SIZE = 16 * 1024
#: Bytes of each CPU's unit (static section plus the dynamic area).
PERCPU_UNIT_SIZE = 64 * 1024


class PerCpuAllocator:
    """First-fit allocator over the dynamic part of the first chunk."""

    def __init__(self, k: Kernel, unit_base: int) -> None:
        self.k = k
        self.unit_base = unit_base
        self.unit_size = PERCPU_UNIT_SIZE
        self.cookie_base = k.arch.percpu_cookie_base
        self.static_size = PERCPU_STATIC_SIZE
        self._static_sections: list[tuple[int, int]] | None = None
        self.static_used = 0
        self._free: list[tuple[int, int]] = [(PERCPU_STATIC_SIZE, PERCPU_UNIT_SIZE)]
        self.allocated: dict[int, int] = {}  # cookie -> size

    def per_cpu_offset(self, cpu: int) -> int:
        """``__per_cpu_offset[cpu]``."""
        return self.unit_base + cpu * self.unit_size - self.cookie_base

    def per_cpu_ptr(self, cookie: int, cpu: int) -> int:
        check_int("cpu", cpu, minimum=0)
        if cpu >= self.k.ncpus:
            raise KmemsimValueError(f"cpu {cpu} is not a possible CPU (ncpus={self.k.ncpus})")
        return cookie + self.per_cpu_offset(cpu)

    def static_sections(self) -> list[tuple[int, int]]:
        """Each CPU's copy of the static per-CPU section, ``(start, end)``, CPU 0 first."""
        # Fixed at boot, and asked for on every store (is the slot a root?): computed once.
        sections = self._static_sections
        if sections is None:
            sections = self._static_sections = [
                (self.cookie_base + self.per_cpu_offset(c),
                 self.cookie_base + self.static_size + self.per_cpu_offset(c))
                for c in range(self.k.ncpus)]
        return list(sections)

    def define_static(self, size: int) -> int:
        """Reserve *size* bytes of the static section (a ``DEFINE_PER_CPU``); return the cookie."""
        ws = self.k.arch.word_size
        off = (self.static_used + ws - 1) & ~(ws - 1)
        if off + size > self.static_size:
            raise KmemsimValueError("the per-CPU static section is full")
        self.static_used = off + size
        return self.cookie_base + off

    def alloc(self, size: int, align: int) -> int:
        """``pcpu_alloc``: zeroed on every CPU; 0 when the area is exhausted."""
        for i, (start, end) in enumerate(self._free):
            off = (start + align - 1) & ~(align - 1)
            if off + size <= end:
                del self._free[i]
                if end > off + size:
                    self._free.insert(i, (off + size, end))
                if off > start:
                    self._free.insert(i, (start, off))
                cookie = self.cookie_base + off
                self.allocated[cookie] = size
                for cpu in range(self.k.ncpus):
                    self.k.memory.fill(self.per_cpu_ptr(cookie, cpu), size, 0)
                return cookie
        return 0

    def free(self, cookie: int) -> bool:
        size = self.allocated.pop(cookie, None)
        if size is None:
            return False
        off = cookie - self.cookie_base
        bisect.insort(self._free, (off, off + size))
        merged: list[tuple[int, int]] = []
        for s, e in self._free:
            if merged and merged[-1][1] == s:
                merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        self._free = merged
        return True
