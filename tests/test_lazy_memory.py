"""Lazily zeroed regions: large mappings are anonymous mmaps that cost nothing until
written, behave as bytearrays do everywhere, and save only their written pages."""

from __future__ import annotations

import mmap
import os
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from savefiles import canonical, join, split

from kmemsim import Kernel
from kmemsim.errors import KmemsimFormatError, KmemsimValueError
from kmemsim.layout import X86_64
from kmemsim.memory import LAZY_MIN_BYTES, AddressSpace, zeroed
from kmemsim.persist import dumps, loads

KMEMLEAK = "/sys/kernel/debug/kmemleak"
BASE = 0xFFFF888000100000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------ mapping
def test_large_regions_are_lazy_small_and_given_ones_bytearrays() -> None:
    k = Kernel(seed=1)
    for r in k.memory.regions():
        want = mmap.mmap if r.end - r.start >= LAZY_MIN_BYTES else bytearray
        assert type(r.data) is want, r
    assert any(type(r.data) is mmap.mmap for r in k.memory.regions())
    mem = AddressSpace(X86_64)
    given_data = bytearray(LAZY_MIN_BYTES)
    assert mem.map(BASE, LAZY_MIN_BYTES, "given", data=given_data).data is given_data
    assert type(mem.map(BASE + (1 << 20), LAZY_MIN_BYTES - 4096, "small").data) is bytearray


ops = st.lists(st.tuples(st.sampled_from(["write", "word", "words", "each", "fill"]),
                         st.integers(0, 3 * 4096 - 64), st.binary(min_size=1, max_size=40)),
               max_size=12)


@settings(max_examples=40, deadline=None)
@given(ops)
def test_a_lazy_region_behaves_as_a_bytearray_one(seq: list[tuple[str, int, bytes]]) -> None:
    """The same accesses on a lazy region and on a bytearray one read the same bytes."""
    size = 4 * LAZY_MIN_BYTES
    lazy, eager = AddressSpace(X86_64), AddressSpace(X86_64)
    lazy.map(BASE, size, "r")
    eager.map(BASE, size, "r", data=bytearray(size))
    assert type(next(lazy.regions()).data) is mmap.mmap
    for mem in (lazy, eager):
        for op, off, data in seq:
            a = BASE + off
            if op == "write":
                mem.write(a, data)
            elif op == "word":
                mem.write_word(a, int.from_bytes(data[:8].ljust(8, b"\0"), "little"))
            elif op == "words":
                w = a & ~7
                mem.write_words([w + 8, w], [len(data), off])
            elif op == "each":
                mem.write_each([a, a + 48], data[:8])
            else:
                mem.fill(a, len(data), data[0])
    lz, eg = next(lazy.regions()).data, next(eager.regions()).data
    assert bytes(lz) == bytes(eg)
    assert len(lz) == len(eg) == size
    assert lz[:4096] == eg[:4096]
    assert lz[100] == eg[100]
    assert lazy.words(BASE, BASE + 3 * 4096) == eager.words(BASE, BASE + 3 * 4096)
    assert lazy.read(BASE + 7, 5000) == eager.read(BASE + 7, 5000)
    view = np.frombuffer(lz, dtype="<u8")  # writable, shared
    view[5] = 0xDEADBEEF
    assert lazy.read_word(BASE + 40) == 0xDEADBEEF
    del view
    with memoryview(lz) as mv:
        assert mv.cast("Q")[5] == 0xDEADBEEF
        assert not mv.readonly


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_untouched_simulated_ram_is_not_resident() -> None:
    """Mapping (and reading) 512 MiB costs next to no resident memory; writing costs pages."""
    size = 512 << 20
    mem = AddressSpace(X86_64)
    before = rss_bytes()
    region = mem.map(BASE, size, "big", "direct")
    assert not np.frombuffer(region.data, dtype=np.uint64).any()  # reads map the zero page
    assert rss_bytes() - before < 16 << 20
    mem.fill(BASE + (100 << 20), 64 << 20, 0xA5)
    assert rss_bytes() - before >= 60 << 20


def test_zeroed_sizes() -> None:
    assert bytes(zeroed(LAZY_MIN_BYTES - 1)) == bytes(LAZY_MIN_BYTES - 1)
    m = zeroed(LAZY_MIN_BYTES + 3)
    assert type(m) is mmap.mmap
    assert len(m) == LAZY_MIN_BYTES + 3
    assert not any(m[-8:])


# ------------------------------------------------------------------ save and load
def _lazy_kernel() -> Kernel:
    k = Kernel(cmdline="slub_debug=P", seed=4)
    k.modprobe("article_leak")
    k.sleep(10)
    k.write(KMEMLEAK, "scan")
    return k


