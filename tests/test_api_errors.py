"""Every public call checks its arguments and fails with a documented error.

The documented errors (``kmemsim.errors``): :class:`KmemsimTypeError` for a
wrong type, :class:`KmemsimValueError` for a wrong value, ``OSError``
subclasses with the errno a real system call would set for files and module
loading, :class:`KernelOops` when the simulated kernel itself dies.  A
message names the argument at fault.  No call ever leaks a bare
``IndexError``, ``KeyError`` or ``AttributeError`` from the simulator's
insides, and after any of these errors the same kernel keeps working.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kmemsim import (
    Kernel,
    KernelOops,
    KmemsimError,
    KmemsimTypeError,
    KmemsimValueError,
    Module,
)

KMEMLEAK = "/sys/kernel/debug/kmemleak"
VERBOSE = "/sys/module/kmemleak/parameters/verbose"


def assert_kernel_works(k: Kernel) -> None:
    """The same kernel still allocates, scans and frees, and its invariants hold."""
    before = len(k.kmemleak)
    p = k.kmalloc(64)
    assert p
    assert k.kmemleak.find(p).pointer == p
    k.store(p, p)
    k.write(KMEMLEAK, "scan")
    assert k.kmemleak.kmemleak_enabled
    k.kfree(p)
    assert len(k.kmemleak) == before
    k._check()


def _enter(cm: Any) -> None:
    """Arguments of a context manager are checked when it is entered."""
    with cm:
        pass


def _percpu(k: Kernel) -> int:
    return k.alloc_percpu(8)


def _kmalloc64_cache(k: Kernel) -> Any:
    return k.slab.kmalloc_caches[64]


def _define_twice(k: Kernel) -> None:
    k.define_static("twice", 8)
    k.define_static("twice", 8)


def _dead_task(k: Kernel) -> None:
    t = k.spawn("shortlived")
    k.exit_task(t)
    k.exit_task(t)


def _slot_out_of_frame(k: Kernel) -> None:
    with k.stack_frame(2) as frame:
        frame.slot(2)


Call = Callable[[Kernel], object]
T, V = KmemsimTypeError, KmemsimValueError

#: (id, call, expected error, regex the message must match: it names the argument).
CASES: list[tuple[str, Call, type[BaseException], str]] = [
    # slab
    ("kmalloc-str", lambda k: k.kmalloc("8"), T, r"\bsize must be an int, not str"),
    ("kmalloc-bool", lambda k: k.kmalloc(True), T, r"\bsize must be an int, not bool"),
    ("kmalloc-float", lambda k: k.kmalloc(8.0), T, r"\bsize\b"),
    ("kmalloc-none", lambda k: k.kmalloc(None), T, r"\bsize\b"),
    ("kmalloc-negative", lambda k: k.kmalloc(-1), V, r"\bsize must be at least 0"),
    ("kzalloc-str", lambda k: k.kzalloc("8"), T, r"\bsize\b"),
    ("kzalloc-negative", lambda k: k.kzalloc(-8), V, r"\bsize\b"),
    ("kfree-none", lambda k: k.kfree(None), T, r"\bptr must be an int, not NoneType"),
    ("kfree-str", lambda k: k.kfree("0x10"), T, r"\bptr\b"),
    ("kfree-negative", lambda k: k.kfree(-1), V, r"\bptr\b"),
    ("kfree-wider-than-a-word", lambda k: k.kfree(1 << 64), V, r"\bptr must be at most"),
    ("kmem_cache_create-empty-name", lambda k: k.kmem_cache_create("", 8), V, r"name"),
    ("kmem_cache_create-size-0", lambda k: k.kmem_cache_create("c", 0), V, r"\bsize\b"),
    ("kmem_cache_create-size-str", lambda k: k.kmem_cache_create("c", "8"), T, r"\bsize\b"),
    ("kmem_cache_create-size-huge", lambda k: k.kmem_cache_create("c", (8 << 20) + 1), V,
     r"size"),
    ("kmem_cache_create-no-slab-order", lambda k: k.kmem_cache_create("c", 8 << 20), V,
     r"object size 8388608"),
    ("kmem_cache_create-align-3", lambda k: k.kmem_cache_create("c", 8, 3), V, r"\balign\b"),
    ("kmem_cache_create-align-str", lambda k: k.kmem_cache_create("c", 8, "8"), T,
     r"\balign\b"),
    ("kmem_cache_create-flags", lambda k: k.kmem_cache_create("c", 8, 0, -1), V, r"\bflags\b"),
    ("kmem_cache_create-duplicate", lambda k: k.kmem_cache_create("kmalloc-64", 8), V,
     r"'kmalloc-64' already exists"),
    ("kmem_cache_alloc-none", lambda k: k.kmem_cache_alloc(None), T, r"cache"),
    ("kmem_cache_zalloc-name", lambda k: k.kmem_cache_zalloc("kmalloc-64"), T, r"cache"),
    ("kmem_cache_free-none", lambda k: k.kmem_cache_free(None, 0), T, r"cache"),
    ("kmem_cache_free-ptr", lambda k: k.kmem_cache_free(_kmalloc64_cache(k), None), T,
     r"\bptr\b"),
    ("kmem_cache_destroy-object", lambda k: k.kmem_cache_destroy(object()), T, r"cache"),
    # vmalloc
    ("vmalloc-str", lambda k: k.vmalloc("1"), T, r"\bsize\b"),
    ("vmalloc-negative", lambda k: k.vmalloc(-1), V, r"\bsize\b"),
    ("vzalloc-none", lambda k: k.vzalloc(None), T, r"\bsize\b"),
    ("vfree-none", lambda k: k.vfree(None), T, r"\bptr\b"),
    ("vfree-negative", lambda k: k.vfree(-1), V, r"\bptr\b"),
    ("vfree-wider-than-a-word", lambda k: k.vfree(1 << 64), V, r"\bptr must be at most"),
    # pages
    ("alloc_pages-str", lambda k: k.alloc_pages("0"), T, r"\border\b"),
    ("alloc_pages-negative", lambda k: k.alloc_pages(-1), V, r"\border\b"),
    ("alloc_pages-too-large", lambda k: k.alloc_pages(11), V, r"\border must be 0\.\.10"),
    ("free_pages-none", lambda k: k.free_pages(None), T, r"\baddr\b"),
    ("free_pages-order-str", lambda k: k.free_pages(k.alloc_pages(0), "0"), T, r"\border\b"),
    ("free_pages-not-a-block", lambda k: k.free_pages(0x1234), V, r"0x1234 is not a block"),
    # per-CPU
    ("alloc_percpu-str", lambda k: k.alloc_percpu("8"), T, r"\bsize\b"),
    ("alloc_percpu-0", lambda k: k.alloc_percpu(0), V, r"\bsize\b"),
    ("alloc_percpu-align-0", lambda k: k.alloc_percpu(8, 0), V, r"\balign\b"),
    ("alloc_percpu-align-float", lambda k: k.alloc_percpu(8, 2.0), T, r"\balign\b"),
    ("free_percpu-none", lambda k: k.free_percpu(None), T, r"\bcookie\b"),
    ("free_percpu-negative", lambda k: k.free_percpu(-1), V, r"\bcookie\b"),
    ("per_cpu_ptr-cookie", lambda k: k.per_cpu_ptr(None, 0), T, r"\bcookie\b"),
    ("per_cpu_ptr-cpu-2", lambda k: k.per_cpu_ptr(_percpu(k), 2), V,
     r"\bcpu 2 is not a possible CPU"),
    ("per_cpu_ptr-cpu-negative", lambda k: k.per_cpu_ptr(_percpu(k), -1), V, r"\bcpu\b"),
    ("per_cpu_ptr-cpu-str", lambda k: k.per_cpu_ptr(_percpu(k), "0"), T, r"\bcpu\b"),
    # memblock
    ("memblock_alloc-0", lambda k: k.memblock_alloc(0), V, r"\bsize\b"),
    ("memblock_alloc-str", lambda k: k.memblock_alloc("8"), T, r"\bsize\b"),
    ("memblock_alloc-align-3", lambda k: k.memblock_alloc(8, 3), V, r"\balign\b"),
    ("memblock_alloc-align-str", lambda k: k.memblock_alloc(8, "8"), T, r"\balign\b"),
    ("memblock_alloc-leaktrace", lambda k: k.memblock_alloc(8, leaktrace=1), T,
     r"\bleaktrace must be a bool"),
    ("memblock_free-none", lambda k: k.memblock_free(None, 8), T, r"\bptr\b"),
    ("memblock_free-elsewhere", lambda k: k.memblock_free(k.kmalloc(8), 8), V,
     r"\bptr 0x[0-9a-f]+ \(size 8\) is not memblock memory"),
    ("memblock_free-size-0", lambda k: k.memblock_free(k.memblock_alloc(8), 0), V,
     r"\bsize\b"),
    # pointers
    ("store-slot-none", lambda k: k.store(None, 0), T, r"\bslot\b"),
    ("store-target-none", lambda k: k.store(k.kmalloc(8), None), T, r"\btarget\b"),
    ("store-target-negative", lambda k: k.store(k.kmalloc(8), -1), V, r"\btarget\b"),
    # files
    ("read-unknown-path", lambda k: k.read("/nope"), FileNotFoundError, r"/nope"),
    ("write-unknown-path", lambda k: k.write("/nope", "x"), FileNotFoundError, r"/nope"),
    ("read-unmodelled-proc", lambda k: k.read("/proc/meminfo/x"), FileNotFoundError, r"proc"),
    ("write-int", lambda k: k.write(KMEMLEAK, 5), T, r"\btext must be a str"),
    ("write-bytes", lambda k: k.write(KMEMLEAK, b"scan"), T, r"\btext\b"),
    ("write-bad-command", lambda k: k.write(KMEMLEAK, "bogus"), OSError, r"Invalid argument"),
    ("write-bad-verbose", lambda k: k.write(VERBOSE, "2"), OSError, r"Invalid argument"),
    ("write-read-only", lambda k: k.write("/proc/cmdline", "x"), PermissionError,
     r"Permission denied"),
    # time, stacks, statics, tasks
    ("sleep-negative", lambda k: k.sleep(-1), V, r"\bseconds\b"),
    ("sleep-str", lambda k: k.sleep("1"), T, r"\bseconds\b"),
    ("sleep-bool", lambda k: k.sleep(True), T, r"\bseconds\b"),
    ("sleep-nan", lambda k: k.sleep(math.nan), V, r"\bseconds\b"),
    ("sleep-inf", lambda k: k.sleep(math.inf), V, r"\bseconds\b"),
    ("stack_frame-negative", lambda k: _enter(k.stack_frame(-1)), V, r"\bnwords\b"),
    ("stack_frame-str", lambda k: _enter(k.stack_frame("2")), T, r"\bnwords\b"),
    ("stack_frame-slot", _slot_out_of_frame, V, r"frame has 2 local words"),
    ("define_static-duplicate", _define_twice, V, r"static 'twice' is already defined"),
    ("define_static-empty-name", lambda k: k.define_static("", 8), V, r"name"),
    ("define_static-size-0", lambda k: k.define_static("x", 0), V, r"\bsize\b"),
    ("define_static-size-str", lambda k: k.define_static("x", "8"), T, r"\bsize\b"),
    ("define_static-section", lambda k: k.define_static("x", 8, "text"), V, r"\bsection\b"),
    ("define_static-full", lambda k: k.define_static("x", 1 << 20), V, r"\.bss is full"),
    ("spawn-empty", lambda k: k.spawn(""), V, r"\bcomm\b"),
    ("exit_task-twice", _dead_task, V, r"is not a live task"),
    ("irq_context-kind", lambda k: _enter(k.irq_context("nmi")), V, r"\bkind\b"),
    # modules
    ("rmmod-unknown", lambda k: k.rmmod("nope"), FileNotFoundError,
     r"Module nope is not currently loaded"),
    ("rmmod-none", lambda k: k.rmmod(None), T, r"\bname\b"),
    ("modprobe-unknown", lambda k: k.modprobe("nope"), FileNotFoundError,
     r"Module nope not found"),
    ("insmod-none", lambda k: k.insmod(None), T, r"\bmodule must be"),
    ("insmod-int", lambda k: k.insmod(5), T, r"\bmodule must be"),
    ("insmod-other-class", lambda k: k.insmod(dict), T, r"\bmodule must be"),
    # introspection
    ("find-str", lambda k: k.kmemleak.find("x"), T, r"\bptr\b"),
    ("find-tree", lambda k: k.kmemleak.find(0, tree="x"), V, r"\btree\b"),
    ("scan-engine", lambda k: k.kmemleak.scan(engine="turbo"), V, r"engine"),
    ("addr2line-garbage", lambda k: k.addr2line("zz"), V, r"cannot parse address 'zz'"),
    ("addr2line-none", lambda k: k.addr2line(None), T, r"\baddr\b"),
    ("addr2line-negative", lambda k: k.addr2line(-1), V, r"\baddr\b"),
    ("virt_to_phys-low", lambda k: k.virt_to_phys(5), V, r"\bvirt\b"),
    ("kernel_frames-unknown", lambda k: _enter(k.kernel_frames("no_such_fn")), V,
     r"no kernel symbol 'no_such_fn'"),
    # memory
    ("memory-read-str", lambda k: k.memory.read("0", 1), T, r"\baddr\b"),
    ("memory-read-negative-n", lambda k: k.memory.read(k.kmalloc(8), -1), V, r"\bn\b"),
    ("memory-write-str", lambda k: k.memory.write(k.kmalloc(8), "x"), T, r"\bdata\b"),
    ("memory-write_word-big", lambda k: k.memory.write_word(k.kmalloc(8), 1 << 64), V,
     r"does not fit in a 64-bit word"),
]


@pytest.mark.parametrize(("call", "error", "match"),
                         [pytest.param(c, e, m, id=i) for i, c, e, m in CASES])
def test_bad_arguments_raise_documented_errors(call: Call, error: type[BaseException],
                                               match: str) -> None:
    k = Kernel()
    with pytest.raises(error, match=match) as info:
        call(k)
    assert isinstance(info.value, (KmemsimError, OSError)), type(info.value)
    assert_kernel_works(k)


def test_file_errors_carry_errno_and_path() -> None:
    k = Kernel()
    with pytest.raises(FileNotFoundError) as nf:
        k.read("/sys/kernel/debug/nope")
    assert (nf.value.errno, nf.value.filename) == (errno.ENOENT, "/sys/kernel/debug/nope")
    with pytest.raises(OSError) as inval:
        k.write(KMEMLEAK, "bogus")
    assert (inval.value.errno, inval.value.filename) == (errno.EINVAL, KMEMLEAK)
    with pytest.raises(OSError) as acces:
        k.write("/proc/cmdline", "x")
    assert acces.value.errno == errno.EACCES
    assert_kernel_works(k)


def test_a_run_of_errors_leaves_one_kernel_working() -> None:
    """All the errors above, one after another, on the same kernel."""
    k = Kernel()
    for _, call, error, _ in CASES:
        with pytest.raises(error):
            call(k)
    assert_kernel_works(k)


def test_oopses_leave_the_kernel_working() -> None:
    k = Kernel()
    p = k.kmalloc(32)
    k.kfree(p)
    with pytest.raises(KernelOops):
        k.kfree(p)
    with pytest.raises(KernelOops):
        k.store(0x10, 1)  # NULL-ish dereference
    with pytest.raises(KernelOops, match="stack guard page was hit"):
        _enter(k.stack_frame(1 << 20))
    assert_kernel_works(k)


# ----------------------------------------------------------- Kernel(...) itself
BOOT_CASES: list[tuple[str, dict[str, Any], type[BaseException], str]] = [
    ("arch-sparc", {"arch": "sparc"}, V, r"unknown architecture 'sparc'"),
    ("arch-none", {"arch": None}, T, r"\barch must be a str"),
    ("hz-123", {"hz": 123}, V, r"\bhz must be 100, 250, 300 or 1000"),
    ("hz-str", {"hz": "1000"}, T, r"\bhz\b"),
    ("hz-bool", {"hz": True}, T, r"\bhz\b"),
    ("ncpus-0", {"ncpus": 0}, V, r"\bncpus\b"),
    ("ncpus-65", {"ncpus": 65}, V, r"\bncpus must be at most 64"),
    ("ncpus-float", {"ncpus": 2.0}, T, r"\bncpus\b"),
    ("config-unknown", {"config": {"CONFIG_NOPE": True}}, V,
     r"unknown config option 'CONFIG_NOPE'"),
    ("config-value-type", {"config": {"CONFIG_SLUB_DEBUG_ON": 1}}, T,
     r"CONFIG_SLUB_DEBUG_ON must be a bool"),
    ("config-pool-size", {"config": {"CONFIG_DEBUG_KMEMLEAK_MEM_POOL_SIZE": 5}}, V,
     r"CONFIG_DEBUG_KMEMLEAK_MEM_POOL_SIZE must be in"),
    ("config-not-a-mapping", {"config": ["CONFIG_SLUB_DEBUG_ON"]}, T, r"\bconfig must be"),
    ("cmdline-int", {"cmdline": 5}, T, r"\bcmdline must be a str"),
    ("cmdline-mem", {"cmdline": "mem=lots"}, V, r"mem= takes a size"),
    ("cmdline-mem-small", {"cmdline": "mem=64M"}, V, r"mem= must be at least 128M"),
    ("seed-str", {"seed": "x"}, T, r"\bseed\b"),
    ("report-format", {"report_format": "2.6"}, V, r"\breport_format\b"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"),
                         [pytest.param(kw, e, m, id=i) for i, kw, e, m in BOOT_CASES])
def test_bad_boot_arguments_are_refused(kwargs: dict[str, Any], error: type[BaseException],
                                        match: str) -> None:
    with pytest.raises(error, match=match):
        Kernel(**kwargs)
    assert_kernel_works(Kernel())  # nothing global was left half-built


def test_a_malformed_kmemleak_option_is_a_log_line_not_an_error() -> None:
    k = Kernel(cmdline="kmemleak=maybe")
    assert "Malformed early option 'kmemleak'" in k.dmesg()
    assert_kernel_works(k)


# ------------------------------------------------------------------ insmod files
def test_insmod_of_a_missing_file(tmp_path: Path) -> None:
    k = Kernel()
    path = tmp_path / "missing.py"
    with pytest.raises(FileNotFoundError, match=r"missing\.py"):
        k.insmod(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.py"):
        k.insmod(str(path))
    assert k.modules == {}
    assert_kernel_works(k)


@pytest.mark.parametrize("source", [
    "import kmemsim_no_such_package\n",
    "def broken(:\n",
    "raise RuntimeError('module body failed')\n",
], ids=["import-error", "syntax-error", "raises"])
def test_insmod_of_a_file_that_fails_to_import(tmp_path: Path, source: str) -> None:
    k = Kernel()
    path = tmp_path / "badmod.py"
    path.write_text(source)
    before = len(k.kmemleak)
    with pytest.raises(KmemsimValueError, match=r"badmod\.py failed to import"):
        k.insmod(path)
    assert k.modules == {}
    assert len(k.kmemleak) == before
    assert_kernel_works(k)


@pytest.mark.parametrize(("source", "found"), [
    ("x = 1\n", 0),
    ("from kmemsim import Module\n"
     "class A(Module):\n    name = 'a'\n"
     "class B(Module):\n    name = 'b'\n", 2),
], ids=["none", "two"])
def test_insmod_needs_exactly_one_module_subclass(tmp_path: Path, source: str,
                                                   found: int) -> None:
    k = Kernel()
    path = tmp_path / "nomodule.py"
    path.write_text(source)
    with pytest.raises(KmemsimValueError, match=f"exactly one Module subclass, found {found}"):
        k.insmod(path)
    assert k.modules == {}
    assert_kernel_works(k)


def test_insmod_of_a_good_file(tmp_path: Path) -> None:
    k = Kernel()
    path = tmp_path / "goodmod.py"
    path.write_text("from kmemsim import Module\n"
                    "class Good(Module):\n"
                    "    name = 'goodmod'\n"
                    "    def init(self):\n"
                    "        self.k.kmalloc(16)\n"
                    "        return 0\n")
    k.insmod(path)
    assert "goodmod" in k.modules
    k.rmmod("goodmod")
    assert_kernel_works(k)


# --------------------------------------------------------------- failing inits
class _Snapshot:
    """What a failed insmod must leave exactly as it found it."""

    def __init__(self, k: Kernel) -> None:
        self.objects = {o.serial for o in k.kmemleak}
        self.areas = set(k.vmalloc_allocator.areas)
        self.used_pages = k.vmalloc_allocator.used_pages
        self.tasks = list(k.tasks)
        self.current = k.current
        self.modules = dict(k.modules)

    def assert_same(self, k: Kernel) -> None:
        assert {o.serial for o in k.kmemleak} == self.objects
        assert set(k.vmalloc_allocator.areas) == self.areas
        assert k.vmalloc_allocator.used_pages == self.used_pages
        assert k.tasks == self.tasks
        assert k.current is self.current
        assert k.modules == self.modules


class NoMemModule(Module):
    """A module whose init allocates, cleans up after itself and fails with -ENOMEM."""

    name = "nomem"
    statics: ClassVar[dict[str, int]] = {"buf": 8}

    def init(self) -> int:
        p = self.k.kmalloc(128)
        self.k.store(self.static("buf"), p)
        self.k.kfree(p)
        return -errno.ENOMEM


def test_init_returning_minus_enomem_fails_and_frees_the_module() -> None:
    k = Kernel()
    snap = _Snapshot(k)
    with pytest.raises(OSError) as exc:
        k.insmod(NoMemModule)
    assert exc.value.errno == errno.ENOMEM
    assert "could not insert module nomem: Cannot allocate memory" in str(exc.value)
    snap.assert_same(k)
    assert_kernel_works(k)
    # The same module name can be tried again, and fails the same way.
    with pytest.raises(OSError, match="Cannot allocate memory"):
        k.insmod(NoMemModule)
    snap.assert_same(k)


def test_init_returning_a_positive_value_is_einval() -> None:
    class Positive(Module):
        name = "positive"

        def init(self) -> int:
            return 1

    k = Kernel()
    snap = _Snapshot(k)
    with pytest.raises(OSError) as exc:
        k.insmod(Positive)
    assert exc.value.errno == errno.EINVAL
    snap.assert_same(k)
    assert_kernel_works(k)


def test_an_exception_in_init_propagates_and_frees_the_module() -> None:
    class Raises(Module):
        name = "raises"

        def init(self) -> int:
            self.static("not_declared")
            return 0

    k = Kernel()
    snap = _Snapshot(k)
    with pytest.raises(KmemsimValueError, match="has no static 'not_declared'"):
        k.insmod(Raises)
    snap.assert_same(k)
    assert_kernel_works(k)


def test_an_oops_in_init_frees_the_module() -> None:
    class Oopses(Module):
        name = "oopses"

        def init(self) -> int:
            self.k.memory.read_word(0x10)
            return 0

    k = Kernel()
    snap = _Snapshot(k)
    with pytest.raises(KernelOops):
        k.insmod(Oopses)
    snap.assert_same(k)
    assert_kernel_works(k)


def test_insmod_twice_is_eexist() -> None:
    k = Kernel()
    k.modprobe("article_leak")
    with pytest.raises(FileExistsError, match="article_leak: File exists"):
        k.modprobe("article-leak")
    k.rmmod("article-leak")
    with pytest.raises(FileNotFoundError):
        k.rmmod("article_leak")
    assert_kernel_works(k)


# ------------------------------------------ kernel helpers (once reported bugs)
def _task_context_none(k: Kernel) -> None:
    with k.task_context(None):  # type: ignore[arg-type]
        k.kmalloc(8)


HELPER_CASES: list[tuple[str, Call, type[BaseException], str, str]] = [
    ("read-none", lambda k: k.read(None), T, r"\bpath\b",
     "kernel.py Kernel.read/write answer a non-str path with ENOENT that names no argument"),
    ("write-path-int", lambda k: k.write(5, "scan"), T, r"\bpath\b",
     "kernel.py Kernel.write answers a non-str path with ENOENT that names no argument"),
    ("stack_frame-task-str", lambda k: _enter(k.stack_frame(1, task="x")), T, r"\btask\b",
     "kernel.py Kernel.stack_frame does not check task: bare AttributeError"),
    ("task_context-none", _task_context_none, T, r"\btask\b",
     "kernel.py Kernel.task_context accepts None; the next allocation dies with "
     "AttributeError"),
    ("exit_task-none", lambda k: k.exit_task(None), T, r"\btask\b",
     "kernel.py Kernel.exit_task(None) raises a bare AttributeError"),
    ("define_static-align-str", lambda k: k.define_static("x", 8, align="8"), T, r"\balign\b",
     "kernel.py Kernel.define_static does not check align: bare TypeError"),
    ("define_static-align-3", lambda k: k.define_static("x", 8, align=3), V, r"\balign\b",
     "kernel.py Kernel.define_static accepts an align that is not a power of two"),
    ("define_static-name-int", lambda k: k.define_static(5, 8), T, r"\bname\b",
     "kernel.py Kernel.define_static answers a non-str name with KmemsimValueError"),
    ("kmem_cache_create-name-int", lambda k: k.kmem_cache_create(5, 8), T, r"\bname\b",
     "kernel.py Kernel.kmem_cache_create answers a non-str name with KmemsimValueError"),
    ("spawn-comm-int", lambda k: k.spawn(5), T, r"\bcomm\b",
     "kernel.py Kernel.spawn answers a non-str comm with KmemsimValueError"),
    ("spawn-pid-str", lambda k: k.spawn("x", pid="1"), T, r"\bpid\b",
     "kernel.py Kernel.spawn does not check pid"),
    ("modprobe-none", lambda k: k.modprobe(None), T, r"\bname\b",
     "workloads/__init__.py bundled_module answers a non-str name with KmemsimValueError"),
    ("symbolize-str", lambda k: k.symbolize("x"), T, r"\baddr\b",
     "kernel.py Kernel.symbolize does not check addr: bare TypeError from symbols.py"),
    ("addr2line-bad-offset", lambda k: k.addr2line("foo+0xzz"), V, r"foo\+0xzz",
     "kernel.py Kernel.addr2line lets int() raise a bare ValueError on a bad offset"),
    ("hash_pointer-negative", lambda k: k.hash_pointer(-1), V, r"\baddr\b",
     "kernel.py Kernel.hash_pointer(-1) raises a bare OverflowError"),
    ("hash_pointer-str", lambda k: k.hash_pointer("x"), T, r"\baddr\b",
     "kernel.py Kernel.hash_pointer('x') raises a bare AttributeError"),
    ("phys_to_virt-str", lambda k: k.phys_to_virt("x"), T, r"\bphys\b",
     "kernel.py Kernel.phys_to_virt does not check phys: bare TypeError"),
    ("printk-int", lambda k: k.printk(5), T, r"\bline\b",
     "kernel.py Kernel.printk puts a non-str into the log"),
]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [pytest.param(c, e, m, id=i) for i, c, e, m, _why in HELPER_CASES])
def test_bad_arguments_of_kernel_helpers(call: Call, error: type[BaseException],
                                       match: str) -> None:
    k = Kernel()
    with pytest.raises(error, match=match):
        call(k)
    assert_kernel_works(k)
