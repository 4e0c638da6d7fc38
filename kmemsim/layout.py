"""Architecture constants: word size, address map, poison values.

Each supported architecture is one frozen :class:`Arch` value.  Numbers are
the kernel's own for a 4 KiB-page configuration (x86_64 with 4-level paging,
arm64 with 48-bit VA, i386 with the 3G/1G split), so addresses printed by the
simulator look like the addresses a real kernel prints.

>>> from kmemsim.layout import arch_by_name
>>> a = arch_by_name("x86_64")
>>> hex(a.page_offset), a.word_size
('0xffff888000000000', 8)
>>> hex(arch_by_name("i386").list_poison1)
'0x100'
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import KmemsimTypeError, KmemsimValueError

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

# SLUB poison bytes (include/linux/poison.h).
POISON_FREE = 0x6B
POISON_END = 0xA5
POISON_INUSE = 0x5A

# LIST_POISON1/2 before POISON_POINTER_DELTA is added (include/linux/poison.h).
_LIST_POISON1 = 0x100
_LIST_POISON2 = 0x122


@dataclass(frozen=True, slots=True)
class Arch:
    """One architecture's memory map and ABI facts.

    Attributes are named after the kernel symbols they model
    (``PAGE_OFFSET``, ``VMALLOC_START``, ``MODULES_VADDR`` ...), lowercased.
    """

    name: str
    word_size: int
    page_offset: int
    """Start of the direct (linear) map of physical memory."""
    lowmem_limit: int
    """Bytes of physical memory the direct map can reach (896 MiB on i386)."""
    vmalloc_start: int
    vmalloc_end: int
    modules_vaddr: int
    modules_end: int
    kernel_text: int
    """Address of ``_text``; kernel ``.data``/``.bss`` start 16 MiB later."""
    vmemmap_start: int
    """Where the ``struct page`` array lives."""
    percpu_cookie_base: int
    """``__per_cpu_start``: per-CPU cookies are offsets from here."""
    poison_pointer_delta: int
    thread_size: int
    struct_page_size: int
    long_align: int
    """Alignment of ``long``/pointers in the C ABI (i386 aligns 8-byte types to 4)."""
    top_byte_tags: bool
    """True where kmemleak untags pointers (arm64 KASAN tags live in bits 56..63)."""
    syscall_frames: tuple[str, ...]
    """Frames below ``sys_finit_module`` in a backtrace of a module load."""

    @property
    def kernel_data(self) -> int:
        """Start of the kernel's ``.data`` section (``_sdata``)."""
        return self.kernel_text + 0x0100_0000

    @property
    def word_mask(self) -> int:
        return (1 << (8 * self.word_size)) - 1

    @property
    def list_poison1(self) -> int:
        """``LIST_POISON1``: what ``list_del`` leaves in ``next``."""
        return _LIST_POISON1 + self.poison_pointer_delta

    @property
    def list_poison2(self) -> int:
        """``LIST_POISON2``: what ``list_del`` leaves in ``prev``."""
        return _LIST_POISON2 + self.poison_pointer_delta

    @property
    def word_format(self) -> str:
        """``struct``/``memoryview.cast`` code of one little-endian word."""
        return "<Q" if self.word_size == 8 else "<I"

    def untag(self, addr: int) -> int:
        """``kasan_reset_tag``: identity on x86; on arm64 set bits 56..63."""
        if self.top_byte_tags:
            return addr | 0xFF00_0000_0000_0000
        return addr

    def page_align(self, size: int) -> int:
        """``PAGE_ALIGN(size)``."""
        return (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)

    def fmt_addr(self, addr: int) -> str:
        """``%px``: the full zero-padded address without ``0x``, as oopses print it."""
        return f"{addr:0{2 * self.word_size}x}"


X86_64 = Arch(
    name="x86_64",
    word_size=8,
    page_offset=0xFFFF_8880_0000_0000,
    lowmem_limit=1 << 46,
    vmalloc_start=0xFFFF_C900_0000_0000,
    vmalloc_end=0xFFFF_E8FF_FFFF_FFFF,
    modules_vaddr=0xFFFF_FFFF_C000_0000,
    modules_end=0xFFFF_FFFF_FF00_0000,
    kernel_text=0xFFFF_FFFF_8100_0000,
    vmemmap_start=0xFFFF_EA00_0000_0000,
    percpu_cookie_base=0x0000_60FE_C000_0000,
    poison_pointer_delta=0xDEAD_0000_0000_0000,
    thread_size=16384,
    struct_page_size=64,
    long_align=8,
    top_byte_tags=False,
    syscall_frames=(
        "__x64_sys_finit_module",
        "do_syscall_64",
        "entry_SYSCALL_64_after_hwframe",
    ),
)

ARM64 = Arch(
    name="arm64",
    word_size=8,
    page_offset=0xFFFF_0000_0000_0000,
    lowmem_limit=1 << 47,
    vmalloc_start=0xFFFF_8000_8200_0000,
    vmalloc_end=0xFFFF_FDFF_BF7F_FFFF,
    modules_vaddr=0xFFFF_8000_0000_0000,
    modules_end=0xFFFF_8000_8000_0000,
    kernel_text=0xFFFF_8000_8001_0000,
    vmemmap_start=0xFFFF_FC00_0000_0000,
    percpu_cookie_base=0x0000_7DFD_2000_0000,
    poison_pointer_delta=0xDEAD_0000_0000_0000,
    thread_size=16384,
    struct_page_size=64,
    long_align=8,
    top_byte_tags=True,
    syscall_frames=(
        "__arm64_sys_finit_module",
        "invoke_syscall",
        "el0_svc_common.constprop.0",
        "do_el0_svc",
        "el0_svc",
        "el0t_64_sync_handler",
        "el0t_64_sync",
    ),
)

I386 = Arch(
    name="i386",
    word_size=4,
    page_offset=0xC000_0000,
    lowmem_limit=896 << 20,
    vmalloc_start=0xF880_0000,
    vmalloc_end=0xFF7F_E000,
    # i386 has no separate module area: modules live in the vmalloc space.
    modules_vaddr=0xF880_0000,
    modules_end=0xFF7F_E000,
    kernel_text=0xC100_0000,
    # No vmemmap on i386: mem_map is placed above the vmalloc area, out of the way.
    vmemmap_start=0xFF80_0000,
    percpu_cookie_base=0x0040_0000,
    poison_pointer_delta=0,
    thread_size=8192,
    struct_page_size=32,
    long_align=4,
    top_byte_tags=False,
    syscall_frames=("__ia32_sys_finit_module", "do_int80_syscall_32", "entry_INT80_32"),
)

ARCHES: dict[str, Arch] = {a.name: a for a in (X86_64, ARM64, I386)}


def arch_by_name(name: str) -> Arch:
    """Return the :class:`Arch` called *name* (``x86_64``, ``arm64``, ``i386``).

    >>> arch_by_name("arm64").top_byte_tags
    True
    """
    if not isinstance(name, str):
        # Kernel(arch=None) is a wrong type, not an unknown architecture.
        raise KmemsimTypeError(f"arch must be a str naming an architecture, not "
                               f"{type(name).__name__}")
    if name not in ARCHES:
        raise KmemsimValueError(
            f"unknown architecture {name!r}: choose one of {', '.join(ARCHES)}"
        )
    return ARCHES[name]
