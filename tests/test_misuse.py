"""Misuse, answered as the kernel answers it (kernel misuse) or with a typed Python
error that names the argument (API misuse).

``tests/test_api_errors.py`` covers the bad arguments of the ``Kernel`` calls;
this file covers SLUB's debug checks (``slub_debug`` red zones, poison, free
pointer, double and invalid frees), the remaining kernel misuse paths, and the
API gaps that file leaves (the ``kmemleak_*`` calls, introspection helpers,
module files).  Every test checks that the same kernel keeps working.  The
table in ``docs/bad-input.md`` lists each case with the test that pins it.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kmemsim import Kernel, KernelOops, KmemsimError, KmemsimTypeError, KmemsimValueError, Module
from kmemsim.errors import PageFault
from kmemsim.mm.slab import (
    DEBUG_DEFAULT_FLAGS,
    SLAB_CONSISTENCY_CHECKS,
    SLAB_POISON,
    SLAB_RED_ZONE,
    SLAB_STORE_USER,
    SLUB_RED_ACTIVE,
    SLUB_RED_INACTIVE,
)

KMEMLEAK = "/sys/kernel/debug/kmemleak"
STAMP = re.compile(r"^\[[ 0-9.]+\] ")
TAINTED = "Tainted: G    B              "  # print_tainted(): 20 flags, B = TAINT_BAD_PAGE


def log(k: Kernel) -> list[str]:
    """The kernel log lines without their ``[seconds.micros]`` stamps (``dmesg -c``)."""
    return [STAMP.sub("", line) for line in k.dmesg(clear=True).splitlines()]


def _size(k: Kernel, ptr: int) -> int:
    obj = k.kmemleak.find(ptr)
    assert obj is not None
    return obj.size


def assert_kernel_works(k: Kernel) -> None:
    """The same kernel still allocates, scans, reports and frees; its invariants hold."""
    before = len(k.kmemleak)
    p = k.kmalloc(64)
    assert p
    assert k.kmemleak.find(p, alias=False) is not None
    k.write(KMEMLEAK, "scan")
    assert k.kmemleak.kmemleak_enabled
    k.kfree(p)
    assert len(k.kmemleak) == before
    k._check()


# ----------------------------------------------------------------- layouts
@pytest.mark.parametrize("cmdline", ["", "slub_debug=P", "slub_debug=F", "slub_debug=FP"])
def test_layouts_without_red_zones_or_tracking_are_unchanged(cmdline: str) -> None:
    """F and P keep the object layout: the same slots, addresses and kmemleak sizes."""
    k = Kernel(cmdline=cmdline)
    c = k.slab.kmalloc_caches[32]
    poisoned = "P" in cmdline
    assert (c.red_left_pad, c.offset, c.size) == ((0, 32, 64) if poisoned else (0, 16, 32))
    p = k.kmalloc(32)
    assert p == 0xFFFF888004001000  # the first kmalloc-32 slot, as in every earlier release
    assert _size(k, p) == 32
    assert_kernel_works(k)


@pytest.mark.parametrize("arch", ["x86_64", "arm64", "i386"])
def test_red_zones_surround_each_object_and_kmemleak_sees_the_object_only(arch: str) -> None:
    k = Kernel(arch=arch, cmdline="slub_debug=Z")
    ws = k.arch.word_size
    c = k.slab.kmalloc_caches[32]
    # calculate_sizes(): a word of right red zone, the left pad aligned to 32, a word of
    # padding; the free pointer stays inside the object (no P, object >= a word).
    assert (c.inuse, c.red_left_pad, c.offset) == (32 + ws, 32, 16)
    assert c.size == 32 + ws + ws + 32 + (32 - 2 * ws) % 32
    p = k.kmalloc(32)
    assert (p - c.red_left_pad - k.page_allocator.pfn_to_virt(
        k.page_allocator.virt_to_pfn(p))) % c.size == 0
    assert _size(k, p) == 32  # kmemleak registers object_size, never the slot
    assert k.memory.read(p - 32, 32) == bytes([SLUB_RED_ACTIVE]) * 32
    assert k.memory.read(p + 32, ws) == bytes([SLUB_RED_ACTIVE]) * ws
    k.kfree(p)
    assert k.memory.read(p - 32, 32) == bytes([SLUB_RED_INACTIVE]) * 32
    assert k.memory.read(p + 32, ws) == bytes([SLUB_RED_INACTIVE]) * ws
    assert_kernel_works(k)


@pytest.mark.parametrize(("cmdline", "config", "flags"), [
    ("slub_debug", None, DEBUG_DEFAULT_FLAGS),
    ("slub_debug=", None, DEBUG_DEFAULT_FLAGS),
    ("", {"CONFIG_SLUB_DEBUG_ON": True}, DEBUG_DEFAULT_FLAGS),
    ("slub_debug=-", {"CONFIG_SLUB_DEBUG_ON": True}, 0),
    ("slub_debug=fz", None, SLAB_CONSISTENCY_CHECKS | SLAB_RED_ZONE),
    ("slub_debug=U", None, SLAB_STORE_USER),
    ("slub_debug=ZP-F", None, SLAB_CONSISTENCY_CHECKS),
])
def test_slub_debug_letters_as_the_kernel_parses_them(cmdline: str, config: Any,
                                                     flags: int) -> None:
    k = Kernel(cmdline=cmdline, config=config)
    mask = DEBUG_DEFAULT_FLAGS
    assert {c.flags & mask for c in k.slab.caches.values()} == {flags}
    assert_kernel_works(k)


def test_slub_debug_blocks_for_named_caches() -> None:
    k = Kernel(cmdline="slub_debug=FZ,kmalloc-64,vmap*;P")
    f = {name: c.flags & DEBUG_DEFAULT_FLAGS for name, c in k.slab.caches.items()}
    assert f["kmalloc-64"] == f["vmap_area"] == SLAB_CONSISTENCY_CHECKS | SLAB_RED_ZONE
    assert f["kmalloc-32"] == f["kmem_cache"] == SLAB_POISON  # the block without a list
    assert_kernel_works(k)


def test_an_unknown_slub_debug_letter_is_a_log_line() -> None:
    k = Kernel(cmdline="slub_debug=PQ")
    assert "slub_debug option 'Q' unknown. skipped" in k.dmesg()
    assert k.slab.kmalloc_caches[32].flags & SLAB_POISON
    assert_kernel_works(k)


# ------------------------------------------------------- SLUB's reports (F)
RIGHT_REDZONE = """\
=============================================================================
BUG kmalloc-32 (Not tainted): Right Redzone overwritten
-----------------------------------------------------------------------------

