"""Kernel and module symbols: backtrace addresses, ``%pS`` and ``addr2line``.

Kernel text symbols have fixed addresses and sizes (one table for all
architectures, laid out from ``_text``); each return address in a trace is
the symbol's address plus the offset of its call site.  Module functions are
the Python functions of a module's class: each gets a symbol in the module's
text, 16 bytes per source line, so a return address encodes the Python line
that made the call and :func:`addr2line` can map it back.

>>> from kmemsim.layout import X86_64
>>> t = KernelSymbols(X86_64)
>>> t.symbolize(t.return_address("do_one_initcall"))
'do_one_initcall+0x41/0x310'
"""

from __future__ import annotations

import bisect
import inspect
from dataclasses import dataclass, field
from types import CodeType, FunctionType

from .errors import KmemsimValueError
from .layout import Arch

#: (name, size, call-site offset of the return address that traces show)
KERNEL_TEXT: tuple[tuple[str, int, int], ...] = (
    ("__kmalloc_cache_noprof", 0x3A0, 0x2F1),
    ("__kmalloc_noprof", 0x3C0, 0x2E4),
    ("__kmalloc_large_noprof", 0x120, 0x2C),
    ("kmem_cache_alloc_noprof", 0x350, 0x2A8),
    ("kmem_cache_create_usercopy", 0x2E0, 0x1B2),
    ("pcpu_alloc_noprof", 0x9E0, 0x61E),
    ("alloc_vmap_area", 0x7A0, 0x11D),
    ("__get_vm_area_node", 0x130, 0xC2),
    ("__vmalloc_area_node", 0x6A0, 0x1B9),
    ("__vmalloc_node_range_noprof", 0x8C0, 0x4F6),
    ("__vmalloc_node_noprof", 0x90, 0x5A),
    ("vmalloc_noprof", 0x40, 0x29),
    ("vzalloc_noprof", 0x40, 0x29),
    ("execmem_alloc", 0x1A0, 0x8D),
    ("module_memory_alloc", 0x120, 0x4B),
    ("do_one_initcall", 0x310, 0x41),
    ("do_init_module", 0x260, 0x90),
    ("load_module", 0x2650, 0x21D3),
    ("init_module_from_file", 0xC0, 0x86),
    ("idempotent_init_module", 0x2B0, 0x119),
    ("__x64_sys_finit_module", 0xB0, 0x5E),
    ("__arm64_sys_finit_module", 0xB0, 0x5C),
    ("__ia32_sys_finit_module", 0xB0, 0x5E),
    ("__do_sys_delete_module", 0x2E0, 0x1F3),
    ("__x64_sys_delete_module", 0x20, 0x12),
    ("__arm64_sys_delete_module", 0x20, 0x12),
    ("__ia32_sys_delete_module", 0x20, 0x12),
    ("do_syscall_64", 0x120, 0x58),
    ("entry_SYSCALL_64_after_hwframe", 0x7E, 0x76),
    ("invoke_syscall", 0x110, 0x4C),
    ("el0_svc_common.constprop.0", 0x110, 0x98),
    ("do_el0_svc", 0x30, 0x20),
    ("el0_svc", 0x40, 0x34),
    ("el0t_64_sync_handler", 0x120, 0xE4),
    ("el0t_64_sync", 0x198, 0x194),
    ("do_int80_syscall_32", 0x90, 0x43),
    ("entry_INT80_32", 0x30, 0x13),
    ("kmemleak_scan_thread", 0xF0, 0xB4),
    ("kthread", 0x120, 0xE1),
    ("ret_from_fork", 0x40, 0x34),
    ("ret_from_fork_asm", 0x20, 0x1A),
    ("dump_stack_lvl", 0x80, 0x64),
    ("kmemleak_warn", 0x50, 0x3F),
    # SLUB's debug paths (slub_debug=F reports), appended so earlier addresses stay put
    ("kfree", 0x3A0, 0x2A4),
    ("kmem_cache_free", 0x4C0, 0x35B),
    ("kmem_cache_destroy", 0x1C0, 0x1C),
    ("vfree", 0x1E0, 0x10B),
    ("__slab_free", 0x2E0, 0x1D2),
    ("free_debug_processing", 0x2A0, 0x1F6),
    ("alloc_debug_processing", 0x1A0, 0xE1),
    ("___slab_alloc", 0xA10, 0x6C3),
    ("check_object", 0x2C0, 0xD4),
    ("check_bytes_and_report", 0x140, 0xE9),
    ("print_trailer", 0x160, 0x10A),
    ("object_err", 0x60, 0x4D),
    ("slab_err", 0xE0, 0xB8),
)

#: Bytes of module text per Python source line (see :func:`addr2line`).
BYTES_PER_LINE = 0x10
#: Offset of the return address inside a line's 16 bytes (after a 5-byte call).
CALL_RETURN_OFFSET = 0x9


