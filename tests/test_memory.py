"""Tests of kmemsim.memory.AddressSpace: mapping, byte and word access, page faults.

The address space is what kmemleak reads, so its contract is exact: words are
little-endian and as wide as the architecture's ``unsigned long``, a scan sees
only aligned whole words, and touching anything unmapped (a gap, the guard
page after a vmalloc area) oopses with the kernel's wording instead of
raising a Python ``IndexError``.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kmemsim
from kmemsim import Kernel, KernelOops, KmemsimError, PageFault
from kmemsim.errors import KmemsimTypeError, KmemsimValueError
from kmemsim.layout import ARCHES, ARM64, I386, PAGE_SIZE, X86_64, Arch
from kmemsim.memory import AddressSpace

#: A direct-map address per architecture, well inside the simulated RAM.
BASE = {a.name: a.page_offset + 0x0010_0000 for a in ARCHES.values()}
ARCH_NAMES = tuple(ARCHES)


def space(arch: Arch = X86_64) -> tuple[AddressSpace, int]:
    """A fresh address space with nothing mapped, and a base address for it."""
    return AddressSpace(arch), BASE[arch.name]


def assert_kernel_works(k: Kernel) -> None:
    """After an oops the same kernel still allocates, scans and frees."""
    before = len(k.kmemleak)
    p = k.kmalloc(64)
    assert p
    assert k.kmemleak.find(p).pointer == p
    k.store(p, p)
    assert k.memory.read_word(p) == p
    k.write("/sys/kernel/debug/kmemleak", "scan")
    assert k.kmemleak.kmemleak_enabled
    k.kfree(p)
    assert len(k.kmemleak) == before
    k._check()


# --------------------------------------------------------------------- mapping
def test_map_is_zero_filled_and_regions_are_sorted() -> None:
    mem, base = space()
    r2 = mem.map(base + 2 * PAGE_SIZE, PAGE_SIZE, "second", "direct")
    r1 = mem.map(base, PAGE_SIZE, "first", "vmalloc")
    assert [r.name for r in mem.regions()] == ["first", "second"]
    assert (r1.start, r1.end, r1.kind) == (base, base + PAGE_SIZE, "vmalloc")
    assert r2.kind == "direct"
    assert mem.read(base, PAGE_SIZE) == bytes(PAGE_SIZE)
    assert mem.region_at(base + PAGE_SIZE - 1) is r1
    assert mem.region_at(base + PAGE_SIZE) is None  # the gap between them
    assert mem.region_at(base + 2 * PAGE_SIZE) is r2


def test_map_with_data_uses_it_in_place() -> None:
    mem, base = space()
    data = bytearray(b"\x11" * 64)
    region = mem.map(base, 64, "given", data=data)
    assert region.data is data
    mem.write(base, b"\x22")
    assert data[0] == 0x22
    assert mem.read(base, 2) == b"\x22\x11"


@pytest.mark.parametrize(
    ("start", "size"),
    [
        (0, PAGE_SIZE),  # the same range
        (0x100, 0x10),  # inside
        (-0x10, 0x20),  # straddles the start
        (PAGE_SIZE - 1, 2),  # straddles the end
        (-PAGE_SIZE, 3 * PAGE_SIZE),  # covers it
    ],
    ids=["same", "inside", "over-start", "over-end", "covering"],
)
def test_overlapping_map_is_refused(start: int, size: int) -> None:
    mem, base = space()
    mem.map(base, PAGE_SIZE, "existing")
    with pytest.raises(KmemsimValueError, match="overlaps an existing region"):
        mem.map(base + start, size, "new")
    # Refused means nothing changed.
    assert [r.name for r in mem.regions()] == ["existing"]


def test_adjacent_maps_are_allowed() -> None:
    mem, base = space()
    mem.map(base, PAGE_SIZE, "a")
    mem.map(base + PAGE_SIZE, PAGE_SIZE, "b")
    mem.map(base - PAGE_SIZE, PAGE_SIZE, "c")
    assert [r.name for r in mem.regions()] == ["c", "a", "b"]
    assert mem.is_mapped(base - PAGE_SIZE, 3 * PAGE_SIZE)


def test_map_arguments_are_checked() -> None:
    mem, base = space()
    with pytest.raises(KmemsimValueError, match="size"):
        mem.map(base, 0, "empty")
    with pytest.raises(KmemsimValueError, match="start"):
        mem.map(-1, 8, "negative")
    with pytest.raises(KmemsimTypeError, match="start"):
        mem.map("0", 8, "str")  # type: ignore[arg-type]
    with pytest.raises(KmemsimValueError, match="data length"):
        mem.map(base, 8, "short", data=bytearray(4))
    with pytest.raises(KmemsimTypeError, match="data must be a bytearray"):
        mem.map(base, 8, "immutable", data=b"\0" * 8)  # type: ignore[arg-type]
    with pytest.raises(KmemsimValueError, match="size"):
        mem.map((1 << 64) - PAGE_SIZE, 2 * PAGE_SIZE, "past the top")
    assert list(mem.regions()) == []


def test_unmap_returns_the_region_and_its_addresses_fault() -> None:
    mem, base = space()
    region = mem.map(base, PAGE_SIZE, "gone")
    mem.write_word(base, 0x1234)
    assert mem.unmap(base) is region
    assert region.data[:2] == b"\x34\x12"  # the bytes go with the region
    assert not mem.is_mapped(base)
    with pytest.raises(PageFault):
        mem.read(base, 1)
    # The address can be mapped again, fresh.
    mem.map(base, PAGE_SIZE, "again")
    assert mem.read_word(base) == 0


def test_unmap_needs_a_region_start() -> None:
    mem, base = space()
    mem.map(base, PAGE_SIZE, "r")
    with pytest.raises(KmemsimValueError, match="no region starts at"):
        mem.unmap(base + 8)
    with pytest.raises(KmemsimValueError, match="no region starts at"):
        mem.unmap(base + PAGE_SIZE)
    with pytest.raises(KmemsimTypeError, match="start"):
        mem.unmap(None)  # type: ignore[arg-type]
    assert mem.is_mapped(base, PAGE_SIZE)


# ---------------------------------------------------------------- byte access
def test_read_and_write_across_adjacent_regions() -> None:
    mem, base = space()
    mem.map(base, PAGE_SIZE, "a")
    mem.map(base + PAGE_SIZE, PAGE_SIZE, "b")
    data = bytes(range(32))
    mem.write(base + PAGE_SIZE - 16, data)
    assert mem.read(base + PAGE_SIZE - 16, 32) == data
    assert mem.read(base + PAGE_SIZE, 16) == data[16:]
    # A word that straddles the boundary is one word.
    mem.write_word(base + PAGE_SIZE - 4, 0x1122334455667788)
    assert mem.read_word(base + PAGE_SIZE - 4) == 0x1122334455667788
    assert mem.read(base + PAGE_SIZE, 4) == bytes.fromhex("44332211")


def test_write_that_would_fault_writes_nothing() -> None:
    mem, base = space()
    mem.map(base, PAGE_SIZE, "a")
    with pytest.raises(PageFault) as exc:
        mem.write(base + PAGE_SIZE - 4, b"\xff" * 8)
    assert exc.value.address == base + PAGE_SIZE  # the first unmapped byte
    assert exc.value.write
    assert mem.read(base + PAGE_SIZE - 4, 4) == bytes(4)


def test_read_zero_bytes_and_bytes_like_writes() -> None:
    mem, base = space()
    mem.map(base, 64, "r")
    assert mem.read(base, 0) == b""
    mem.write(base, bytearray(b"ab"))
    mem.write(base + 2, memoryview(b"cd"))
    assert mem.read(base, 4) == b"abcd"
    with pytest.raises(KmemsimTypeError, match="data must be bytes-like"):
        mem.write(base, "ab")  # type: ignore[arg-type]
    with pytest.raises(KmemsimValueError, match="n must be at least 0"):
        mem.read(base, -1)


def test_fill_is_memset_and_checks_the_byte() -> None:
    mem, base = space()
    mem.map(base, 64, "r")
    mem.fill(base + 8, 16, 0x6B)
    assert mem.read(base, 32) == bytes(8) + b"\x6b" * 16 + bytes(8)
    with pytest.raises(KmemsimValueError, match="byte"):
        mem.fill(base, 8, 256)
    with pytest.raises(KmemsimTypeError, match="byte"):
        mem.fill(base, 8, b"x")  # type: ignore[arg-type]
    with pytest.raises(KmemsimValueError, match="size"):
        mem.fill(base, -1, 0)


def test_addresses_wider_than_a_word_are_refused() -> None:
    mem, _ = space(I386)
    with pytest.raises(KmemsimValueError, match="addr must be at most 0xffffffff"):
        mem.read(1 << 32, 4)
    mem64, _ = space()
    with pytest.raises(KmemsimValueError, match="addr"):
        mem64.write(1 << 64, b"x")
    with pytest.raises(KmemsimValueError, match="addr"):
        mem64.read_word(1 << 70)


# ---------------------------------------------------------------- word access
@pytest.mark.parametrize("arch", ARCHES.values(), ids=ARCH_NAMES)
def test_words_are_little_endian_and_word_sized(arch: Arch) -> None:
    mem, base = space(arch)
    mem.map(base, PAGE_SIZE, "r")
    ws = arch.word_size
    value = int.from_bytes(bytes(range(1, ws + 1)), "big")  # 0x0102...
    mem.write_word(base, value)
    assert mem.read(base, ws) == bytes(range(ws, 0, -1))  # least significant byte first
    assert mem.read(base + ws, 1) == b"\0"  # exactly one word written
    assert mem.read_word(base) == value
    mem.write(base + 3 * ws, bytes(range(0x10, 0x10 + ws)))
    assert mem.read_word(base + 3 * ws) == int.from_bytes(bytes(range(0x10, 0x10 + ws)),
                                                          "little")
    # Unaligned words are fine for read_word/write_word (not for a scan).
    mem.write_word(base + 5, arch.word_mask)
    assert mem.read_word(base + 5) == arch.word_mask
    assert mem.read(base + 5 + ws, 1) == b"\0"


def test_i386_words_are_four_bytes() -> None:
    mem, base = space(I386)
    mem.map(base, 64, "r")
    mem.write_word(base, 0xC0DE_CAFE)
    assert mem.read(base, 8) == bytes.fromhex("fecadec000000000")
    with pytest.raises(KmemsimValueError, match="32-bit word"):
        mem.write_word(base, 1 << 32)


@pytest.mark.parametrize("arch", ARCHES.values(), ids=ARCH_NAMES)
def test_negative_values_wrap(arch: Arch) -> None:
    mem, base = space(arch)
    mem.map(base, 64, "r")
    bits = 8 * arch.word_size
    mem.write_word(base, -1)
    assert mem.read_word(base) == arch.word_mask
    assert mem.read(base, arch.word_size) == b"\xff" * arch.word_size
    mem.write_word(base, -(1 << (bits - 1)))  # the most negative long
    assert mem.read_word(base) == 1 << (bits - 1)
    mem.write_word(base, -4096)  # ERR_PTR(-4096)
    assert mem.read_word(base) == arch.word_mask - 4095


@pytest.mark.parametrize("arch", ARCHES.values(), ids=ARCH_NAMES)
def test_too_large_values_are_refused(arch: Arch) -> None:
    mem, base = space(arch)
    mem.map(base, 64, "r")
    bits = 8 * arch.word_size
    mem.write_word(base, 0x5A)
    for bad in (1 << bits, -(1 << (bits - 1)) - 1, 1 << 100):
        with pytest.raises(KmemsimValueError, match=f"does not fit in a {bits}-bit word"):
            mem.write_word(base, bad)
    assert mem.read_word(base) == 0x5A  # untouched
    with pytest.raises(KmemsimTypeError, match="value"):
        mem.write_word(base, "1")  # type: ignore[arg-type]
    with pytest.raises(KmemsimTypeError, match="value"):
        mem.write_word(base, True)


# ---------------------------------------------------------------------- faults
def test_fault_is_a_kernel_oops_and_a_kmemsim_error() -> None:
    assert issubclass(PageFault, KernelOops)
    assert issubclass(PageFault, KmemsimError)
    assert not issubclass(PageFault, LookupError)  # never a bare IndexError/KeyError


@pytest.mark.parametrize("write", [False, True], ids=["read", "write"])
def test_unmapped_access_oopses_with_the_x86_64_wording(write: bool) -> None:
    k = Kernel()
    addr = 0xFFFF_8880_DEAD_0000  # direct map, never handed out
    access = (lambda: k.memory.write_word(addr, 1)) if write else (
        lambda: k.memory.read_word(addr))
    with pytest.raises(PageFault) as exc:
        access()
    e = exc.value
    assert e.lines[0] == "BUG: unable to handle page fault for address: ffff8880dead0000"
    assert e.address == addr
    assert e.write is write
    kind, code = ("write", "0x0002") if write else ("read", "0x0000")
    assert e.lines[1] == f"#PF: supervisor {kind} access in kernel mode"
    assert e.lines[2] == f"#PF: error_code({code}) - not-present page"
    assert e.lines[3].startswith("Oops: ")
    assert str(e) == e.lines[0]
    # Every line of the oops is in the kernel log, in order, then the CPU line.
    log = [line.split("] ", 1)[1] for line in k.dmesg().splitlines()]
    i = log.index(e.lines[0])
    assert log[i:i + len(e.lines)] == e.lines
    assert log[i + len(e.lines)].startswith("CPU: 0 UID: 0 PID: 1024 Comm: bash")
    assert_kernel_works(k)


def test_null_dereference_prints_sixteen_hex_digits() -> None:
    k = Kernel()
    with pytest.raises(PageFault) as exc:
        k.memory.read(0x10, 8)
    assert exc.value.lines[0] == "BUG: unable to handle page fault for address: 0000000000000010"
    assert_kernel_works(k)


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_guard_page_after_a_vmalloc_area_faults(arch: str) -> None:
    k = Kernel(arch=arch)
    a = k.arch
    p = k.vmalloc(3 * PAGE_SIZE + 1)  # four pages, then the guard page
    end = p + 4 * PAGE_SIZE
    k.memory.write_word(end - a.word_size, -1)  # the last word is usable
    assert k.memory.is_mapped(p, 4 * PAGE_SIZE)
    assert not k.memory.is_mapped(end)
    with pytest.raises(PageFault) as exc:
        k.memory.read_word(end)
    assert exc.value.address == end
    with pytest.raises(PageFault):
        k.memory.write(end - 2, b"\0" * 4)  # runs off the end into the guard page
    assert k.memory.read_word(end - a.word_size) == a.word_mask  # nothing was written
    first = {
        "x86_64": f"BUG: unable to handle page fault for address: {end:016x}",
        "i386": f"BUG: unable to handle page fault for address: {end:08x}",
        "arm64": f"Unable to handle kernel paging request at virtual address {end:016x}",
    }[arch]
    assert exc.value.lines[0] == first
    assert first in k.dmesg()
    assert_kernel_works(k)
    k.vfree(p)
    assert_kernel_works(k)


def test_arm64_fault_wording_and_untagged_address() -> None:
    k = Kernel(arch="arm64")
    with pytest.raises(PageFault) as exc:
        k.memory.read_word(0x10)
    # untagged_addr() sign-extends bit 55: a NULL dereference prints as a low address.
    assert exc.value.lines[0] == (
        "Unable to handle kernel paging request at virtual address 0000000000000010")
    assert exc.value.address == 0x10
    assert "Internal error: Oops" in exc.value.lines[-1]
    assert exc.value.lines[0] in k.dmesg()
    assert_kernel_works(k)


def test_fault_in_a_bare_address_space_needs_no_kernel() -> None:
    mem, base = space()
    with pytest.raises(PageFault) as exc:
        mem.read(base, 1)
    assert exc.value.lines[0].endswith(f"{base:016x}")


def test_the_on_fault_callback_sees_every_fault() -> None:
    seen: list[PageFault] = []
    mem = AddressSpace(X86_64, on_fault=seen.append)
    with pytest.raises(PageFault) as exc:
        mem.read_word(0x1000)
    assert seen == [exc.value]


# ----------------------------------------------------------------------- words
def _brute_words(mem: AddressSpace, start: int, end: int) -> list[tuple[int, int]]:
    """What scan_block reads, one word at a time: aligned, whole, mapped."""
    ws = mem.arch.word_size
    out = []
    p = -(-start // ws) * ws
    while p + ws <= end:
        if mem.is_mapped(p, ws):
            out.append((p, mem.read_word(p)))
        p += ws
    return out


def test_words_returns_only_aligned_whole_words() -> None:
    mem, base = space()
    mem.map(base, 64, "r")
    for i in range(8):
        mem.write_word(base + 8 * i, 0x100 + i)
    assert mem.words(base, base + 64) == [(base + 8 * i, 0x100 + i) for i in range(8)]
    # An unaligned start rounds up, a partial last word is skipped.
    assert mem.words(base + 1, base + 63) == [(base + 8 * i, 0x100 + i) for i in range(1, 7)]
    assert mem.words(base + 8, base + 15) == []
    assert mem.words(base + 9, base + 24) == [(base + 16, 0x102)]
    assert mem.words(base + 16, base + 16) == []
    assert mem.words(base + 32, base + 16) == []  # empty when end < start


def test_words_skips_unmapped_words_and_joins_adjacent_regions() -> None:
    mem, base = space()
    mem.map(base, 16, "a")
    mem.map(base + 16, 16, "b")  # adjacent
    mem.map(base + 48, 16, "c")  # a 16-byte hole before it
    for off in range(0, 64, 8):
        if mem.is_mapped(base + off, 8):
            mem.write_word(base + off, off)
    got = mem.words(base, base + 64)
    assert got == [(base + off, off) for off in (0, 8, 16, 24, 48, 56)]


def test_words_reads_a_word_straddling_an_unaligned_region_boundary() -> None:
    mem, base = space()
    mem.map(base, 12, "a")  # ends in the middle of the second word
    mem.map(base + 12, 20, "b")
    mem.write_word(base + 8, 0x1111_2222_3333_4444)
    assert mem.words(base, base + 32) == _brute_words(mem, base, base + 32)
    assert (base + 8, 0x1111_2222_3333_4444) in mem.words(base, base + 32)


def test_i386_words_step_by_four() -> None:
    mem, base = space(I386)
    mem.map(base, 16, "r")
    mem.write(base, bytes(range(16)))
    assert mem.words(base + 2, base + 16) == [
        (base + 4, 0x07060504), (base + 8, 0x0B0A0908), (base + 12, 0x0F0E0D0C)]


@settings(max_examples=60, deadline=None)
@given(
    arch=st.sampled_from(list(ARCHES.values())),
    layout=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 40)), min_size=1, max_size=5),
    start=st.integers(0, 260),
    length=st.integers(0, 260),
    seed=st.binary(min_size=256, max_size=256),
)
def test_words_matches_a_word_by_word_read(
    arch: Arch, layout: list[tuple[int, int]], start: int, length: int, seed: bytes
) -> None:
    """Any mix of gaps, unaligned and adjacent regions reads like the brute force."""
    mem, base = space(arch)
    cur = base
    for gap, size in layout:
        cur += gap
        mem.map(cur, size, "r", data=bytearray(seed[(cur - base) % 200:][:size].ljust(size, b"\0")))
        cur += size
    assert mem.words(base + start, base + start + length) == _brute_words(
        mem, base + start, base + start + length)


# ------------------------------------------------------------------ arm64 tags
def _tag(addr: int, tag: int) -> int:
    return (addr & ((1 << 56) - 1)) | (tag << 56)


def test_arm64_top_byte_tags_are_ignored_on_access() -> None:
    mem, base = space(ARM64)
    mem.map(base, PAGE_SIZE, "r")
    tagged = _tag(base + 8, 0xF3)
    mem.write_word(tagged, 0xABCD)
    assert mem.read_word(base + 8) == 0xABCD
    assert mem.read_word(_tag(base + 8, 0x0B)) == 0xABCD
    mem.write(_tag(base, 0x42), b"xy")
    assert mem.read(base, 2) == b"xy"
    mem.fill(_tag(base + 16, 0x01), 4, 0x7F)
    assert mem.read(base + 16, 4) == b"\x7f" * 4
    assert mem.is_mapped(_tag(base, 0xAA), PAGE_SIZE)
    assert mem.region_at(_tag(base + 100, 0x12)) is mem.region_at(base)
    # words() untags too and reports untagged addresses.
    assert mem.words(_tag(base, 0x3C), _tag(base + 24, 0x3C)) == mem.words(base, base + 24)


def test_arm64_tagged_kernel_pointers_reach_real_objects() -> None:
    k = Kernel(arch="arm64")
    p = k.kmalloc(64)
    k.memory.write_word(_tag(p, 0xF2), 0x77)
    assert k.memory.read_word(p) == 0x77
    assert k.kmemleak.find(_tag(p, 0xF2)).pointer == p
    assert_kernel_works(k)


def test_x86_64_does_not_untag() -> None:
    """On x86 a changed top byte is a different (non-canonical) address: it faults."""
    mem, base = space(X86_64)
    mem.map(base, PAGE_SIZE, "r")
    with pytest.raises(PageFault) as exc:
        mem.read_word(_tag(base, 0x00))
    assert exc.value.address == _tag(base, 0x00)


def test_public_names() -> None:
    assert kmemsim.PageFault is PageFault