0xffff888004002040-0xffff888004002041 @offset=64. First byte 0x0 instead of 0xcc
Slab 0xffffea0000100080 objects=42 used=1 fp=0xffff888004002080 flags=0x100000000000000(node=0|zone=1)
Object 0xffff888004002020 @offset=32 fp=0xffff888004002080

Redzone  ffff888004002000: cc cc cc cc cc cc cc cc cc cc cc cc cc cc cc cc  ................
Redzone  ffff888004002010: cc cc cc cc cc cc cc cc cc cc cc cc cc cc cc cc  ................
Object   ffff888004002020: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
Object   ffff888004002030: 45 81 c0 c6 7e 3c f7 38 00 00 00 00 00 00 00 00  E...~<.8........
Redzone  ffff888004002040: 00 01 cc cc cc cc cc cc                          ........
Padding  ffff888004002048: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
Padding  ffff888004002058: 00 00 00 00 00 00 00 00                          ........
CPU: 0 UID: 0 PID: 1024 Comm: bash Not tainted 6.16.0-kmemsim #1
Hardware name: kmemsim simulated machine
Call Trace:
 <TASK>
 dump_stack_lvl+0x64/0x80
 print_trailer+0x10a/0x160
 check_bytes_and_report+0xe9/0x140
 check_object+0xd4/0x2c0
 free_debug_processing+0x1f6/0x2a0
 __slab_free+0x1d2/0x2e0
 kfree+0x2a4/0x3a0
 </TASK>