def test_lazy_regions_save_only_written_pages_and_load_lazily() -> None:
    k = _lazy_kernel()
    big = k.memory.map(0xFFFFC90010000000, 64 << 20, "big", "other")  # 64 MiB, 3 words written
    for off in (0, 4096 * 7 + 8, (64 << 20) - 8):
        k.memory.write_word(big.start + off, 0x1234 + off)
    data = dumps(k)
    _, doc, _ = split(data)
    runs = [e["runs"] for e in doc["objects"] if e["t"] == "anonmap" and e["size"] == 64 << 20]
    assert len(runs) == 1
    assert [off for off, _ in runs[0]] == [0, 4096 * 7, (64 << 20) - 4096]
    assert len(data) < 1 << 20  # 64 MiB of mostly zeros are not in the file
    k2 = loads(data)
    assert [(r.start, r.end, type(r.data)) for r in k2.memory.regions()] == \
        [(r.start, r.end, type(r.data)) for r in k.memory.regions()]
    assert [bytes(r.data) for r in k2.memory.regions()] == [bytes(r.data) for r in k.memory.regions()]
    for kern in (k, k2):
        kern.sleep(6)
        kern.write(KMEMLEAK, "scan")
    assert k2.read(KMEMLEAK) == k.read(KMEMLEAK) != ""
    assert k2.dmesg() == k.dmesg()
    assert canonical(dumps(k2)) == canonical(dumps(k))


def test_views_of_a_lazy_region_are_restored_as_views() -> None:
    k = Kernel(seed=2)
    region = next(r for r in k.memory.regions() if r.kind == "direct" and type(r.data) is mmap.mmap)
    k.extra = {"view": np.frombuffer(region.data, dtype="<u8", count=4, offset=64),  # type: ignore[attr-defined]
               "mv": memoryview(region.data)[128:160].cast("Q")}
    k2 = loads(dumps(k))
    x = k2.extra  # type: ignore[attr-defined]
    region2 = next(r for r in k2.memory.regions() if r.start == region.start)
    x["view"][0] = 0x1122334455667788
    x["mv"][1] = 7
    assert k2.memory.read_word(region2.start + 64) == 0x1122334455667788
    assert k2.memory.read_word(region2.start + 136) == 7
    assert k.memory.read_word(region.start + 64) == 0


def test_a_version_2_file_with_bytearray_regions_still_loads() -> None:
    """Before lazy regions every region was saved whole as a bytearray (format version 2)."""
    k = _lazy_kernel()
    head, doc, blobs = split(dumps(k))
    index: list[list[int]] = doc["blobs"]
    for e in doc["objects"]:
        if e["t"] == "anonmap":
            whole = bytearray(e["size"])
            for off, b in e["runs"]:
                start, n = index[b]
                whole[off:off + n] = blobs[start:start + n]
            index.append([len(blobs), len(whole)])
            blobs += bytes(whole)
            e.clear()
            e.update(t="bytearray", blob=len(index) - 1)
    k2 = loads(join(dict(head, version=2), doc, blobs))
    assert {type(r.data) for r in k2.memory.regions()} == {bytearray}
    assert [bytes(r.data) for r in k2.memory.regions()] == [bytes(r.data) for r in k.memory.regions()]
    for kern in (k, k2):
        kern.sleep(6)
        kern.write(KMEMLEAK, "scan")
    assert k2.read(KMEMLEAK) == k.read(KMEMLEAK) != ""


@pytest.mark.parametrize("change", [
    lambda e: e["runs"].reverse(),                      # out of order
    lambda e: e["runs"][-1].__setitem__(0, e["size"]),  # past the end
    lambda e: e.__setitem__("size", 0),
    lambda e: e.__setitem__("size", "4096"),
    lambda e: e["runs"].append([0]),
])
def test_malformed_anonmaps_are_refused(change: Any) -> None:
    head, doc, blobs = split(dumps(_lazy_kernel()))
    e = next(e for e in doc["objects"] if e["t"] == "anonmap" and len(e["runs"]) > 1)
    change(e)
    with pytest.raises(KmemsimFormatError):
        loads(join(head, doc, blobs))


# ------------------------------------------------------------------ the top of the address space
def test_store_many_at_the_top_word_of_the_address_space() -> None:
    """A region ending at 2**64: its last word is a plain word (no uint64 overflow or wrap)."""
    top, last = (1 << 64) - 4096, (1 << 64) - 8
    kernels = [Kernel(seed=1), Kernel(seed=1)]
    for k in kernels:
        k.memory.map(top, 4096, "top", "other")
    k, one_by_one = kernels
    assert k._plain_words([last, top])
    assert not k._plain_words([last, last])
    assert not k._plain_words([last + 4])
    a, b = k.kmalloc(64), k.kmalloc(64)
    assert (a, b) == (one_by_one.kmalloc(64), one_by_one.kmalloc(64))
    k.store_many([last, top], [a, b])
    one_by_one.store(last, a)
    one_by_one.store(top, b)
    assert k.memory.read_word(last) == a
    assert k.memory.read_word(top) == b
    assert [bytes(r.data) for r in k.memory.regions()] == \
        [bytes(r.data) for r in one_by_one.memory.regions()]
    assert list(k.truth.edges.items()) == list(one_by_one.truth.edges.items())
    k.memory.write_words([last], [7])
    assert k.memory.read_word(last) == 7
    with pytest.raises(KmemsimValueError):
        k.memory.write_words([top - 8], [1])  # just below the region: unmapped