class KernelSymbols:
    """The kernel's text symbols, at fixed addresses from ``_text + 0x100000``."""

    def __init__(self, arch: Arch) -> None:
        self.arch = arch
        self._by_name: dict[str, tuple[int, int, int]] = {}
        starts: list[int] = []
        entries: list[tuple[int, int, str]] = []
        addr = arch.kernel_text + 0x100000
        for name, size, call in KERNEL_TEXT:
            self._by_name[name] = (addr, size, call)
            starts.append(addr)
            entries.append((addr, size, name))
            addr = (addr + size + 0x3F) & ~0x3F
        self._starts = starts
        self._entries = entries

    def return_address(self, name: str) -> int:
        """The return address a trace shows for a call made from *name*."""
        try:
            addr, _, call = self._by_name[name]
        except KeyError:
            raise KmemsimValueError(f"no kernel symbol {name!r}") from None
        return addr + call

    def lookup(self, addr: int) -> tuple[str, int, int] | None:
        """``(name, offset, size)`` of the symbol containing *addr*, or ``None``."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            start, size, name = self._entries[i]
            if addr < start + size:
                return name, addr - start, size
        return None

    def symbolize(self, addr: int) -> str:
        hit = self.lookup(addr)
        if hit is None:
            return f"0x{addr:x}"
        name, off, size = hit
        return f"{name}+0x{off:x}/0x{size:x}"


@dataclass(slots=True)
class ModuleSymbol:
    """One function of a simulated module."""

    name: str
    addr: int
    size: int
    code: CodeType
    filename: str
    firstlineno: int


@dataclass(slots=True)
class ModuleLayout:
    """Where a module's text was, and its symbols (kept after unload for addr2line)."""

    name: str
    text_start: int
    text_size: int
    symbols: list[ModuleSymbol] = field(default_factory=list)
    loaded: bool = True

    def lookup(self, addr: int) -> ModuleSymbol | None:
        for sym in self.symbols:
            if sym.addr <= addr < sym.addr + sym.size:
                return sym
        return None


def module_functions(cls: type) -> list[tuple[str, FunctionType]]:
    """The functions that become a module's text symbols, in definition order.

    Methods of the module class (``init`` and ``exit`` are named
    ``<module>_init``/``<module>_exit``, as ``module_init()`` targets usually
    are) and the plain functions of the same Python file.
    """
    out: list[tuple[str, FunctionType]] = []
    seen: set[CodeType] = set()
    for klass in reversed(cls.__mro__):
        if klass.__module__ == "kmemsim.module" or klass is object:
            continue
        for attr, value in vars(klass).items():
            fn = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            if isinstance(fn, FunctionType) and fn.__code__ not in seen:
                seen.add(fn.__code__)
                out.append((attr, fn))
    module = inspect.getmodule(cls)
    if module is not None:
        for attr, value in vars(module).items():
            if (isinstance(value, FunctionType) and value.__module__ == module.__name__
                    and value.__code__ not in seen):
                seen.add(value.__code__)
                out.append((attr, value))
    return out


def layout_module(name: str, cls: type, text_start: int) -> ModuleLayout:
    """Give each module function a symbol: 16 bytes per source line."""
    layout = ModuleLayout(name, text_start, 0)
    addr = text_start
    for attr, fn in module_functions(cls):
        try:
            lines, first = inspect.getsourcelines(fn)
            nlines = len(lines)
        except (OSError, TypeError):
            first, nlines = fn.__code__.co_firstlineno, 8
        symname = f"{name}_{attr}" if attr in ("init", "exit") else attr
        size = BYTES_PER_LINE * (nlines + 1)
        layout.symbols.append(ModuleSymbol(symname, addr, size, fn.__code__,
                                           fn.__code__.co_filename, first))
        addr += (size + 0xF) & ~0xF
    layout.text_size = addr - text_start
    return layout


def return_address_in(sym: ModuleSymbol, lineno: int) -> int:
    """The return address of a call made at Python line *lineno* of *sym*."""
    line = max(0, min(lineno - sym.firstlineno, sym.size // BYTES_PER_LINE - 1))
    return sym.addr + BYTES_PER_LINE * line + CALL_RETURN_OFFSET


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """What :func:`addr2line` answers: the file, line and function of an address."""

    filename: str
    lineno: int
    function: str
    module: str

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno}"


def addr2line(layouts: list[ModuleLayout], addr: int) -> SourceLocation | None:
    """Map a module text address (loaded or unloaded) to its Python file and line."""
    for layout in reversed(layouts):
        sym = layout.lookup(addr)
        if sym is not None:
            line = sym.firstlineno + (addr - sym.addr) // BYTES_PER_LINE
            return SourceLocation(sym.filename, line, sym.name, layout.name)
    return None
