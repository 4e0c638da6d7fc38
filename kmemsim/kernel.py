"""Kernel: a booted simulated kernel with kmemleak, allocators, tasks and modules.

>>> from kmemsim import Kernel
>>> k = Kernel(cmdline="slub_debug=P")
>>> p = k.kmalloc(32)
>>> k.sleep(10)
>>> k.write("/sys/kernel/debug/kmemleak", "scan")     # first scan: checksum recorded
>>> k.write("/sys/kernel/debug/kmemleak", "scan")     # second: reported
>>> print(k.read("/sys/kernel/debug/kmemleak").splitlines()[0] == f"unreferenced object 0x{p:016x} (size 32):")
True
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import CodeType

import numpy as np

from .errors import (
    KernelOops,
    KmemsimTypeError,
    KmemsimValueError,
    PageFault,
    check_int,
    check_ints,
)
from .klib.list import INIT_LIST_HEAD, list_add_tail
from .klib.list import __list_del_entry as list_del_entry  # no name mangling in methods
from .kmemleak.debugfs import PATH as KMEMLEAK_PATH
from .kmemleak.debugfs import kmemleak_read, kmemleak_write
from .kmemleak.hooks import Kmemleak, KmemleakConfig
from .kmemleak.object import MAX_TRACE
from .kmemleak.report import REPORT_FORMATS
from .layout import PAGE_SHIFT, PAGE_SIZE, arch_by_name
from .memory import AddressSpace
from .mm.memblock import Memblock
from .mm.page_alloc import PageAllocator, get_order
from .mm.percpu import PERCPU_UNIT_SIZE, PerCpuAllocator
from .mm.slab import (
    KMALLOC_MAX_CACHE_SIZE,
    KMALLOC_SIZES,
    SLAB_KMALLOC,
    KmemCache,
    SlabAllocator,
    slab_alloc_bulk,
)
from .mm.vmalloc import VmallocAllocator, vmap_area_layout
from .module import Module
from .symbols import (
    KernelSymbols,
    ModuleLayout,
    ModuleSymbol,
    SourceLocation,
    addr2line,
    layout_module,
    return_address_in,
)
from .truth.encodings import Encoding, Plain
from .truth.model import Truth

#: Physical memory below this is firmware, the kernel image and its data.
RESERVED_LOW = 40 << 20
#: The memblock arena (boot allocations, per-CPU units): [40 MiB, 64 MiB).
MEMBLOCK_END = 64 << 20
#: Bytes of each of ``.data`` and ``.bss``.
KERNEL_SECTION_SIZE = 32 * 1024
#: Bytes of one ``struct kmem_cache``, ``struct module`` (simulated layouts).
KMEM_CACHE_STRUCT_WORDS = 32
STRUCT_MODULE_SIZE = 1024
#: Word index of the ``list`` member (a ``list_head`` on ``slab_caches``) in ``struct kmem_cache``.
KMEM_CACHE_LIST_WORD = 13
#: Word index of ``mem[MOD_TEXT].base`` in the simulated ``struct module``.
STRUCT_MODULE_TEXT_BASE = 8
#: Words of ``pt_regs`` at the top of every kernel stack.
PT_REGS_WORDS = 21


@dataclass(frozen=True)
class KernelConfig:
    """The Kconfig options kmemsim models (names without ``CONFIG_``).

    >>> KernelConfig.from_mapping({"CONFIG_DEBUG_KMEMLEAK_DEFAULT_OFF": True}).DEBUG_KMEMLEAK_DEFAULT_OFF
    True
    """

    DEBUG_KMEMLEAK: bool = True
    DEBUG_KMEMLEAK_DEFAULT_OFF: bool = False
    DEBUG_KMEMLEAK_AUTO_SCAN: bool = True
    DEBUG_KMEMLEAK_MEM_POOL_SIZE: int = 16000
    SLAB_FREELIST_HARDENED: bool = True
    SLUB_DEBUG_ON: bool = False

    @classmethod
    def from_mapping(cls, values: Mapping[str, bool | int] | None) -> KernelConfig:
        """Build from ``{"CONFIG_X": value}`` (the prefix is optional); unknown names are errors."""
        if values is None:
            return cls()
        if isinstance(values, KernelConfig):
            return values
        if not isinstance(values, Mapping):
            raise KmemsimTypeError("config must be a mapping of option names to values")
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, bool | int] = {}
        for key, value in values.items():
            name = key.removeprefix("CONFIG_") if isinstance(key, str) else key
            if name not in known:
                raise KmemsimValueError(f"unknown config option {key!r}; known: "
                                        + ", ".join(f"CONFIG_{n}" for n in known))
            if name == "DEBUG_KMEMLEAK_MEM_POOL_SIZE":
                check_int(key, value)
                if not 200 <= int(value) <= 1_000_000:
                    raise KmemsimValueError(f"{key} must be in 200..1000000, got {value}")
            elif not isinstance(value, bool):
                raise KmemsimTypeError(f"{key} must be a bool, not {type(value).__name__}")
            kwargs[name] = value
        return cls(**kwargs)  # type: ignore[arg-type]


@dataclass
class StackFrame:
    """One simulated function's frame on a task's kernel stack.

    ``slot(i)`` is the address of local word *i*.  When the frame returns its
    bytes stay where they were: stale words, exactly as on a real stack.
    """

    task: Task
    base: int
    nwords: int
    word_size: int

    def slot(self, i: int) -> int:
        check_int("i", i, minimum=0)
        if i >= self.nwords:
            raise KmemsimValueError(f"frame has {self.nwords} local words, not {i + 1}")
        return self.base + i * self.word_size


@dataclass
class Task:
    """A thread: ``pid``, ``comm`` and a ``THREAD_SIZE`` kernel stack."""

    pid: int
    comm: str
    stack: int
    stack_size: int
    sp: int
    stack_pfn: int = 0
    context: tuple[int, ...] = ()
    """Return addresses below the simulated code (e.g. the module loader's)."""
    alive: bool = True
    frames: list[StackFrame] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<Task {self.comm} pid={self.pid} stack={self.stack:#x}>"


@dataclass(slots=True)
class LoadedModule:
    name: str
    instance: Module
    layout: ModuleLayout
    text: int
    data: int
    struct_module: int
    data_size: int


def _check_name(what: str, name: object) -> None:
    if not isinstance(name, str):
        raise KmemsimTypeError(f"{what} must be a str, not {type(name).__name__}")
    if not name:
        raise KmemsimValueError(f"{what} must not be empty")


def kstrtobool(text: str) -> bool | None:
    """``kstrtobool``: ``y/Y/1/on`` are true, ``n/N/0/off`` false; ``None`` otherwise.

    >>> kstrtobool("Y\\n"), kstrtobool("0"), kstrtobool("off"), kstrtobool("maybe")
    (True, False, False, None)
    """
    s = text.strip("\n")
    if s[:1] in ("y", "Y", "1"):
        return True
    if s[:1] in ("n", "N", "0"):
        return False
    if s[:2].lower() == "on":
        return True
    if s[:3].lower() == "off" or s[:2].lower() == "of":
        return False
    return None


def _parse_cmdline(cmdline: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for word in cmdline.split():
        key, _, value = word.partition("=")
        params[key] = value
    return params


class Kernel:
    """A simulated Linux kernel with kmemleak (see the package docstring for a tour).

    :param arch: ``"x86_64"`` (default), ``"arm64"`` or ``"i386"``.
    :param hz: ``CONFIG_HZ`` (100, 250, 300 or 1000).
    :param ncpus: number of possible CPUs (1..64).
    :param cmdline: the boot command line (``kmemleak=on|off``,
        ``kmemleak.verbose=1``, ``slub_debug=P``, ``init_on_alloc=1``,
        ``init_on_free=1``, ``mem=512M``).
    :param config: Kconfig options, e.g. ``{"CONFIG_DEBUG_KMEMLEAK_DEFAULT_OFF": True}``.
    :param seed: seeds every random choice (freelist secrets, ``%p`` hashing).
    :param report_format: record layout era: ``"newest"``, ``"6.6"`` or ``"4.15"``.
    """

    def __init__(self, arch: str = "x86_64", hz: int = 1000, ncpus: int = 2, cmdline: str = "",
                 config: Mapping[str, bool | int] | None = None, seed: int = 0,
                 report_format: str = "newest") -> None:
        self.arch = arch_by_name(arch)
        check_int("hz", hz)
        if hz not in (100, 250, 300, 1000):
            raise KmemsimValueError(f"hz must be 100, 250, 300 or 1000, got {hz}")
        check_int("ncpus", ncpus, minimum=1)
        if ncpus > 64:
            raise KmemsimValueError(f"ncpus must be at most 64, got {ncpus}")
        if not isinstance(cmdline, str):
            raise KmemsimTypeError("cmdline must be a str")
        check_int("seed", seed)
        if report_format not in REPORT_FORMATS:
            raise KmemsimValueError(f"report_format must be one of {REPORT_FORMATS}")
        self.hz = hz
        self.ncpus = ncpus
        self.cmdline = cmdline
        self.seed = seed
        self.config = KernelConfig.from_mapping(config)
        self.rng = random.Random(seed)
        """The kernel's seeded random source (``get_random_*``); never the global one."""
        self._hash_key = hashlib.blake2b(f"ptr_key:{seed}".encode(), digest_size=16).digest()
        self._log: list[tuple[int, str]] = []
        self.INITIAL_JIFFIES = (1 << 32) - 300 * hz
        self._now = self.INITIAL_JIFFIES
        self.truth = Truth(self)
        """The ground truth: what the program meant (see :mod:`kmemsim.truth`)."""
        self.memory = AddressSpace(self.arch, on_fault=self._record_fault,
                                   on_write=self.truth.on_write,
                                   on_write_words=self.truth.on_write_words)
        self.symbols = KernelSymbols(self.arch)
        self.module_layouts: list[ModuleLayout] = []
        self.modules: dict[str, LoadedModule] = {}
        self._code_symbols: dict[CodeType, ModuleSymbol] = {}
        self._kernel_frames: list[int] = []
        # The stack depot: each distinct backtrace is kept once, shared by every object
        # allocated from the same place (lib/stackdepot.c deduplicates the same way).
        self._stack_depot: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._irq: str | None = None
        self.tasks: list[Task] = []
        self._next_pid = 1100
        self.statics: dict[str, int] = {}
        self._meta_objects = 0
        self._plain_bound: dict[int, Encoding] = {}  # store(): Plain bound per target size
        self._boot(_parse_cmdline(cmdline), report_format)

    # ------------------------------------------------------------------ boot
    def _boot(self, params: dict[str, str], report_format: str) -> None:
        a = self.arch
        self.printk(f"Linux version 6.16.0-kmemsim ({a.name}) #1 SMP PREEMPT_DYNAMIC")
        self.printk(f"Command line: {self.cmdline}")
        mem = self._parse_mem(params.get("mem", ""))
        self.ram_bytes = mem
        kl_param = params.get("kmemleak")
        cfg = self.config
        verbose = kstrtobool(params.get("kmemleak.verbose", "0")) is True
        self.kmemleak = Kmemleak(self, KmemleakConfig(
            enabled=cfg.DEBUG_KMEMLEAK, mem_pool_size=cfg.DEBUG_KMEMLEAK_MEM_POOL_SIZE,
            auto_scan=cfg.DEBUG_KMEMLEAK_AUTO_SCAN, verbose=verbose,
            report_format=report_format))
        if cfg.DEBUG_KMEMLEAK and kl_param is not None and kl_param not in ("on", "off"):
            self.printk("Malformed early option 'kmemleak'")
        if cfg.DEBUG_KMEMLEAK and kl_param == "off":
            self.kmemleak.kmemleak_disable()

        # Kernel image: .data and .bss (init_stack inside .data), kernel data mapped.
        self._data_start = a.kernel_data
        self._bss_start = a.kernel_data + KERNEL_SECTION_SIZE
        self.memory.map(self._data_start, 2 * KERNEL_SECTION_SIZE, "kernel .data/.bss", "kernel")
        self._data_next = {"data": self._data_start, "bss": self._bss_start}
        init_stack = self.define_static("init_stack", a.thread_size, section="data",
                                        align=a.thread_size)
        swapper = Task(0, "swapper/0", init_stack, a.thread_size,
                       init_stack + a.thread_size - PT_REGS_WORDS * a.word_size)
        self.idle_task = swapper
        self.current = swapper

        # memblock arena, page allocator, struct pages
        self.memblock_arena = Memblock(self, RESERVED_LOW, MEMBLOCK_END)
        self.memory.map(self.phys_to_virt(RESERVED_LOW), MEMBLOCK_END - RESERVED_LOW,
                        "memblock arena", "direct")
        lowmem_end = min(mem, a.lowmem_limit)
        self.page_allocator = PageAllocator(a, self.memory, MEMBLOCK_END >> PAGE_SHIFT,
                                            lowmem_end >> PAGE_SHIFT, self.printk)
        self.page_allocator.init_on_alloc = params.get("init_on_alloc") == "1"
        self.page_allocator.init_on_free = params.get("init_on_free") == "1"
        self.printk(f"Memory: {self.page_allocator.total_pages * 4}K/{mem // 1024}K available")

        # per-CPU first chunk (pcpu_embed_first_chunk): memblock, then ignored
        units = self.memblock_arena.alloc(self.ncpus * PERCPU_UNIT_SIZE, PAGE_SIZE)
        self.kmemleak.kmemleak_ignore_phys(self.virt_to_phys(units))
        self.percpu = PerCpuAllocator(self, units)

        # SLUB
        self.slab = SlabAllocator(self)
        # slub_debug alone means every check (FZPU), as CONFIG_SLUB_DEBUG_ON does.
        self.slab.setup_slub_debug(params.get("slub_debug"), cfg.SLUB_DEBUG_ON)
        self.printk(f"SLUB: HWalign=64, Order=0-3, MinObjects=0, CPUs={self.ncpus}, Nodes=1")
        self._slab_caches_head = self.define_static("slab_caches", 2 * a.word_size, "data")
        INIT_LIST_HEAD(self, self._slab_caches_head)
        kmem_cache_size = KMEM_CACHE_STRUCT_WORDS * a.word_size
        boot = self.slab.create("kmem_cache", kmem_cache_size)
        self._kmem_cache_cache = boot
        self._kmem_cache_var = self.define_static("kmem_cache", a.word_size, "data")
        self._link_cache_struct(boot, self._kmem_cache_var)
        self._kmalloc_caches_var = self.define_static(
            "kmalloc_caches", len(KMALLOC_SIZES) * a.word_size, "data")
        for i, size in enumerate(KMALLOC_SIZES):
            # Power-of-two kmallocs are naturally aligned (even with slub_debug);
            # the others get ARCH_KMALLOC_MINALIGN, the alignment of long long.
            align = size if size & (size - 1) == 0 else 8
            cache = self.slab.create(f"kmalloc-{size}", size, align, SLAB_KMALLOC)
            self.slab.kmalloc_caches[size] = cache
            self._link_cache_struct(cache, self._kmalloc_caches_var + i * a.word_size)

        # kmemleak_init: .data and .bss become gray objects
        if cfg.DEBUG_KMEMLEAK_DEFAULT_OFF and kl_param != "on":
            self.kmemleak.kmemleak_disable()
        self.kmemleak.kmemleak_init([
            (self._data_start, self._data_start + KERNEL_SECTION_SIZE),
            (self._bss_start, self._bss_start + KERNEL_SECTION_SIZE),
        ])

        # vmalloc_init
        self._vmap_area_list = self.define_static("vmap_area_list", 2 * a.word_size, "bss")
        INIT_LIST_HEAD(self, self._vmap_area_list)
        va_cache = self.kmem_cache_create("vmap_area", vmap_area_layout(a.word_size)["sizeof"])
        self.vmalloc_allocator = VmallocAllocator(self, va_cache, self._vmap_area_list)
        self._modules_head = self.define_static("modules", 2 * a.word_size, "data")
        INIT_LIST_HEAD(self, self._modules_head)

        # the first tasks, then late initcalls
        self._advance(self.hz)  # about a second of boot
        self.spawn("systemd", pid=1)
        self.spawn("kthreadd", pid=2)
        self.kmemleak_thread = self.spawn("kmemleak", pid=38)
        self.kmemleak.kmemleak_late_init()
        self._advance(self.hz // 2)
        self.shell_task = self.spawn("bash", pid=1024)
        self.current = self.shell_task
        self.printk("Run /sbin/init as init process")

    def _parse_mem(self, value: str) -> int:
        default = (512 << 20) if self.arch.word_size == 4 else (1 << 30)
        if not value:
            return default
        units = {"K": 10, "M": 20, "G": 30}
        try:
            if value[-1].upper() in units:
                size = int(value[:-1]) << units[value[-1].upper()]
            else:
                size = int(value)
        except ValueError:
            raise KmemsimValueError(f"mem= takes a size like 512M, got {value!r}") from None
        if size < (128 << 20):
            raise KmemsimValueError("mem= must be at least 128M")
        return size

    def _link_cache_struct(self, cache: KmemCache, holder: int | None) -> None:
        """Allocate the ``struct kmem_cache`` and link it on ``slab_caches``."""
        ws = self.arch.word_size
        ptr = self.slab.slab_alloc(self._kmem_cache_cache, self._kmem_cache_cache.object_size,
                                   zero=True)
        cache.pointer = ptr
        for slab in cache.slabs.values():
            self.page_allocator.mark_slab(slab.pfn, slab.order, ptr)
        self.memory.write_word(ptr + 3 * ws, cache.size | (cache.object_size << 32)
                               if ws == 8 else cache.size)
        list_add_tail(self, ptr + KMEM_CACHE_LIST_WORD * ws, self._slab_caches_head)
        if holder is not None:
            self.store(holder, ptr)

    # ---------------------------------------------------------------- statics
    def define_static(self, name: str, size: int, section: str = "bss", align: int = 0) -> int:
        """Reserve a kernel static variable in ``.data`` or ``.bss``; return its address.

        Kernel statics are roots: ``.data`` and ``.bss`` are gray kmemleak objects.

        >>> from kmemsim import Kernel
        >>> k = Kernel()
        >>> hex(k.define_static("my_list", 16)) == hex(k.statics["my_list"])
        True
        """
        _check_name("name", name)
        if name in self.statics:
            raise KmemsimValueError(f"static {name!r} is already defined")
        check_int("size", size, minimum=1)
        check_int("align", align, minimum=0)
        if align & (align - 1):
            raise KmemsimValueError(f"align must be a power of two, got {align}")
        if section not in ("data", "bss"):
            raise KmemsimValueError("section must be 'data' or 'bss'")
        ws = self.arch.word_size
        align = max(align, ws)
        start = self._data_start if section == "data" else self._bss_start
        addr = (self._data_next[section] + align - 1) & ~(align - 1)
        if addr + size > start + KERNEL_SECTION_SIZE:
            raise KmemsimValueError(f"kernel .{section} is full ({KERNEL_SECTION_SIZE} bytes)")
        self._data_next[section] = addr + size
        self.statics[name] = addr
        return addr

    @property
    def kernel_data_start(self) -> int:
        """``_sdata``: the start of the kernel's ``.data`` (``.bss`` follows)."""
        return self._data_start

    @property
    def kernel_data_end(self) -> int:
        """``__bss_stop``: the end of the kernel's ``.bss``."""
        return self._bss_start + KERNEL_SECTION_SIZE

    # ------------------------------------------------------------ time & log
    @property
    def jiffies(self) -> int:
        """The tick counter (``jiffies_64``: it never wraps here; records print it masked)."""
        return self._now

    @property
    def uptime(self) -> float:
        """Seconds since boot."""
        return (self._now - self.INITIAL_JIFFIES) / self.hz

    def _advance(self, ticks: int) -> None:
        self._now += ticks

    def sleep(self, seconds: float) -> None:
        """Let *seconds* of simulated time pass; the scan thread scans on its schedule.

        >>> from kmemsim import Kernel
        >>> k = Kernel()
        >>> k.sleep(61); k.kmemleak.scans_done
        1
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise KmemsimTypeError("seconds must be a number")
        if seconds < 0 or seconds != seconds or seconds == float("inf"):
            raise KmemsimValueError(f"seconds must be finite and non-negative, got {seconds}")
        target = self._now + round(seconds * self.hz)
        self._run_kthreads(target)  # issue 7: kernel threads wake in time order with the scans
        self._run_scan_thread(target)
        self._now = target

    def _run_scan_thread(self, until: int) -> None:
        kl = self.kmemleak
        while kl.scan_thread_running and kl.next_scan_jiffies is not None \
                and kl.next_scan_jiffies <= until:
            self._now = max(self._now, kl.next_scan_jiffies)
            with self.task_context(self.kmemleak_thread):
                kl.scan()
            kl.thread_scanned(self._now)

    def printk(self, line: str) -> None:
        """Append *line* to the kernel log at the current time."""
        if not isinstance(line, str):
            raise KmemsimTypeError(f"line must be a str, not {type(line).__name__}")
        self._log.append((self._now, line))

    def dmesg(self, clear: bool = False) -> str:
        """The kernel log with ``[seconds.micros]`` stamps (``dmesg``; ``-c`` clears it)."""
        out = []
        for when, line in self._log:
            ticks = when - self.INITIAL_JIFFIES
            usecs = ticks * 1_000_000 // self.hz
            out.append(f"[{usecs // 1_000_000:5d}.{usecs % 1_000_000:06d}] {line}\n")
        if clear:
            self._log.clear()
        return "".join(out)

    def warn(self, line: str) -> None:
        """A kernel warning line (``pr_warn``/``WARN``)."""
        self.printk(line)

    def warn_alloc(self, what: str, order: int) -> None:
        self.printk(f"{self.current.comm}: page allocation failure: order:{order}, "
                    f"mode:0xcc0(GFP_KERNEL), nodemask=(null) [{what}]")

    def oops_lines(self, lines: list[str]) -> None:
        """Print an oops report, line by line."""
        if isinstance(lines, str) or not isinstance(lines, list):
            raise KmemsimTypeError(f"lines must be a list of str, not {type(lines).__name__}")
        for line in lines:
            self.printk(line)

    def _record_fault(self, exc: PageFault) -> None:
        self.oops_lines(exc.lines)
        self.printk(f"CPU: 0 UID: 0 PID: {self.current.pid} Comm: {self.current.comm} "
                    "Not tainted 6.16.0-kmemsim #1")

    def rng_word(self) -> int:
        """A seeded random word (``get_random_long``)."""
        return self.rng.getrandbits(8 * self.arch.word_size)

    # --------------------------------------------------------- tasks & stacks
    def spawn(self, comm: str, pid: int | None = None) -> Task:
        """Create a task with a ``THREAD_SIZE`` stack from the page allocator."""
        _check_name("comm", comm)
        if pid is not None:
            check_int("pid", pid, minimum=0)
        a = self.arch
        order = get_order(a.thread_size)
        # THREADINFO_GFP has __GFP_ZERO: a new stack holds no stale words.
        pfn = self.page_allocator.alloc(order, zero=True)
        if not pfn:
            raise KmemsimValueError("out of memory for a task stack")
        stack = self.page_allocator.pfn_to_virt(pfn)
        if pid is None:
            pid = self._next_pid
            self._next_pid += 1
        task = Task(pid, comm[:15], stack, a.thread_size,
                    stack + a.thread_size - PT_REGS_WORDS * a.word_size, pfn)
        self.tasks.append(task)
        return task

    def exit_task(self, task: Task) -> None:
        """The task exits: its stack is freed (bytes stay) and no longer scanned."""
        self._check_task(task)
        if not task.alive or task not in self.tasks:
            raise KmemsimValueError(f"{task!r} is not a live task")
        task.alive = False
        self.tasks.remove(task)
        self.page_allocator.free(task.stack_pfn, get_order(task.stack_size))
        if self.current is task:
            self.current = self.shell_task

    @contextmanager
    def task_context(self, task: Task) -> Iterator[Task]:
        """Run the body as *task* (``current``)."""
        self._check_task(task)
        prev = self.current
        self.current = task
        try:
            yield task
        finally:
            self.current = prev

    @contextmanager
    def irq_context(self, kind: str = "hardirq") -> Iterator[None]:
        """Run the body in interrupt context: allocations record pid 0 and *kind*."""
        if kind not in ("hardirq", "softirq"):
            raise KmemsimValueError("kind must be 'hardirq' or 'softirq'")
        prev, self._irq = self._irq, kind
        try:
            yield
        finally:
            self._irq = prev

    @contextmanager
    def stack_frame(self, nwords: int, task: Task | None = None) -> Iterator[StackFrame]:
        """Push a frame of *nwords* locals on the current task's stack; pop it after.

        The frame's bytes are not cleared when it is pushed (they may hold
        what an earlier frame left) nor when it returns (they become stale).

        >>> from kmemsim import Kernel
        >>> k = Kernel(); p = k.kmalloc(64)
        >>> with k.stack_frame(2) as f:
        ...     k.store(f.slot(0), p)
        >>> k.memory.read_word(f.slot(0)) == p    # the stale word stays behind
        True
        """
        check_int("nwords", nwords, minimum=0)
        if task is not None:
            self._check_task(task)
        task = task or self.current
        ws = self.arch.word_size
        need = (nwords + 1) * ws
        if task.sp - need < task.stack:
            lines = [f"BUG: stack guard page was hit at {task.stack - 1:#x} "
                     f"(stack is {task.stack:#x}..{task.stack + task.stack_size:#x})",
                     "kernel stack overflow (double-fault): 0000 [#1] PREEMPT SMP"]
            self.oops_lines(lines)
            raise KernelOops(lines)
        old_sp = task.sp
        task.sp -= ws
        caller = self._python_trace()
        self.memory.write_word(task.sp, caller[0] if caller else 0)
        task.sp -= nwords * ws
        frame = StackFrame(task, task.sp, nwords, ws)
        task.frames.append(frame)
        try:
            yield frame
        finally:
            task.frames.pop()
            task.sp = old_sp
            self.truth.on_frame_return(frame.base, frame.base + nwords * ws)

    def _check_task(self, task: object) -> None:
        if not isinstance(task, Task):
            raise KmemsimTypeError(f"task must be a Task (from Kernel.spawn), not "
                                   f"{type(task).__name__}")

    # ---------------------------------------------------------------- traces
    @contextmanager
    def kernel_frames(self, *names: str) -> Iterator[None]:
        """Kernel functions (innermost first) that the next backtraces pass through."""
        addrs = [self.symbols.return_address(n) for n in reversed(names)]
        self._kernel_frames.extend(addrs)
        try:
            yield
        finally:
            del self._kernel_frames[len(self._kernel_frames) - len(addrs):]

    def _python_trace(self) -> list[int]:
        out: list[int] = []
        if not self._code_symbols:
            return out
        frame = sys._getframe(1)
        while frame is not None:
            sym = self._code_symbols.get(frame.f_code)
            if sym is not None:
                out.append(return_address_in(sym, frame.f_lineno))
            frame = frame.f_back  # type: ignore[assignment]
        return out

    def save_stack_trace(self) -> tuple[int, ...]:
        """The current backtrace: kernel frames, module code, then the task's context."""
        trace = list(reversed(self._kernel_frames))
        trace += self._python_trace()
        trace += self.current.context
        t = tuple(trace[:MAX_TRACE])
        return self._stack_depot.setdefault(t, t)

    def symbolize(self, addr: int) -> str:
        """``%pS`` of *addr*: ``name+0xoff/0xlen [module]``, or ``0x<addr>`` when unknown."""
        check_int("addr", addr, minimum=0)
        for lm in self.modules.values():
            sym = lm.layout.lookup(addr)
            if sym is not None:
                return f"{sym.name}+0x{addr - sym.addr:x}/0x{sym.size:x} [{lm.name}]"
        return self.symbols.symbolize(addr)

    def addr2line(self, addr: int | str) -> SourceLocation | None:
        """Map a module text address (``0xffffffffc01d2036`` or ``func+0x36``) to a source line.

        Works after the module is unloaded too, like ``addr2line -e module.ko``.
        """
        if isinstance(addr, str):
            text = addr.strip()
            if "+" in text:
                name, _, off = text.partition("+")
                try:
                    offset = int(off.split("/")[0], 16)
                except ValueError:
                    raise KmemsimValueError(f"cannot parse address {text!r}") from None
                for layout in reversed(self.module_layouts):
                    for sym in layout.symbols:
                        if sym.name == name:
                            return addr2line([layout], sym.addr + offset)
                return None
            try:
                addr = int(text, 16)
            except ValueError:
                raise KmemsimValueError(f"cannot parse address {text!r}") from None
        check_int("addr", addr, minimum=0)
        return addr2line(self.module_layouts, addr)

    def hash_pointer(self, addr: int) -> int:
        """``%p``: a keyed 32-bit hash of the pointer, fixed per boot (per seed)."""
        check_int("addr", addr, minimum=0)
        addr &= self.arch.word_mask
        digest = hashlib.blake2b(addr.to_bytes(8, "little"), key=self._hash_key,
                                 digest_size=4).digest()
        return int.from_bytes(digest, "little")

    def dump_stack(self) -> list[str]:
        """What ``dump_stack()`` prints in the current context."""
        t = self.current
        lines = [f"CPU: 0 UID: 0 PID: {t.pid} Comm: {t.comm} Not tainted 6.16.0-kmemsim #1",
                 "Hardware name: kmemsim simulated machine", "Call Trace:", " <TASK>",
                 f" {self.symbols.symbolize(self.symbols.return_address('dump_stack_lvl'))}",
                 f" {self.symbols.symbolize(self.symbols.return_address('kmemleak_warn'))}"]
        lines += [f" {self.symbolize(a)}" for a in self.save_stack_trace()]
        lines.append(" </TASK>")
        return lines

    # ------------------------------------------------- services for kmemleak
    def current_task(self) -> tuple[int, str]:
        if self._irq is not None:
            return 0, self._irq
        return self.current.pid, self.current.comm

    def possible_cpus(self) -> range:
        return range(self.ncpus)

    def per_cpu_offset(self, cpu: int) -> int:
        """``per_cpu_offset(cpu)``: the distance from a per-CPU cookie to *cpu*'s copy."""
        check_int("cpu", cpu, minimum=0, maximum=self.ncpus - 1)
        return self.percpu.per_cpu_offset(cpu)

    def percpu_static_sections(self) -> list[tuple[int, int]]:
        return self.percpu.static_sections()

    def struct_page_ranges(self) -> list[tuple[int, int]]:
        return self.page_allocator.in_use_ranges()

    def task_stacks(self) -> list[tuple[int, int]]:
        return [(t.stack, t.stack + t.stack_size) for t in self.tasks if t.alive]

    def phys_to_virt(self, phys: int) -> int:
        """``__va``."""
        check_int("phys", phys, minimum=0)
        return self.arch.page_offset + phys

    def virt_to_phys(self, virt: int) -> int:
        """``__pa`` (``virt_to_phys``) of a direct-map address."""
        check_int("virt", virt, minimum=self.arch.page_offset)
        return virt - self.arch.page_offset

    def lowmem_pfn_range(self) -> tuple[int, int]:
        return 0, min(self.ram_bytes, self.arch.lowmem_limit) >> PAGE_SHIFT

    def metadata_alloc(self, nbytes: int) -> bool:
        per_page = PAGE_SIZE // nbytes
        if self._meta_objects % per_page == 0 and not self.page_allocator.charge(1):
            return False
        self._meta_objects += 1
        return True

    def metadata_alloc_many(self, nbytes: int, count: int) -> bool:
        """:meth:`metadata_alloc` *count* times, all or nothing: the pages the calls
        would charge, charged at once.  ``O(1)``.

        >>> from kmemsim import Kernel
        >>> k, twin = Kernel(), Kernel()
        >>> k.metadata_alloc_many(256, 40), all(twin.metadata_alloc(256) for _ in range(40))
        (True, True)
        >>> k.page_allocator.charged_pages == twin.page_allocator.charged_pages
        True
        """
        per_page = PAGE_SIZE // nbytes
        m = self._meta_objects
        # the calls whose object count is a multiple of per_page each charge a page
        pages = (m + count - 1) // per_page - (m - 1) // per_page if count > 0 else 0
        if pages and not self.page_allocator.charge(pages):
            return False
        self._meta_objects += count
        return True

    def metadata_fits(self, nbytes: int, count: int) -> bool:
        per_page = PAGE_SIZE // nbytes
        return self.page_allocator.free_pages > count // per_page + 2

    def metadata_free(self, nbytes: int) -> None:
        per_page = PAGE_SIZE // nbytes
        self._meta_objects -= 1
        if self._meta_objects % per_page == 0:
            self.page_allocator.uncharge(1)

    # ------------------------------------------------------------ allocation
    def kmalloc(self, size: int) -> int:
        """``kmalloc(size, GFP_KERNEL)``: a slab object of the size class (0 on failure).

        kmemleak registers the cache's object size: ``kmalloc(129)`` shows ``size 192``.
        """
        return self.slab.kmalloc(check_int("size", size, minimum=0))

    def kzalloc(self, size: int) -> int:
        """``kzalloc``: ``kmalloc`` and zero the whole object."""
        return self.slab.kmalloc(check_int("size", size, minimum=0), zero=True)

    def kmalloc_bulk(self, sizes: Sequence[int], *, zero: bool = False) -> list[int]:
        """``kmalloc(size)`` (or ``kzalloc`` with *zero*) for each of *sizes*, in one call.

        The result is exactly that of the calls one by one, in order: the same
        addresses, bytes, kmemleak records (serials, traces, ``comm``) and truth;
        only the bookkeeping is batched, so building a large heap is fast.
        Sizes above the largest kmalloc cache are allocated one by one.

        >>> from kmemsim import Kernel
        >>> k = Kernel(seed=1)
        >>> a = k.kmalloc_bulk([32, 100, 32])
        >>> [k.kmemleak.find(p).size for p in a]
        [32, 128, 32]
        """
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
            raise KmemsimTypeError(f"sizes must be a sequence of ints, not {type(sizes).__name__}")
        check_ints("sizes", sizes, minimum=0)
        if any(not 0 < n <= KMALLOC_MAX_CACHE_SIZE for n in sizes):
            alloc = self.kzalloc if zero else self.kmalloc
            return [alloc(n) for n in sizes]
        # one request per distinct size: the cache and the init size depend on the size only
        by_size = {n: self.slab.kmalloc_request(n) for n in set(sizes)}
        requests = list(map(by_size.__getitem__, sizes))
        with self.kernel_frames("__kmalloc_cache_noprof"):
            return slab_alloc_bulk(self.slab, requests, zero=zero)

    def kmem_cache_alloc_bulk(self, cache: KmemCache, n: int, *, zero: bool = False
                              ) -> list[int]:
        """*n* objects from *cache*: ``kmem_cache_alloc`` (``kmem_cache_zalloc`` with *zero*)
        called *n* times, in one call (see :meth:`kmalloc_bulk`).

        >>> from kmemsim import Kernel
        >>> k = Kernel(seed=1)
        >>> c = k.kmem_cache_create("node", 48)
        >>> len(k.kmem_cache_alloc_bulk(c, 3))
        3
        """
        c = self._cache(cache)
        check_int("n", n, minimum=0)
        with self.kernel_frames("kmem_cache_alloc_noprof"):
            return slab_alloc_bulk(self.slab, [(c, c.object_size)] * n, zero=zero)

    def kfree(self, ptr: int) -> None:
        """``kfree``: kmemleak forgets the object, SLUB puts it on the freelist."""
        self.slab.kfree(check_int("ptr", ptr, minimum=0))

    def kmem_cache_create(self, name: str, size: int, align: int = 0, flags: int = 0
                          ) -> KmemCache:
        """``kmem_cache_create``: a named cache of *size*-byte objects."""
        _check_name("name", name)
        check_int("size", size, minimum=1)
        if size > 8 << 20:
            raise KmemsimValueError(f"object size {size} is too large for a slab cache")
        check_int("align", align, minimum=0)
        if align & (align - 1):
            raise KmemsimValueError(f"align must be a power of two, got {align}")
        check_int("flags", flags, minimum=0)
        if name in self.slab.caches:
            raise KmemsimValueError(f"kmem_cache {name!r} already exists")
        with self.kernel_frames("kmem_cache_create_usercopy"):
            cache = self.slab.create(name, size, align, flags)
            # No static holds a user cache: the slab_caches list is its only anchor.
            self._link_cache_struct(cache, None)
        return cache

    def _cache(self, cache: object) -> KmemCache:
        if not isinstance(cache, KmemCache) or self.slab.caches.get(cache.name) is not cache:
            raise KmemsimTypeError("expected a live cache returned by kmem_cache_create")
        return cache

    def kmem_cache_alloc(self, cache: KmemCache) -> int:
        """``kmem_cache_alloc``: one object from *cache* (not zeroed)."""
        c = self._cache(cache)
        with self.kernel_frames("kmem_cache_alloc_noprof"):
            return self.slab.slab_alloc(c, c.object_size, zero=False)

    def kmem_cache_zalloc(self, cache: KmemCache) -> int:
        """``kmem_cache_zalloc``: one zeroed object from *cache*."""
        c = self._cache(cache)
        with self.kernel_frames("kmem_cache_alloc_noprof"):
            return self.slab.slab_alloc(c, c.object_size, zero=True)

    def kmem_cache_free(self, cache: KmemCache, ptr: int) -> None:
        """``kmem_cache_free``."""
        c = self._cache(cache)
        check_int("ptr", ptr, minimum=0)
        if ptr == 0:
            return
        if self.slab.cache_of(ptr) is not c:
            lines = [f"kmem_cache_free: Wrong slab cache. {c.name} but object is from "
                     f"{getattr(self.slab.cache_of(ptr), 'name', 'no slab')}"]
            self.warn(lines[0])
            return
        self.slab.slab_free(c, ptr, "kmem_cache_free")

    def kmem_cache_destroy(self, cache: KmemCache) -> None:
        """``kmem_cache_destroy``: refused (with the kernel's error) while objects remain."""
        c = self._cache(cache)
        if c.active_objects:
            self.printk(f"kmem_cache_destroy {c.name}: Slab cache still has objects "
                        "when called from kmem_cache_destroy+0x1c/0x40")
            return
        for slab in list(c.slabs.values()):
            self.slab.by_slab_pfn.pop(slab.pfn, None)
            self.page_allocator.free(slab.pfn, slab.order)
        c.slabs.clear()
        c.partial.clear()
        c.cpu_slab = None
        del self.slab.caches[c.name]
        ws = self.arch.word_size
        list_del_entry(self, c.pointer + KMEM_CACHE_LIST_WORD * ws)
        self.slab.slab_free(self._kmem_cache_cache, c.pointer, "kmem_cache_destroy")

    def vmalloc(self, size: int) -> int:
        """``vmalloc``: page-aligned, guard page after, ``min_count`` 2 (0 on failure)."""
        return self.vmalloc_allocator.vmalloc(check_int("size", size, minimum=0), zero=False)

    def vzalloc(self, size: int) -> int:
        """``vzalloc``: zeroed ``vmalloc``."""
        return self.vmalloc_allocator.vmalloc(check_int("size", size, minimum=0), zero=True,
                                              entry=("vzalloc_noprof",))

    def vfree(self, ptr: int) -> None:
        """``vfree``: unknown areas get the kernel's "nonexistent vm area" warning."""
        self.vmalloc_allocator.vfree(check_int("ptr", ptr, minimum=0))

    def alloc_pages(self, order: int = 0) -> int:
        """``__get_free_pages``: 2**order pages, untracked by kmemleak; 0 on failure."""
        check_int("order", order, minimum=0)
        pfn = self.page_allocator.alloc(order)
        if not pfn:
            self.warn_alloc("alloc_pages", order)
            return 0
        addr = self.page_allocator.pfn_to_virt(pfn)
        self.truth.on_alloc(addr, PAGE_SIZE << order, "pages")
        return addr

    def free_pages(self, addr: int, order: int = 0) -> None:
        """``free_pages``: the bytes stay in the freed pages."""
        check_int("addr", addr, minimum=0)
        check_int("order", order, minimum=0)
        pa = self.page_allocator
        if addr < self.arch.page_offset or pa.allocated.get(pa.virt_to_pfn(addr)) != order \
                or addr % PAGE_SIZE or self.slab.cache_of(addr) is not None:
            raise KmemsimValueError(f"{addr:#x} is not a block of order {order} from alloc_pages")
        self.truth.on_free(addr)
        pa.free(pa.virt_to_pfn(addr), order)

    def alloc_percpu(self, size: int, align: int | None = None) -> int:
        """``__alloc_percpu``: returns a per-CPU cookie; every CPU's copy is zeroed."""
        check_int("size", size, minimum=1)
        ws = self.arch.word_size
        align = ws if align is None else check_int("align", align, minimum=1)
        if align & (align - 1) or size > PERCPU_UNIT_SIZE // 2:
            self.warn(f"illegal size ({size}) or align ({align}) for percpu allocation")
            return 0
        with self.kernel_frames("pcpu_alloc_noprof"):
            cookie = self.percpu.alloc(size, align)
            if not cookie:
                self.warn(f"percpu: allocation failed, size={size} align={align} atomic=0, "
                          "alloc from reserved chunk failed")
                return 0
            self.kmemleak.kmemleak_alloc_percpu(cookie, size)
        self.truth.on_alloc_percpu(cookie, size)
        return cookie

    def free_percpu(self, cookie: int) -> None:
        """``free_percpu``."""
        check_int("cookie", cookie, minimum=0)
        if cookie == 0:
            return
        self.kmemleak.kmemleak_free_percpu(cookie)
        self.truth.on_free(cookie)
        if not self.percpu.free(cookie):
            self.warn(f"WARNING: free_percpu of unknown pointer {cookie:#x}")

    def per_cpu_ptr(self, cookie: int, cpu: int) -> int:
        """``per_cpu_ptr(cookie, cpu)``."""
        return self.percpu.per_cpu_ptr(check_int("cookie", cookie, minimum=0), cpu)

    def memblock_alloc(self, size: int, align: int | None = None, *,
                       leaktrace: bool = True) -> int:
        """``memblock_alloc``: a zeroed boot block; kmemleak tracks its physical address.

        ``leaktrace=False`` models ``MEMBLOCK_ALLOC_NOLEAKTRACE``.
        """
        ptr = self.memblock_arena.alloc(size, align or self.arch.word_size, leaktrace=leaktrace)
        self.truth.on_alloc(ptr, size, "memblock")
        return ptr

    def memblock_free(self, ptr: int, size: int) -> None:
        """``memblock_free``: ``kmemleak_free_part_phys`` of the range."""
        check_int("ptr", ptr, minimum=0)
        check_int("size", size, minimum=1)
        self.memblock_arena.free(ptr, size)
        self.truth.on_free_part(ptr, size)

    # -------------------------------------------------------------- pointers
    def store(self, slot: int, target: int, encoding: Encoding | None = None) -> None:
        """Store a reference the program means: ``*slot = target``, written with *encoding*.

        The encoded bytes go to memory (that is all kmemleak sees) and the
        logical edge ``slot -> target`` goes to :attr:`truth`.  A NULL target
        writes zeros and records no edge.  ``write_word`` is plain data: it
        records no edge (and ends any edge whose slot it overwrites).

        >>> from kmemsim import Kernel
        >>> from kmemsim.truth import Xor
        >>> k = Kernel(); a = k.kmalloc(64); b = k.kmalloc(64)
        >>> k.store(a, b); k.memory.read_word(a) == b
        True
        >>> k.store(a, b, encoding=Xor(key=0xff)); k.memory.read_word(a) == b ^ 0xff
        True
        >>> k.truth.edges[a].encoding.label
        'XOR'
        """
        check_int("slot", slot, minimum=0, maximum=self.arch.word_mask)
        check_int("target", target, minimum=0, maximum=self.arch.word_mask)
        if encoding is None:
            encoding = Plain()
        elif not isinstance(encoding, Encoding):
            raise KmemsimTypeError(f"encoding must be a kmemsim.truth.Encoding, not "
                                   f"{type(encoding).__name__}")
        block = self.truth.block_at(target) if target else None
        size = block.size if block is not None else 0
        if type(encoding) is Plain and encoding.arch is None:
            enc = self._bound_plain(size)
        else:
            enc = encoding.bind(self.arch, size)
        if target:
            pieces = enc.writes(target, slot)
        else:
            # NULL: zeros where the encoding keeps its bytes, and no reference any more
            self.truth.end_edge(slot)
            pieces = [(a, bytes(len(d))) for a, d in enc.writes(0, slot)]
        for addr, data in pieces:
            self.memory.write(addr, data)
        if target:
            self.truth.add_edge(slot, target, enc, pieces, block)

    def store_many(self, slots: Sequence[int], targets: Sequence[int]) -> None:
        """``store(slots[i], targets[i])`` with plain pointers for each *i*, in order, in one call.

        The bytes, the edges and their histories are those of the calls one by
        one; when the slots are distinct aligned mapped words and no target is
        NULL, the words are written with one numpy store per region.  Anything
        else (a NULL, an unaligned or repeated slot, an unmapped one, which
        faults as ``store`` does) is stored one by one.

        >>> from kmemsim import Kernel
        >>> k = Kernel(); a, b, c = k.kmalloc_bulk([64, 64, 64])
        >>> k.store_many([a, b + 8], [b, c])
        >>> k.memory.read_word(b + 8) == c, a in k.truth.edges, b + 8 in k.truth.edges
        (True, True, True)
        """
        for what, seq in (("slots", slots), ("targets", targets)):
            if isinstance(seq, (str, bytes)) or not isinstance(seq, Sequence):
                raise KmemsimTypeError(f"{what} must be a sequence of ints, not "
                                       f"{type(seq).__name__}")
        if len(slots) != len(targets):
            raise KmemsimValueError(f"slots and targets differ in length ({len(slots)} and "
                                    f"{len(targets)})")
        mask = self.arch.word_mask
        check_ints("slots", slots, minimum=0, maximum=mask)
        check_ints("targets", targets, minimum=0, maximum=mask)
        if not (all(targets) and self._plain_words(slots)):
            for slot, target in zip(slots, targets, strict=True):
                self.store(slot, target)
            return
        self.memory.write_words(slots, targets)
        self.truth.add_plain_edges(slots, targets, self._bound_plain)

    def _plain_words(self, slots: Sequence[int]) -> bool:
        """Whether *slots* are distinct, aligned, untagged words wholly inside mapped regions.

        Runtime complexity: ``O(m log(m))`` for *m* slots (numpy).
        """
        ws = self.arch.word_size
        addr = np.array(slots, dtype=np.uint64)
        if self.arch.top_byte_tags:
            untagged = addr | np.uint64(0xFF00_0000_0000_0000)
            if not bool((untagged == addr).all()):
                return False
        regions = list(self.memory.regions())
        # (a sort, not np.unique: np.unique imports numpy.ma, ~8 ms in a fresh process)
        s = np.sort(addr)
        if not regions or bool((s[1:] == s[:-1]).any()) or bool((addr % ws).any()):
            return False
        starts = np.array([r.start for r in regions], dtype=np.uint64)
        # A region ending at the very top of the address space ends at 2**64, which a
        # uint64 holds as 0: keep end - 1, and compare without computing addr + ws.
        last = np.array([r.end - 1 for r in regions], dtype=np.uint64)
        i = np.searchsorted(starts, addr, side="right").astype(np.int64) - 1
        if not bool((i >= 0).all()):
            return False
        last = last[i]
        return bool(((addr <= last) & (last - addr >= np.uint64(ws - 1))).all())

    def _bound_plain(self, size: int) -> Encoding:
        """``Plain().bind(arch, size)``: all alike per size, so each size is bound once."""
        enc = self._plain_bound.get(size)
        if enc is None:
            enc = self._plain_bound[size] = Plain().bind(self.arch, size)
        return enc

    # ----------------------------------------------------------------- files
    def read(self, path: str) -> str:
        """Read a simulated file (``cat``)."""
        if not isinstance(path, str):
            raise KmemsimTypeError(f"path must be a str, not {type(path).__name__}")
        # /proc files of the teaching shell (issue 7): see _read_proc at the end of the class.
        if path.startswith("/proc/") and path != "/proc/cmdline":
            return self._read_proc(path)
        if path == KMEMLEAK_PATH and self._kmemleak_file():
            return kmemleak_read(self.kmemleak)
        if path == "/sys/module/kmemleak/parameters/verbose" and self.config.DEBUG_KMEMLEAK:
            return "Y\n" if self.kmemleak.kmemleak_verbose else "N\n"  # a bool parameter
        if path == "/proc/cmdline":
            return self.cmdline + "\n"
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)

    def write(self, path: str, text: str) -> None:
        """Write to a simulated file (``echo text > path``); errors are ``OSError``."""
        if not isinstance(path, str):
            raise KmemsimTypeError(f"path must be a str, not {type(path).__name__}")
        if not isinstance(text, str):
            raise KmemsimTypeError("text must be a str")
        if path == KMEMLEAK_PATH and self._kmemleak_file():
            kmemleak_write(self.kmemleak, text)
            self._run_scan_thread(self._now)
            return
        if path == "/sys/module/kmemleak/parameters/verbose" and self.config.DEBUG_KMEMLEAK:
            value = kstrtobool(text)
            if value is None:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
            self.kmemleak.kmemleak_verbose = value
            return
        if path == "/proc/cmdline":
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)

    def _kmemleak_file(self) -> bool:
        return self.config.DEBUG_KMEMLEAK and self.kmemleak.kmemleak_late_initialized

    # --------------------------------------------------------------- modules
    def _resolve_module(self, module: type[Module] | Module | str | os.PathLike[str]
                        ) -> type[Module]:
        if isinstance(module, Module):
            return type(module)
        if isinstance(module, type) and issubclass(module, Module):
            return module
        if isinstance(module, (str, os.PathLike)):
            from .workloads import load_module_file

            return load_module_file(Path(module))
        raise KmemsimTypeError("module must be a Module subclass, an instance, or a .py path")

    def modprobe(self, name: str) -> None:
        """Load a bundled module by name (``modprobe NAME``), as task ``modprobe``."""
        from .workloads import bundled_module

        self.insmod(bundled_module(name), comm="modprobe")

    def insmod(self, module: type[Module] | Module | str | os.PathLike[str],
               comm: str = "insmod") -> None:
        """Load a module: allocate its memory, link it, run ``init`` in a new task.

        Raises ``FileExistsError`` if a module of that name is loaded and
        ``OSError`` with the init function's errno if it fails.
        """
        cls = self._resolve_module(module)
        name = cls.module_name()
        _check_name(f"{cls.__name__}.name", name)
        if name in self.modules:
            raise FileExistsError(errno.EEXIST, f"could not insert module {name}: "
                                                "File exists")
        a = self.arch
        ws = a.word_size
        task = self.spawn(comm)
        loader = ("load_module", "init_module_from_file", "idempotent_init_module",
                  *a.syscall_frames)
        task.context = tuple(self.symbols.return_address(n) for n in loader)
        layout = layout_module(name, cls, 0)
        statics = dict(cls.statics)
        data_size = STRUCT_MODULE_SIZE + sum((s + ws - 1) & ~(ws - 1) for s in statics.values())
        with self.task_context(task), self.kernel_frames("module_memory_alloc", "execmem_alloc"):
            text = self.vmalloc_allocator.vmalloc(max(layout.text_size, 1), zero=True,
                                                  space="module", entry=())
            data = self.vmalloc_allocator.vmalloc(data_size, zero=True, space="module", entry=())
        if not text or not data:
            raise OSError(errno.ENOMEM, f"could not insert module {name}: Cannot allocate memory")
        for region in (text, data):
            self.kmemleak.kmemleak_not_leak(region)
        self.kmemleak.kmemleak_no_scan(text)  # kmemleak_load_module: only data is scanned
        layout = layout_module(name, cls, text)
        inst = cls(self) if not isinstance(module, Module) else module
        inst.k = self
        off = data + STRUCT_MODULE_SIZE
        for var, size in statics.items():
            inst._static_addrs[var] = off
            off += (size + ws - 1) & ~(ws - 1)
        inst.core_layout_text, inst.core_layout_data = text, data
        struct_module = data
        lm = LoadedModule(name, inst, layout, text, data, struct_module,
                          self.vmalloc_allocator.areas[data].size)
        self.modules[name] = lm  # before its words are stored: they are module statics
        # mod->mem[MOD_TEXT].base: the module's text is reachable through struct module.
        self.truth.on_alloc(text, self.vmalloc_allocator.areas[text].size, "module_text")
        self.store(struct_module + STRUCT_MODULE_TEXT_BASE * ws, text)
        list_add_tail(self, struct_module + ws, self._modules_head)  # mod->list on `modules`
        self.module_layouts.append(layout)
        for sym in layout.symbols:
            self._code_symbols[sym.code] = sym
        task.context = tuple(self.symbols.return_address(n) for n in
                             ("do_one_initcall", "do_init_module", *loader))
        try:
            with self.task_context(task), self.stack_frame(4):
                ret = inst.init()
        except BaseException:
            self._unload(lm)
            self.exit_task(task)
            raise
        if ret:
            self._unload(lm)
            self.exit_task(task)
            code = -ret if isinstance(ret, int) and ret < 0 else errno.EINVAL
            raise OSError(code, f"could not insert module {name}: {os.strerror(code)}")
        self.exit_task(task)

    def rmmod(self, name: str) -> None:
        """Unload a module: run ``exit`` in task ``rmmod``, then free its memory.

        Its text addresses print as bare hex afterwards (``0xffffffffc01d2036``).
        """
        if not isinstance(name, str):
            raise KmemsimTypeError("name must be a str")
        lm = self.modules.get(name.replace("-", "_")) or self.modules.get(name)
        if lm is None:
            raise FileNotFoundError(errno.ENOENT, f"ERROR: Module {name} is not currently loaded")
        task = self.spawn("rmmod")
        calls = ("__do_sys_delete_module", self.arch.syscall_frames[0].replace(
            "finit_module", "delete_module"), *self.arch.syscall_frames[1:])
        task.context = tuple(self.symbols.return_address(n) for n in calls)
        try:
            with self.task_context(task), self.stack_frame(4):
                lm.instance.exit()
            with self.task_context(task):
                self._unload(lm)
        finally:
            self.exit_task(task)

    def _unload(self, lm: LoadedModule) -> None:
        list_del_entry(self, lm.struct_module + self.arch.word_size)
        self.vmalloc_allocator.vfree(lm.data)
        self.vmalloc_allocator.vfree(lm.text)
        for sym in lm.layout.symbols:
            self._code_symbols.pop(sym.code, None)
        lm.layout.loaded = False
        self.modules.pop(lm.name, None)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the whole simulated state to *path* (:func:`kmemsim.persist.save`).

        The file is versioned, checksummed and not a pickle (``docs/save-format.md``);
        :meth:`load` gives a kernel that continues exactly as this one would.

        >>> import os, tempfile
        >>> from kmemsim import Kernel
        >>> k = Kernel(seed=3); _ = k.kmalloc(64); k.sleep(6)
        >>> path = os.path.join(tempfile.mkdtemp(), "k.kmemsim")
        >>> k.save(path)
        >>> k2 = Kernel.load(path)
        >>> k.kmemleak.scan().new_leaks == k2.kmemleak.scan().new_leaks
        True
        """
        from .persist import save

        save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *,
             module_files: Iterable[str | os.PathLike[str]] = ()) -> Kernel:
        """A kernel restored from a save (:func:`kmemsim.persist.load`; never runs pickle)."""
        from .persist import load

        return load(path, module_files=module_files)

    def lsmod(self) -> list[tuple[str, int]]:
        """``(name, size)`` of the loaded modules, most recent first."""
        return [(n, self.vmalloc_allocator.areas[m.data].size
                 + self.vmalloc_allocator.areas[m.text].size)
                for n, m in reversed(self.modules.items())]

    def __repr__(self) -> str:
        return (f"<Kernel {self.arch.name} HZ={self.hz} cpus={self.ncpus} "
                f"uptime={self.uptime:.1f}s objects={len(self.kmemleak)}>")

    # ------------------------------------------------------------------ misc
    def _check(self) -> None:
        """Assert the invariants of the detector index, the page allocator and SLUB."""
        self.kmemleak._check()
        self.page_allocator._check()
        self.slab._check()

    # ======================================================================
    # Issue 7, the teaching shell's kernel side: /proc files, kernel threads
    # that sleep, and the state of user space (processes, page cache, the OOM
    # killer, in kmemsim/oom.py).  Everything of it is in this section; the
    # only hooks elsewhere are the /proc dispatch at the top of read() and one
    # call in sleep().
    # ======================================================================
    _kthreads: dict[int, tuple[int, int, Task, Iterator[float]]] | None = None
    """Sleeping kernel threads by pid: (wake-up jiffies, FIFO sequence, task, body)."""
    _kthread_seq: int = 0
    _userspace: object = None
    """A :class:`kmemsim.oom.UserSpace`, created on first use by ``kmemsim.oom.userspace``."""

    def _read_proc(self, path: str) -> str:
        from .procfs import proc_read

        return proc_read(self, path)

    def kthread_run(self, thread: Iterator[float], name: str) -> Task:
        """``kthread_run``: start a kernel thread whose body is the generator *thread*.

        Each ``yield seconds`` is an ``msleep``: the thread sleeps and runs on
        when that much simulated time has passed.  Time only passes in
        :meth:`sleep`, so the thread first runs one tick from now.  The
        thread runs as its own task (*name*, a kernel stack, and the frames
        ``kthread``/``ret_from_fork`` below its code in backtraces).

        >>> from kmemsim import Kernel
        >>> k = Kernel(); seen = []
        >>> def ticker():
        ...     while True:
        ...         seen.append(k.current.comm)
        ...         yield 1.0
        >>> t = k.kthread_run(ticker(), "ticker")
        >>> k.sleep(3); seen
        ['ticker', 'ticker', 'ticker']
        >>> k.kthread_stop(t); k.sleep(3); len(seen)
        3
        """
        if not isinstance(thread, Iterator):
            raise KmemsimTypeError("thread must be an iterator (a generator yielding seconds)")
        task = self.spawn(name)
        frames = ("kthread", "ret_from_fork") + (
            ("ret_from_fork_asm",) if self.arch.name in ("x86_64", "i386") else ())
        task.context = tuple(self.symbols.return_address(n) for n in frames)
        if self._kthreads is None:
            self._kthreads = {}
        self._kthread_seq += 1
        self._kthreads[task.pid] = (self._now + 1, self._kthread_seq, task, thread)
        return task

    def kthread_stop(self, task: Task) -> None:
        """``kthread_stop``: end the thread at its current ``msleep`` and free its stack."""
        self._check_task(task)
        entry = self._kthreads.pop(task.pid, None) if self._kthreads else None
        if entry is None:
            raise KmemsimValueError(f"{task!r} is not a running kernel thread")
        close = getattr(entry[3], "close", None)
        if close is not None:
            close()  # GeneratorExit at the yield: kthread_should_stop() became true
        self.exit_task(task)

    def _run_kthreads(self, until: int) -> None:
        """Wake the kernel threads due by *until* in time order, after the scans due first.

        Before each wake-up the allocator's view of memory pressure runs
        (reclaim, then the OOM killer: :func:`kmemsim.oom.before_kthread_runs`);
        after a panic the threads no longer run.
        """
        if not self._kthreads:
            return
        from .oom import before_kthread_runs

        while self._kthreads:
            wake, _, pid = min((w, s, p) for p, (w, s, _, _) in self._kthreads.items())
            if wake > until:
                return
            self._run_scan_thread(wake)
            self._now = max(self._now, wake)
            task, thread = self._kthreads[pid][2], self._kthreads[pid][3]
            if not before_kthread_runs(self, task):
                return
            try:
                with self.task_context(task):
                    delay = next(thread)
            except StopIteration:
                del self._kthreads[pid]
                self.exit_task(task)
                continue
            except Exception:
                del self._kthreads[pid]  # an oops in the thread ends it; the kernel goes on
                self.exit_task(task)
                raise
            self._kthread_seq += 1
            ticks = max(1, round(float(delay) * self.hz))
            self._kthreads[pid] = (self._now + ticks, self._kthread_seq, task, thread)