FIX kmalloc-32: Restoring Right Redzone 0xffff888004002040-0xffff888004002041=0xcc
FIX kmalloc-32: Object at 0xffff888004002020 not freed"""


def test_a_write_past_the_object_is_reported_at_kfree_as_slub_does() -> None:
    k = Kernel(cmdline="slub_debug=FZ")
    p = k.kmalloc(32)
    assert p == 0xFFFF888004002020
    k.memory.write(p + 32, b"\x00\x01")  # two bytes past the end
    log(k)
    k.kfree(p)  # no exception: SLUB reports, repairs and keeps the object
    assert log(k) == RIGHT_REDZONE.splitlines()
    c = k.slab.kmalloc_caches[32]
    assert p in c.allocated  # "not freed"
    assert k.kmemleak.find(p) is None  # kmemleak_free ran first, as in slab_free()
    assert k.memory.read(p + 32, 8) == bytes([SLUB_RED_ACTIVE]) * 8  # restored
    k.kfree(p)  # the red zone is whole again: this free goes through
    assert log(k) == []
    assert p not in c.allocated
    assert_kernel_works(k)


def test_a_write_before_the_object_is_a_left_redzone_report_and_taints() -> None:
    k = Kernel(cmdline="slub_debug=FZP")
    p, q = k.kmalloc(64), k.kmalloc(64)
    k.memory.write(p - 1, b"!")
    log(k)
    k.kfree(p)
    lines = log(k)
    assert lines[1] == "BUG kmalloc-64 (Not tainted): Left Redzone overwritten"
    fault = k.arch.fmt_addr(p - 1)
    assert f"0x{fault}-0x{fault} @offset=" in lines[4]
    assert lines[4].endswith("First byte 0x21 instead of 0xcc")
    assert f"FIX kmalloc-64: Restoring Left Redzone 0x{fault}-0x{fault}=0xcc" in lines
    # the second report says the kernel is tainted (B: bad page)
    k.memory.write(q + 64, b"!")
    k.kfree(q)
    lines = log(k)
    assert lines[1] == f"BUG kmalloc-64 ({TAINTED}): Right Redzone overwritten"
    assert any(line.endswith(f"Comm: bash {TAINTED} 6.16.0-kmemsim #1") for line in lines)
    assert "Tainted: [B]=BAD_PAGE" in lines
    assert_kernel_works(k)


def test_kmalloc_redzone_between_the_request_and_the_size_class() -> None:
    """With U, kmalloc(20) keeps its request size: bytes 20..31 are red zone."""
    k = Kernel(cmdline="slub_debug")  # FZPU
    p = k.kmalloc(20)
    assert k.memory.read(p, 32) == b"\x6b" * 19 + b"\xa5" + bytes([SLUB_RED_ACTIVE]) * 12
    z = k.kzalloc(20)
    assert k.memory.read(z, 32) == bytes(20) + bytes([SLUB_RED_ACTIVE]) * 12  # zeroes the request
    assert _size(k, p) == 32
    k.memory.write(p + 20, b"X")  # inside kmalloc-32, past the 20 bytes asked for
    log(k)
    k.kfree(p)
    lines = log(k)
    assert lines[1] == "BUG kmalloc-32 (Not tainted): kmalloc Redzone overwritten"
    # U: where it was allocated (the allocator's frame: called from plain Python here)
    assert lines[5].startswith("Allocated in __kmalloc_cache_noprof+0x2f1/0x3a0 age=0 cpu=0 pid=1024")
    assert f"FIX kmalloc-32: Object at 0x{k.arch.fmt_addr(p)} not freed" in lines
    k.kfree(z)
    assert_kernel_works(k)


def test_a_write_after_free_is_poison_overwritten_at_the_next_allocation() -> None:
    k = Kernel(cmdline="slub_debug=FP")
    c = k.slab.kmalloc_caches[32]
    keep = k.kmalloc(32)
    p = k.kmalloc(32)
    k.kfree(p)
    k.memory.write(p + 3, b"AB")  # use after free
    log(k)
    q = k.kmalloc(32)  # the freelist head is p: the check runs on it
    lines = log(k)
    assert lines[1] == "BUG kmalloc-32 (Not tainted): Poison overwritten"
    a, b = k.arch.fmt_addr(p + 3), k.arch.fmt_addr(p + 4)
    assert lines[4] == f"0x{a}-0x{b} @offset={(p + 3) & 0xFFF}. First byte 0x41 instead of 0x6b"
    assert " alloc_debug_processing+0xe1/0x1a0" in lines
    assert lines[-2:] == [f"FIX kmalloc-32: Restoring Poison 0x{a}-0x{b}=0x6b",
                          "FIX kmalloc-32: Marking all objects used"]
    assert q
    assert q != p
    assert p in c.lost
    assert k.memory.read(p + 3, 2) == b"kk"
    k._check()  # every slot is free, allocated or given up, exactly once
    k.kfree(q)
    k.kfree(keep)
    assert_kernel_works(k)


DOUBLE_FREE = """\
=============================================================================
BUG kmalloc-32 (Not tainted): Object already free
-----------------------------------------------------------------------------

