"""Report records byte for byte (spec 7.4), the article's module (spec 9.1) and the
error paths of spec 8.

The golden records below are written out in full.  Only the heap addresses
are interpolated from what the allocator returned (they are the allocator's
business, not the report's); the formatting of every field, the jiffies, the
symbols, the hex dumps and the checksums are literal.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

import kmemsim.workloads.article as article
from kmemsim import Kernel
from kmemsim.errors import KernelOops
from kmemsim.klib import list_for_each_entry
from kmemsim.kmemleak.report import hex_dump_lines
from kmemsim.layout import PAGE_SIZE, arch_by_name

P = "/sys/kernel/debug/kmemleak"
STAMP = re.compile(r"^\[\s*\d+\.\d{6}\] ")
ARCHES = ["x86_64", "arm64", "i386"]
#: ``crc32(b"\x6b" * 31 + b"\xa5")``: a poisoned 32-byte kmalloc object (spec 9.1).
POISON_CRC = "362c6625"
POISON_LINES = [
    "    6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b  kkkkkkkkkkkkkkkk",
    "    6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b a5  kkkkkkkkkkkkkkk.",
]
ZERO_LINE = "    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................"


def log(k: Kernel, clear: bool = True) -> list[str]:
    """The kernel log lines without their ``[seconds.micros]`` stamps (``dmesg -c``)."""
    return [STAMP.sub("", line) for line in k.dmesg(clear=clear).splitlines()]


def records(text: str) -> list[str]:
    """Split a debugfs read into records (each one starts with its header line)."""
    return ["unreferenced object" + r for r in text.split("unreferenced object")[1:]]


def size_of(record: str) -> int:
    m = re.match(r"unreferenced object 0x[0-9a-f]+ \(size (\d+)\):\n", record)
    assert m is not None, record
    return int(m.group(1))


def small_leak(report_format: str = "newest", **kwargs: object) -> tuple[Kernel, int, int]:
    """The fixed example: ``kzalloc(8)`` and a poisoned ``kmalloc(32)``, both reported."""
    k = Kernel(cmdline="slub_debug=P", report_format=report_format, **kwargs)  # type: ignore[arg-type]
    a = k.kzalloc(8)
    b = k.kmalloc(32)
    k.sleep(10)
    k.write(P, "scan")  # reports a (crc 0); b's crc changes from 0: spared once
    k.write(P, "scan")  # reports b
    return k, a, b


# --------------------------------------------------------------- format eras
def test_record_newest_format() -> None:
    k, a, b = small_leak("newest")
    assert k.read(P) == (
        f"unreferenced object 0x{a:016x} (size 8):\n"
        '  comm "bash", pid 1024, jiffies 4294668796\n'
        "  hex dump (first 8 bytes):\n"
        "    00 00 00 00 00 00 00 00                          ........\n"
        "  backtrace (crc 0):\n"
        "    __kmalloc_cache_noprof+0x2f1/0x3a0\n"
        f"unreferenced object 0x{b:016x} (size 32):\n"
        '  comm "bash", pid 1024, jiffies 4294668796\n'
        "  hex dump (first 32 bytes):\n"
        "    6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b  kkkkkkkkkkkkkkkk\n"
        "    6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b a5  kkkkkkkkkkkkkkk.\n"
        "  backtrace (crc 362c6625):\n"
        "    __kmalloc_cache_noprof+0x2f1/0x3a0\n"
    )
    assert a.bit_length() == 64  # so the header shows all 16 digits without padding help


def test_record_6_6_format_prints_pk_frames() -> None:
    # kptr_restrict=1 and a root reader (the usual case): %pK is the raw address.
    k, a, b = small_leak("6.6")
    assert k.read(P) == (
        f"unreferenced object 0x{a:016x} (size 8):\n"
        '  comm "bash", pid 1024, jiffies 4294668796\n'
        "  hex dump (first 8 bytes):\n"
        "    00 00 00 00 00 00 00 00                          ........\n"
        "  backtrace (crc 0):\n"
        "    [<ffffffff811002f1>] __kmalloc_cache_noprof+0x2f1/0x3a0\n"
        f"unreferenced object 0x{b:016x} (size 32):\n"
        '  comm "bash", pid 1024, jiffies 4294668796\n'
        "  hex dump (first 32 bytes):\n"
        "    6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b  kkkkkkkkkkkkkkkk\n"
        "    6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b a5  kkkkkkkkkkkkkkk.\n"
        "  backtrace (crc 362c6625):\n"
        "    [<ffffffff811002f1>] __kmalloc_cache_noprof+0x2f1/0x3a0\n"
    )


def test_record_4_15_format_has_age_and_hashed_frames() -> None:
    k, a, b = small_leak("4.15")
    expected = (
        f"unreferenced object 0x{a:016x} (size 8):\n"
        '  comm "bash", pid 1024, jiffies 4294668796 (age 10.000s)\n'
        "  hex dump (first 8 bytes):\n"
        "    00 00 00 00 00 00 00 00                          ........\n"
        "  backtrace:\n"
        "    [<00000000b47bc117>] __kmalloc_cache_noprof+0x2f1/0x3a0\n"
        f"unreferenced object 0x{b:016x} (size 32):\n"
        '  comm "bash", pid 1024, jiffies 4294668796 (age 10.000s)\n'
        "  hex dump (first 32 bytes):\n"
        "    6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b  kkkkkkkkkkkkkkkk\n"
        "    6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b a5  kkkkkkkkkkkkkkk.\n"
        "  backtrace:\n"
        "    [<00000000b47bc117>] __kmalloc_cache_noprof+0x2f1/0x3a0\n"
    )
    assert k.read(P) == expected
    # The age is computed when the record is printed, in s.mmm.
    k.sleep(2.005)
    assert k.read(P) == expected.replace("(age 10.000s)", "(age 12.005s)")


def test_hashed_pointer_is_per_boot_and_not_the_address() -> None:
    k0, _, _ = small_leak("4.15")
    k1, _, _ = small_leak("4.15", seed=1)
    frame0 = re.findall(r"\[<([0-9a-f]{16})>\]", k0.read(P))
    frame1 = re.findall(r"\[<([0-9a-f]{16})>\]", k1.read(P))
    assert frame0[0] != frame1[0]  # a different boot hashes the same pointer differently
    assert frame0[0].startswith("00000000")  # %p's 32-bit hash, zero-padded to 16 digits
    assert "ffffffff811002f1" not in k0.read(P)


def test_record_on_32_bit_has_8_digit_addresses() -> None:
    k = Kernel(arch="i386", cmdline="slub_debug=P")
    a = k.kzalloc(8)
    k.sleep(10)
    k.write(P, "scan")
    assert k.read(P) == (
        f"unreferenced object 0x{a:08x} (size 8):\n"
        '  comm "bash", pid 1024, jiffies 4294668796\n'
        "  hex dump (first 8 bytes):\n"
        "    00 00 00 00 00 00 00 00                          ........\n"
        "  backtrace (crc 0):\n"
        "    __kmalloc_cache_noprof+0x2f1/0x3a0\n"
    )
    assert a.bit_length() == 32


# ------------------------------------------------------------------ hex dump
def test_hex_dump_eight_byte_row_pads_with_26_spaces() -> None:
    assert hex_dump_lines(bytes(8)) == ["    00 00 00 00 00 00 00 00" + " " * 26 + "........"]


def test_hex_dump_ascii_column_starts_at_offset_49() -> None:
    for n in range(1, 17):
        (line,) = hex_dump_lines(b"A" * n)
        assert line[4:].index("A" * n, 3 * n - 1) == 49, n
        assert line == "    " + " ".join(["41"] * n).ljust(49) + "A" * n
    assert hex_dump_lines(bytes(range(48, 58)))[0] == (
        "    30 31 32 33 34 35 36 37 38 39" + " " * 20 + "0123456789")


def test_hex_dump_non_printables_are_dots() -> None:
    data = bytes([0x00, 0x1F, 0x20, 0x41, 0x7E, 0x7F, 0x80, 0xA0, 0xFF, 0x0A, 0x09, 0x61,
                  0x25, 0x5C, 0x22, 0x2E])
    assert hex_dump_lines(data) == [
        '    00 1f 20 41 7e 7f 80 a0 ff 0a 09 61 25 5c 22 2e  .. A~......a%\\".'
    ]


def test_record_hex_dump_of_odd_sizes() -> None:
    # A cache of 20-byte objects: two rows, the second one 4 bytes wide.
    k = Kernel()
    cache = k.kmem_cache_create("odd20", 20)
    p = k.kmem_cache_zalloc(cache)
    k.memory.write(p, b"kmemleak\x00\x01\x02\x7f sim\tAB\xff\n")
    k.sleep(10)
    k.write(P, "scan")
    k.write(P, "scan")
    lines = k.read(P).splitlines()
    assert lines[2:5] == [
        "  hex dump (first 20 bytes):",
        "    6b 6d 65 6d 6c 65 61 6b 00 01 02 7f 20 73 69 6d  kmemleak.... sim",
        "    09 41 42 ff" + " " * 38 + ".AB.",
    ]
    assert lines[0] == f"unreferenced object 0x{p:016x} (size 20):"


def test_record_of_a_big_object_dumps_32_bytes() -> None:
    k = Kernel()
    p = k.kzalloc(1000)  # kmalloc-1024
    k.memory.write(p + 31, b"Z")  # the last byte dumped
    k.memory.write(p + 32, b"Y")  # not dumped
    k.sleep(10)
    k.write(P, "scan")
    k.write(P, "scan")
    lines = k.read(P).splitlines()
    assert lines[0] == f"unreferenced object 0x{p:016x} (size 1024):"
    assert lines[2:5] == ["  hex dump (first 32 bytes):", ZERO_LINE,
                          "    " + "00 " * 15 + "5a  ...............Z"]


# ------------------------------------------------------- the article's module
def _boot_and_load(arch: str) -> Kernel:
    k = Kernel(arch=arch, cmdline="slub_debug=P")
    k.modprobe("article_leak")
    return k


def _source_line(snippet: str) -> int:
    """Line number in kmemsim/workloads/article.py of the (first) line holding *snippet*."""
    lines = Path(article.__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if snippet in line)


KMALLOC_LINE = "k.kmalloc(size)  # the pointer is dropped"
VMALLOC_LINE = "k.vmalloc(64)  # a leak"
NODE_LINE = "node = k.kzalloc(MEMLEAK_NODE.sizeof(k.arch))"


@pytest.mark.parametrize("arch", ARCHES)
def test_article_module_records(arch: str) -> None:
    k = _boot_and_load(arch)
    a = arch_by_name(arch)
    ws = a.word_size
    lm = k.modules["article_leak"]
    nodes = list(list_for_each_entry(k, lm.instance.static("memleak_list"),
                                     article.MEMLEAK_NODE, "list"))
    assert len(nodes) == 10

    k.sleep(10)
    k.write(P, "scan")
    first = k.kmemleak.last_scan
    assert first is not None
    # Only all-zero blocks (crc 0) can be reported by the first scan that sees them.
    assert all(r.checksum == 0 for r in first.new_leaks)
    k.sleep(10)
    k.write(P, "scan")
    recs = records(k.read(P))
    assert [size_of(r) for r in recs] == [32, 32, 1024, 1024, 2048, 2048, 4096, 4096] + [4096] * 5
    for r in recs[:2]:
        lines = r.splitlines()
        assert lines[1] == '  comm "modprobe", pid 1100, jiffies 4294668796'
        assert lines[2:6] == ["  hex dump (first 32 bytes):", *POISON_LINES,
                              f"  backtrace (crc {POISON_CRC}):"]
    for r in recs[2:8]:  # bigger poisoned kmallocs: the dump stops before the a5
        assert r.splitlines()[3:5] == [POISON_LINES[0]] * 2
    vmalloc_addrs = [int(r.split()[2], 16) for r in recs[8:]]
    for addr in vmalloc_addrs:
        assert addr % PAGE_SIZE == 0
        assert a.vmalloc_start <= addr < a.vmalloc_end

    # While loaded, module frames print as %pS with the module name.
    kmalloc_obj = k.kmemleak.find(int(recs[0].split()[2], 16))
    assert kmalloc_obj is not None
    init_frames = [f for f in kmalloc_obj.trace if k.symbolize(f).endswith(" [article_leak]")]
    assert len(init_frames) == 1
    kmalloc_frame = init_frames[0]
    assert re.fullmatch(r"article_leak_init\+0x[0-9a-f]+/0x[0-9a-f]+ \[article_leak\]",
                        k.symbolize(kmalloc_frame))
    assert f"    {k.symbolize(kmalloc_frame)}\n" in recs[0]
    node_obj = k.kmemleak.find(nodes[0])
    assert node_obj is not None
    node_frame = next(f for f in node_obj.trace if f in range(a.modules_vaddr, a.modules_end))
    vm_obj = k.kmemleak.find(vmalloc_addrs[0])
    assert vm_obj is not None
    vm_frame = next(f for f in vm_obj.trace if f in range(a.modules_vaddr, a.modules_end))
    src = Path(article.__file__).resolve()
    for frame, snippet in ((kmalloc_frame, KMALLOC_LINE), (vm_frame, VMALLOC_LINE),
                           (node_frame, NODE_LINE)):
        loc = k.addr2line(frame)
        assert loc is not None
        assert (Path(loc.filename).resolve(), loc.lineno) == (src, _source_line(snippet))

    k.rmmod("article_leak")
    k.write(P, "scan")
    # The nodes were gray while the module's list head (module data, a gray root)
    # reached them, so their checksum was never taken and is still the initial 0.
    # Now white for the first time, their CRC (poisoned list pointers and the
    # name) differs from 0: the checksum pass counts them as modified, grays them
    # for this scan and stores the CRC.  Nothing new is reported.
    after = k.kmemleak.last_scan
    assert after is not None
    assert after.new_leaks == ()
    assert set(nodes) <= set(after.checksum_spared)
    assert len(records(k.read(P))) == 13
    k.write(P, "scan")
    recs = records(k.read(P))
    node_size = 192 if ws == 4 else 256
    assert [size_of(r) for r in recs[13:]] == [node_size] * 10
    assert [int(r.split()[2], 16) for r in recs[13:]] == nodes  # list order
    for r in recs[13:]:
        lines = r.splitlines()
        assert lines[2:5] == ["  hex dump (first 32 bytes):", ZERO_LINE, ZERO_LINE]
        assert not lines[5].endswith("(crc 0):")  # poison and name bytes
    assert log(k)[-1] == "kmemleak: 10 new suspected memory leaks (see /sys/kernel/debug/kmemleak)"

    # Unloaded: no symbol any more, %pS prints the bare address.
    for frame in (kmalloc_frame, node_frame):
        assert k.symbolize(frame) == f"0x{frame:x}"
    bare = f"    0x{node_frame:x}\n"
    assert all(bare in r for r in recs[13:])
    assert f"    0x{kmalloc_frame:x}\n" in recs[0]
    if arch == "x86_64":
        assert bare.strip().startswith("0xffffffffc0")
    # addr2line still maps the addresses, like addr2line -e article_leak.ko.
    for frame, snippet in ((kmalloc_frame, KMALLOC_LINE), (node_frame, NODE_LINE)):
        loc = k.addr2line(frame)
        assert loc is not None
        assert loc.lineno == _source_line(snippet)
        assert loc.function == "article_leak_init"


def test_addr2line_takes_symbol_plus_offset_text() -> None:
    k = _boot_and_load("x86_64")
    obj = next(o for o in k.kmemleak.objects() if o.size == 32 and o.comm == "modprobe")
    frame = next(f for f in obj.trace if k.symbolize(f).endswith("[article_leak]"))
    text = k.symbolize(frame)
    loc = k.addr2line(text)
    assert loc is not None
    assert loc.lineno == _source_line(KMALLOC_LINE)
    assert str(loc).endswith(f"article.py:{_source_line(KMALLOC_LINE)}")


# --------------------------------------------------------------- error paths
def _stack_follows(lines: list[str], i: int, k: Kernel) -> int:
    """Assert that a full ``dump_stack`` follows line *i*; return the next index."""
    stack = k.dump_stack()
    assert lines[i + 1:i + 1 + len(stack)] == stack
    return i + 1 + len(stack)


def _dump(k: Kernel, ptr: int, size: int, flags: int, checksum: int = 0) -> list[str]:
    return [
        f"kmemleak: Object 0x{ptr:016x} (size {size}):",
        'kmemleak:   comm "bash", pid 1024, jiffies 4294668796',
        "kmemleak:   min_count = 1",
        "kmemleak:   count = 0",
        f"kmemleak:   flags = 0x{flags:x}",
        f"kmemleak:   checksum = {checksum}",
        "kmemleak:   backtrace:",
        " __kmalloc_cache_noprof+0x2f1/0x3a0",
    ]


def test_overlap_on_insert_disables_kmemleak() -> None:
    k = Kernel()
    p = k.kmalloc(64)
    log(k)
    k.kmemleak.kmemleak_alloc(p + 16, 8, 1)
    lines = log(k)
    assert lines[0] == (f"kmemleak: Cannot insert 0x{p + 16:x} into the object search tree "
                        "(overlaps existing)")
    i = _stack_follows(lines, 0, k)
    # kmemleak_stop() warns and disables; the existing object is dumped intact
    # (still ALLOCATED); the cleanup work runs afterwards.
    assert lines[i:] == [
        "kmemleak: Kernel memory leak detector disabled",
        *_dump(k, p, 64, 0x1),
        "kmemleak: Automatic memory scanning thread ended",
    ]
    kl = k.kmemleak
    assert not kl.kmemleak_enabled
    assert len(kl) == 0  # no leaks were ever found: the metadata is freed
    assert k.read(P) == ""
    # The rest of the kernel keeps working; kmemleak just stops watching.
    q = k.kmalloc(64)
    assert q
    assert kl.find(q) is None
    k.kfree(q)
    k.kfree(p)
    k.sleep(3600)
    assert kl.scans_done == 0


def test_disable_after_leaks_keeps_the_metadata_and_the_file_readable() -> None:
    k = Kernel(cmdline="slub_debug=P")
    leak = k.kzalloc(8)
    k.sleep(10)
    k.write(P, "scan")
    listing = k.read(P)
    assert listing.startswith(f"unreferenced object 0x{leak:016x} (size 8):")
    p = k.kmalloc(64)
    log(k)
    k.kmemleak.kmemleak_alloc(p, 64, 1)  # the same block registered twice
    lines = log(k)
    assert lines[0] == (f"kmemleak: Cannot insert 0x{p:x} into the object search tree "
                        "(overlaps existing)")
    i = _stack_follows(lines, 0, k)
    assert lines[i] == "kmemleak: Kernel memory leak detector disabled"
    assert lines[i + 1] == f"kmemleak: Object 0x{p:016x} (size 64):"
    assert lines[-2:] == [
        "kmemleak: Automatic memory scanning thread ended",
        'kmemleak: Kmemleak disabled without freeing internal data. Reclaim the memory '
        'with "echo clear > /sys/kernel/debug/kmemleak".',
    ]
    assert k.read(P) == listing
    k.write(P, "clear")
    assert len(k.kmemleak) == 0
    assert k.read(P) == ""


def test_metadata_pool_exhaustion_disables_kmemleak() -> None:
    k = Kernel(cmdline="mem=128M", config={"CONFIG_DEBUG_KMEMLEAK_MEM_POOL_SIZE": 200})
    kl = k.kmemleak
    first = k.kmalloc(8)  # a kmalloc-8 slab with free slots for what follows
    while k.alloc_pages(0):
        pass  # the page allocator is empty: the metadata slab cannot grow
    log(k)
    count = 0
    while kl.kmemleak_enabled:
        assert k.kmalloc(8)  # served from the existing slab; metadata from the pool
        count += 1
        assert count < 1000
    lines = log(k)
    assert lines == [
        "kmemleak: Memory pool empty, consider increasing CONFIG_DEBUG_KMEMLEAK_MEM_POOL_SIZE",
        "kmemleak: Cannot allocate a kmemleak_object structure",
        "kmemleak: Kernel memory leak detector disabled",
        "kmemleak: Automatic memory scanning thread ended",
    ]
    assert len(kl) == 0
    more = k.kmalloc(8)  # allocation goes on; kmemleak stays out of it
    assert more
    k.kfree(more)
    k.kfree(first)
    assert log(k) == []  # the pool message is printed once only


def _unknown(k: Kernel, call: str, ptr: int, *args: int) -> list[str]:
    log(k)
    getattr(k.kmemleak, call)(ptr, *args)
    return log(k)


@pytest.mark.parametrize(("call", "args", "message"), [
    ("kmemleak_not_leak", (), "Trying to color unknown object at 0x{:08x} as Grey"),
    ("kmemleak_ignore", (), "Trying to color unknown object at 0x{:08x} as Black"),
    ("kmemleak_no_scan", (), "Not scanning unknown object at 0x{:08x}"),
    ("kmemleak_scan_area", (16,), "Adding scan area to unknown object at 0x{:08x}"),
    ("kmemleak_transient_leak", (), "Not resetting the checksum of an unknown object at 0x{:08x}"),
])
def test_unknown_object_warnings(call: str, args: tuple[int, ...], message: str) -> None:
    k = Kernel()
    for ptr in (k.alloc_pages(0), 0x1000):  # untracked page; a small value shows %08lx
        lines = _unknown(k, call, ptr, *args)
        assert lines[0] == "kmemleak: " + message.format(ptr)
        assert _stack_follows(lines, 0, k) == len(lines)
    assert "0x00001000" in lines[0]
    _still_works(k)


def _still_works(k: Kernel) -> None:
    """None of the warnings disables kmemleak: a leak is still found."""
    assert k.kmemleak.kmemleak_enabled
    p = k.kzalloc(16)
    k.sleep(10)
    k.write(P, "scan")
    assert f"unreferenced object 0x{p:016x} (size 16):\n" in k.read(P)


def test_scan_area_larger_than_object_warns_and_dumps() -> None:
    k = Kernel()
    p = k.kmalloc(64)
    lines = _unknown(k, "kmemleak_scan_area", p + 8, 64)
    assert lines[0] == f"kmemleak: Scan area larger than object 0x{p + 8:016x}"
    i = _stack_follows(lines, 0, k)
    assert lines[i:] == _dump(k, p, 64, 0x1)
    obj = k.kmemleak.find(p)
    assert obj is not None
    assert obj.areas == ()  # nothing added
    _still_works(k)


def test_not_leak_of_an_interior_pointer_warns_alias_then_unknown() -> None:
    k = Kernel()
    p = k.kmalloc(64)
    lines = _unknown(k, "kmemleak_not_leak", p + 8)
    assert lines[0] == f"kmemleak: Found object by alias at 0x{p + 8:016x}"
    i = _stack_follows(lines, 0, k)
    assert lines[i:i + 8] == _dump(k, p, 64, 0x1)
    assert lines[i + 8] == f"kmemleak: Trying to color unknown object at 0x{p + 8:016x} as Grey"
    assert _stack_follows(lines, i + 8, k) == len(lines)
    obj = k.kmemleak.find(p)
    assert obj is not None
    assert obj.min_count == 1  # the call had no effect
    _still_works(k)


def test_kfree_of_an_interior_pointer_warns_alias_and_frees_nothing() -> None:
    k = Kernel()
    p = k.kmalloc(64)
    log(k)
    with contextlib.suppress(KernelOops):
        k.kfree(p + 8)
    lines = log(k)
    assert lines[0] == f"kmemleak: Found object by alias at 0x{p + 8:016x}"
    i = _stack_follows(lines, 0, k)
    assert lines[i:i + 8] == _dump(k, p, 64, 0x1)
    assert k.kmemleak.find(p) is not None  # kmemleak freed nothing
    assert k.kmemleak.kmemleak_enabled


def test_excess_ref_on_an_unknown_vm_struct_warns() -> None:
    k = Kernel()
    block, area = k.alloc_pages(0), k.alloc_pages(0)  # neither is tracked
    log(k)
    k.kmemleak.kmemleak_vmalloc(area, block, PAGE_SIZE)
    lines = log(k)
    assert lines[0] == f"kmemleak: Setting excess_ref on unknown object at 0x{area:016x}"
    assert _stack_follows(lines, 0, k) == len(lines)
    obj = k.kmemleak.find(block)
    assert obj is not None
    assert obj.min_count == 2  # the block itself was registered
    _still_works(k)
