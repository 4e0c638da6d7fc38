"""The fast engine's checksum pass skips the CRC of an object no write has touched.

The memory dates its writes per page (``Region.page_gen``) and the store
dates each checksum (``ObjectStore.crc_gen``).  A skipped CRC must never hide
a change: every way of writing memory dates its pages, and the fast engine
spares exactly what the reference engine spares.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmemsim import Kernel
from kmemsim.layout import X86_64
from kmemsim.memory import GEN_PAGE_SHIFT, AddressSpace

KMEMLEAK = "/sys/kernel/debug/kmemleak"


#: Each way of writing memory, aimed at the leak's bytes.
WRITERS: dict[str, Callable[[Kernel, int], None]] = {
    "write": lambda k, p: k.memory.write(p + 5, b"\x01\x02\x03"),
    "write_word": lambda k, p: k.memory.write_word(p + 8, 0x1234),
    "write_words": lambda k, p: k.memory.write_words([p + 16, p + 24], [1, 2]),
    "write_each": lambda k, p: k.memory.write_each([p + 40], b"\xaa\xbb"),
    "fill": lambda k, p: k.memory.fill(p, 64, 0x5A),
    "store": lambda k, p: k.store(p + 48, 0x4242),
}


def _leak(engine: str) -> tuple[Kernel, int]:
    """A leaked 64-byte kmalloc, already seen white once (its checksum settled)."""
    k = Kernel(seed=3)
    k.kmemleak.default_engine = engine
    p = k.kmalloc(64)
    k.memory.write_word(p, 0x1111)
    k.sleep(6)
    k.write(KMEMLEAK, "scan")  # white, checksum 0 -> its CRC: changed, so spared
    assert not k.kmemleak.last_scan.unreferenced  # type: ignore[union-attr]
    return k, p


@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_checksum_pass_sees_every_kind_of_write(engine: str, writer: str) -> None:
    k, p = _leak(engine)
    WRITERS[writer](k, p)  # the leak's bytes change between two scans
    k.write(KMEMLEAK, "scan")
    last = k.kmemleak.last_scan
    assert last is not None
    assert p in last.checksum_spared  # changed: spared again, as the kernel does
    assert not last.unreferenced


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_checksum_pass_reports_an_untouched_leak(engine: str) -> None:
    k, p = _leak(engine)
    k.kmalloc(64)  # writes elsewhere (another object) do not count against this one
    k.memory.write_word(k.kmalloc(32), 7)
    k.write(KMEMLEAK, "scan")
    last = k.kmemleak.last_scan
    assert last is not None
    assert [r.pointer for r in last.unreferenced] == [p]


def test_checksum_dates_do_not_survive_a_checksum_set_by_hand() -> None:
    k, p = _leak("fast")
    obj = k.kmemleak.find(p)
    assert obj is not None
    obj.checksum = 0  # (a checksum from elsewhere: its date is void)
    k.write(KMEMLEAK, "scan")
    last = k.kmemleak.last_scan
    assert last is not None
    assert p in last.checksum_spared


@st.composite
def write_histories(draw: st.DrawFn) -> tuple[list[tuple[str, int, int]], int,
                                              list[tuple[int, int]]]:
    size = 6 * 4096
    writes = draw(st.lists(st.tuples(st.sampled_from(["write", "words", "each"]),
                                     st.integers(0, size - 1), st.integers(1, 9000)),
                           max_size=12))
    cut = draw(st.integers(0, len(writes)))
    ranges = draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(1, 9000)),
                           min_size=1, max_size=20))
    return writes, cut, [(o, min(n, size - o)) for o, n in ranges]


@given(write_histories())
def test_written_since_is_true_exactly_for_ranges_a_later_write_reached(
        case: tuple[list[tuple[str, int, int]], int, list[tuple[int, int]]]) -> None:
    writes, cut, ranges = case
    mem = AddressSpace(X86_64)
    base = 0x100000
    region = mem.map(base, 6 * 4096, "r")
    touched: set[int] = set()  # pages written after the cut
    gen = mem.write_gen
    for i, (how, off, n) in enumerate(writes):
        if i == cut:
            gen = mem.write_gen
        n = min(n, region.end - base - off)
        if how == "write":
            mem.write(base + off, bytes(n))
            pages = range(off >> GEN_PAGE_SHIFT, ((off + n - 1) >> GEN_PAGE_SHIFT) + 1)
        elif how == "words":
            word = off & ~7
            mem.write_words([base + word], [n])
            pages = range(word >> GEN_PAGE_SHIFT, (word >> GEN_PAGE_SHIFT) + 1)
        else:
            mem.write_each([base + off], b"\x01" * n)
            pages = range(off >> GEN_PAGE_SHIFT, ((off + n - 1) >> GEN_PAGE_SHIFT) + 1)
        if i >= cut:
            touched.update(pages)
    if cut == len(writes):
        gen = mem.write_gen
    offs = np.array([o for o, _ in ranges], dtype=np.int64)
    sizes = np.array([n for _, n in ranges], dtype=np.int64)
    got = region.written_since(offs, sizes, np.full(len(ranges), gen, dtype=np.int64))
    want = [any(pg in touched for pg in range(o >> GEN_PAGE_SHIFT,
                                              ((o + n - 1) >> GEN_PAGE_SHIFT) + 1))
            for o, n in ranges]
    assert got.tolist() == want


def test_a_new_mapping_dates_its_pages() -> None:
    mem = AddressSpace(X86_64)
    gen = mem.write_gen
    region = mem.map(0x100000, 4096, "r")
    assert region.written_since(np.array([0]), np.array([8]), np.array([gen])).tolist() == [True]
    assert region.written_since(np.array([0]), np.array([8]),
                                np.array([mem.write_gen])).tolist() == [False]


def _as_saved_before_dates(k: Kernel) -> None:
    """Give *k* the shape a save from before this change restores to: 64-bit columns, no
    checksum dates, no write dates."""
    store = k.kmemleak.store
    for name, _ in store.COLUMNS:
        col = getattr(store, name)
        setattr(store, name, array("Q" if col.typecode in "QI" else "q", col))
    del store.crc_gen
    for region in k.memory.regions():
        del region.page_gen
    del k.memory.write_gen


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_a_kernel_restored_from_an_older_save_scans_alike(engine: str, tmp_path: Any) -> None:
    """Older saves restore without the dates and with 64-bit columns: all undated, the
    same scans."""
    kernels = []
    for old in (False, True):
        k, p = _leak(engine)
        k.memory.write_word(p + 8, 99)
        if old:
            _as_saved_before_dates(k)
            k.save(tmp_path / "old.kmemsim")
            k = Kernel.load(tmp_path / "old.kmemsim")
        k.kmemleak.default_engine = engine
        for _ in range(3):
            k.write(KMEMLEAK, "scan")
            k.memory.write_word(k.kmalloc(64), 5)  # new regions and writes after the load
        kernels.append(k)
    new, old = kernels
    assert old.read(KMEMLEAK) == new.read(KMEMLEAK)
    assert [(o.pointer, o.checksum, o.count, o.flags) for o in old.kmemleak.object_list.values()] \
        == [(o.pointer, o.checksum, o.count, o.flags) for o in new.kmemleak.object_list.values()]
