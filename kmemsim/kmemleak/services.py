"""What kmemleak may ask of the kernel it lives in.

The detector sees memory bytes, hook calls and these few kernel services,
nothing else (rule 1 of the design): it never learns what the program meant.
:class:`~kmemsim.kernel.Kernel` implements this protocol.
"""

from __future__ import annotations

from typing import Protocol

from ..layout import Arch
from ..memory import AddressSpace


class KernelServices(Protocol):
    """The kernel facilities ``mm/kmemleak.c`` uses (clock, current task, traces, logs)."""

    arch: Arch
    memory: AddressSpace
    hz: int

    @property
    def jiffies(self) -> int: ...

    def current_task(self) -> tuple[int, str]:
        """``(pid, comm)`` of the allocating context (``0, "hardirq"`` in IRQs)."""
        ...

    def save_stack_trace(self) -> tuple[int, ...]:
        """Return addresses of the current call chain, innermost first, at most 16."""
        ...

    def symbolize(self, addr: int) -> str:
        """``%pS``: ``name+0xoff/0xlen [module]``, or ``0x<addr>`` without a symbol."""
        ...

    def hash_pointer(self, addr: int) -> int:
        """``%p``'s per-boot keyed hash of a pointer (32 bits)."""
        ...

    def printk(self, line: str) -> None:
        """Append one line to the kernel log."""
        ...

    def dump_stack(self) -> list[str]:
        """The lines ``dump_stack()`` prints for the current context."""
        ...

    def possible_cpus(self) -> range: ...

    def per_cpu_offset(self, cpu: int) -> int: ...

    def percpu_static_sections(self) -> list[tuple[int, int]]:
        """``[__per_cpu_start + offset(cpu), __per_cpu_end + offset(cpu))`` per possible CPU."""
        ...

    def struct_page_ranges(self) -> list[tuple[int, int]]:
        """Address ranges of the ``struct page`` descriptors of pages in use."""
        ...

    def task_stacks(self) -> list[tuple[int, int]]:
        """``[stack, stack + THREAD_SIZE)`` of every thread that has a stack."""
        ...

    def phys_to_virt(self, phys: int) -> int:
        """``__va(phys)``: the linear-map address of a physical address."""
        ...

    def lowmem_pfn_range(self) -> tuple[int, int]:
        """``(min_low_pfn, max_low_pfn)``."""
        ...

    def metadata_alloc(self, nbytes: int) -> bool:
        """Charge *nbytes* to kmemleak's metadata slab; False when memory is exhausted."""
        ...

    def metadata_alloc_many(self, nbytes: int, count: int) -> bool:
        """*count* ``metadata_alloc(nbytes)`` calls at once, all or nothing."""
        ...

    def metadata_free(self, nbytes: int) -> None: ...

    def metadata_fits(self, nbytes: int, count: int) -> bool:
        """Whether *count* more ``metadata_alloc(nbytes)`` calls will all succeed."""
        ...