Slab 0xffffea0000100040 objects=64 used=0 fp=0xffff888004001000 flags=0x100000000000000(node=0|zone=1)
Object 0xffff888004001000 @offset=0 fp=0xffff888004001040

Object   ffff888004001000: 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b  kkkkkkkkkkkkkkkk
Object   ffff888004001010: 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b a5  kkkkkkkkkkkkkkk.
Padding  ffff888004001028: 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a  ZZZZZZZZZZZZZZZZ
Padding  ffff888004001038: 5a 5a 5a 5a 5a 5a 5a 5a                          ZZZZZZZZ
CPU: 0 UID: 0 PID: 1024 Comm: bash Not tainted 6.16.0-kmemsim #1
Hardware name: kmemsim simulated machine
Call Trace:
 <TASK>
 dump_stack_lvl+0x64/0x80
 print_trailer+0x10a/0x160
 object_err+0x4d/0x60
 free_debug_processing+0x1f6/0x2a0
 __slab_free+0x1d2/0x2e0
 kfree+0x2a4/0x3a0
 </TASK>
FIX kmalloc-32: Object at 0xffff888004001000 not freed"""


def test_double_free_with_consistency_checks_is_reported_not_raised() -> None:
    k = Kernel(cmdline="slub_debug=FP")
    p = k.kmalloc(32)
    k.kfree(p)
    log(k)
    k.kfree(p)
    assert log(k) == DOUBLE_FREE.splitlines()
    assert k.kmalloc(32) == p  # p is on the freelist once: it comes back once
    assert k.kmalloc(32) != p
    assert_kernel_works(k)


def test_double_free_without_checks_oopses() -> None:
    """Without F a real kernel corrupts its freelist; kmemsim refuses with an oops."""
    k = Kernel(cmdline="slub_debug=ZP")
    p = k.kmalloc(32)
    k.kfree(p)
    with pytest.raises(KernelOops) as exc:
        k.kfree(p)
    assert exc.value.lines[1].startswith("BUG kmalloc-32 (Not tainted): Object already free")
    assert_kernel_works(k)


def test_free_through_an_interior_pointer_with_checks() -> None:
    k = Kernel(cmdline="slub_debug=F")
    p = k.kmalloc(64)
    log(k)
    k.kfree(p + 8)
    lines = log(k)
    assert lines[0] == f"kmemleak: Found object by alias at 0x{p + 8:016x}"  # slab_free_hook
    i = lines.index("BUG kmalloc-64 (Not tainted): Invalid object pointer "
                    f"0x{k.arch.fmt_addr(p + 8)}")
    assert lines[i + 3].startswith("Slab 0xffffea")  # slab_err: the slab, then the stack
    assert " slab_err+0xb8/0xe0" in lines
    assert lines[-1] == f"FIX kmalloc-64: Object at 0x{k.arch.fmt_addr(p + 8)} not freed"
    assert k.kmemleak.find(p, alias=False) is not None  # nothing was freed
    k.kfree(p)
    assert_kernel_works(k)


def test_a_corrupted_free_pointer_is_found_at_kfree() -> None:
    k = Kernel(cmdline="slub_debug=FZP")
    c = k.slab.kmalloc_caches[64]
    p = k.kmalloc(64)
    k.memory.write_word(p + c.offset, 0x1234)  # past the red zone, onto the free pointer
    log(k)
    k.kfree(p)
    lines = log(k)
    assert lines[1] == "BUG kmalloc-64 (Not tainted): Freepointer corrupt"
    assert lines[-1] == f"FIX kmalloc-64: Object at 0x{k.arch.fmt_addr(p)} not freed"
    assert c.get_freepointer(p) == 0  # SLUB zaps it
    k.kfree(p)
    assert_kernel_works(k)


def test_overwritten_padding_is_reported_and_restored_and_the_object_freed() -> None:
    k = Kernel(cmdline="slub_debug=FP")
    c = k.slab.kmalloc_caches[32]
    p = k.kmalloc(32)
    k.memory.write(p + 40, b"\x00")  # the padding after the free pointer
    log(k)
    k.kfree(p)
    lines = log(k)
    assert lines[1] == "BUG kmalloc-32 (Not tainted): Object padding overwritten"
    assert lines[-1].startswith("FIX kmalloc-32: Restoring Object padding")
    assert p not in c.allocated  # check_pad_bytes repairs and does not fail the free
    assert k.memory.read(p + 40, 1) == b"\x5a"
    assert_kernel_works(k)


# ------------------------------------------------------- other kernel misuse
def test_vfree_through_an_interior_pointer() -> None:
    k = Kernel()
    v = k.vmalloc(2 * 4096)
    log(k)
    k.vfree(v + 4096)
    lines = log(k)
    assert lines[0] == f"kmemleak: Found object by alias at 0x{v + 4096:016x}"
    assert "------------[ cut here ]------------" in lines
    assert (f"Trying to vfree() nonexistent vm area ({k.hash_pointer(v + 4096):016x})"
            in lines)
    assert any(line.startswith("WARNING: CPU: 0 PID: 1024 at mm/vmalloc.c:") for line in lines)
    assert k.kmemleak.find(v, alias=False) is not None  # the area is still there
    k.vfree(v)
    assert_kernel_works(k)


@pytest.mark.parametrize("where", ["guard page", "unmapped"])
def test_a_store_that_faults_writes_nothing_and_records_no_reference(where: str) -> None:
    k = Kernel()
    target = k.kmalloc(32)
    v = k.vmalloc(100)
    slot = v + 4096 if where == "guard page" else 0x10
    edges = dict(k.truth.edges)
    with pytest.raises(PageFault) as exc:
        k.store(slot, target)
    assert exc.value.write
    assert exc.value.address == slot
    assert exc.value.lines[0] == f"BUG: unable to handle page fault for address: {slot:016x}"
    assert exc.value.lines[1] == "#PF: supervisor write access in kernel mode"
    assert dict(k.truth.edges) == edges
    assert k.dmesg().count("BUG: unable to handle page fault") == 1
    k.kfree(target)
    k.vfree(v)
    assert_kernel_works(k)


# --------------------------------------------------------------- API misuse
def _kl(k: Kernel) -> Any:
    return k.kmemleak


Call = Callable[[Kernel], object]
T, V = KmemsimTypeError, KmemsimValueError

#: (id, call, error, message regex naming the argument): what test_api_errors leaves out.
CASES: list[tuple[str, Call, type[BaseException], str]] = [
    ("kmemleak_alloc-ptr-none", lambda k: _kl(k).kmemleak_alloc(None, 8, 1), T,
     r"\bptr must be an int, not NoneType"),
    ("kmemleak_alloc-ptr-float", lambda k: _kl(k).kmemleak_alloc(1.5, 8, 1), T, r"\bptr\b"),
    ("kmemleak_alloc-ptr-wide", lambda k: _kl(k).kmemleak_alloc(1 << 64, 8, 1), V,
     r"\bptr must be at most"),
    ("kmemleak_alloc-size-none", lambda k: _kl(k).kmemleak_alloc(0x1000, None, 1), T,
     r"\bsize\b"),
    ("kmemleak_alloc-size-negative", lambda k: _kl(k).kmemleak_alloc(0x1000, -8, 1), V,
     r"\bsize must be at least 0"),
    ("kmemleak_alloc-min_count", lambda k: _kl(k).kmemleak_alloc(0x1000, 8, -2), V,
     r"\bmin_count must be at least -1"),
    ("kmemleak_alloc_percpu-size", lambda k: _kl(k).kmemleak_alloc_percpu(0x1000, "8"), T,
     r"\bsize\b"),
    ("kmemleak_alloc_phys-phys", lambda k: _kl(k).kmemleak_alloc_phys("x", 8), T, r"\bphys\b"),
    ("kmemleak_free-negative", lambda k: _kl(k).kmemleak_free(-1), V, r"\bptr\b"),
    ("kmemleak_free_percpu-str", lambda k: _kl(k).kmemleak_free_percpu("x"), T, r"\bptr\b"),
    ("kmemleak_free_part-size", lambda k: _kl(k).kmemleak_free_part(0x1000, None), T,
     r"\bsize\b"),
    ("kmemleak_free_part_phys-phys", lambda k: _kl(k).kmemleak_free_part_phys(None, 8), T,
     r"\bphys\b"),
    ("kmemleak_not_leak-wide", lambda k: _kl(k).kmemleak_not_leak(1 << 64), V, r"\bptr\b"),
    ("kmemleak_ignore-float", lambda k: _kl(k).kmemleak_ignore(2.0), T, r"\bptr\b"),
    ("kmemleak_ignore_phys-none", lambda k: _kl(k).kmemleak_ignore_phys(None), T,
     r"\bphys\b"),
    ("kmemleak_no_scan-none", lambda k: _kl(k).kmemleak_no_scan(None), T, r"\bptr\b"),
    ("kmemleak_transient_leak-str", lambda k: _kl(k).kmemleak_transient_leak("0"), T,
     r"\bptr\b"),
    ("kmemleak_update_trace-none", lambda k: _kl(k).kmemleak_update_trace(None), T,
     r"\bptr\b"),
    ("kmemleak_scan_area-size", lambda k: _kl(k).kmemleak_scan_area(0x1000, -2), V,
     r"\bsize must be at least -1"),
    ("kmemleak_vmalloc-area", lambda k: _kl(k).kmemleak_vmalloc(None, 0x1000, 8), T,
     r"\barea\b"),
    ("record-none", lambda k: _kl(k).record(None), T, r"\bobj must be a KmemleakObject"),
    ("dump_object_info-int", lambda k: _kl(k).dump_object_info(5), T, r"\bobj\b"),
    ("unreferenced_object-none", lambda k: _kl(k).unreferenced_object(None), T, r"\bobj\b"),
    ("memory-fill-huge", lambda k: k.memory.fill(k.kmalloc(8), 1 << 70, 0), V, r"\bsize\b"),
    ("per_cpu_offset-none", lambda k: k.per_cpu_offset(None),  # type: ignore[arg-type]
     T, r"\bcpu\b"),
    ("per_cpu_offset-cpu-2", lambda k: k.per_cpu_offset(2), V, r"\bcpu must be at most 0x1, got 0x2"),
    ("oops_lines-str", lambda k: k.oops_lines("oops"),  # type: ignore[arg-type]
     T, r"\blines must be a list"),
]


@pytest.mark.parametrize(("call", "error", "match"),
                         [pytest.param(c, e, m, id=i) for i, c, e, m in CASES])
def test_api_misuse_raises_a_typed_error_naming_the_argument(
        call: Call, error: type[BaseException], match: str) -> None:
    k = Kernel()
    with pytest.raises(error, match=match) as info:
        call(k)
    assert isinstance(info.value, KmemsimError)
    assert_kernel_works(k)


def test_insmod_of_a_directory_is_eisdir(tmp_path: Path) -> None:
    k = Kernel()
    with pytest.raises(IsADirectoryError) as exc:
        k.insmod(tmp_path)
    assert exc.value.errno == errno.EISDIR
    assert f"could not load module {tmp_path}: Is a directory" in str(exc.value)
    assert_kernel_works(k)


def test_insmod_of_a_module_whose_name_is_not_a_str() -> None:
    class Numbered(Module):
        name = 5  # type: ignore[assignment]

    k = Kernel()
    with pytest.raises(KmemsimTypeError, match=r"Numbered\.name must be a str, not int"):
        k.insmod(Numbered)
    assert k.modules == {}
    assert_kernel_works(k)


def test_an_exception_in_exit_propagates_and_the_module_stays_loaded() -> None:
    """As a module whose exit oopsed stays "Unloading": kmemsim keeps it listed."""
    class BadExit(Module):
        name = "badexit"

        def exit(self) -> None:
            raise RuntimeError("exit failed")

    k = Kernel()
    k.insmod(BadExit)
    with pytest.raises(RuntimeError, match="exit failed"):
        k.rmmod("badexit")
    assert "badexit" in k.modules
    assert k.current is k.shell_task  # the rmmod task is gone
    assert_kernel_works(k)


def test_kmemleak_files_are_absent_without_config_debug_kmemleak() -> None:
    k = Kernel(config={"CONFIG_DEBUG_KMEMLEAK": False})
    for call in (lambda: k.read(KMEMLEAK), lambda: k.write(KMEMLEAK, "scan"),
                 lambda: k.read("/sys/module/kmemleak/parameters/verbose")):
        with pytest.raises(FileNotFoundError) as exc:
            call()
        assert exc.value.errno == errno.ENOENT
    p = k.kmalloc(64)  # the allocators work; nothing is tracked
    assert p
    assert k.kmemleak.find(p) is None
    k.kfree(p)
    k._check()
