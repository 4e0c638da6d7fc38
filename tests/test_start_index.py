"""The fast scan's table lookup of object starts gives exactly ``searchsorted``'s answer."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from kmemsim.kmemleak.fastscan import StartIndex

U64 = np.uint64
#: Starts like a kernel's: dense clusters (slab pages) far apart (direct map, kernel image,
#: vmalloc space), sometimes at the very top of the address space.
CLUSTER_BASES = [0, 0x1000, 0xFFFF_8880_0000_0000, 0xFFFF_C900_0000_0000,
                 0xFFFF_FFFF_8200_0000, 0xFFFF_FFFF_FFFF_F000]


@st.composite
def starts_and_values(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    starts: set[int] = set()
    for _ in range(draw(st.integers(0, 4))):
        base = draw(st.sampled_from(CLUSTER_BASES))
        step = draw(st.sampled_from([8, 16, 64, 256, 4096, 1 << 20, 1 << 25]))
        count = draw(st.integers(1, 60))
        offsets = draw(st.lists(st.integers(0, 64), min_size=count, max_size=count))
        pos = base
        for off in offsets:
            pos += step * (off + 1) // 8 * 8 or 8
            if pos < 1 << 64:
                starts.add(pos)
    s = np.array(sorted(starts), dtype=U64)
    probes = [int(x) + d for x in s.tolist() for d in (-1, 0, 1, 7, 255, 256)]
    probes += draw(st.lists(st.integers(0, (1 << 64) - 1), max_size=40))
    probes = [p for p in probes if 0 <= p < 1 << 64]
    return s, np.array(probes, dtype=U64)


@given(starts_and_values())
def test_floor_matches_searchsorted(case: tuple[np.ndarray, np.ndarray]) -> None:
    starts, values = case
    want = np.searchsorted(starts, values, side="right").astype(np.int64) - 1
    assert StartIndex(starts).floor(values).tolist() == want.tolist()


def test_floor_on_a_dense_heap_uses_the_table_and_matches() -> None:
    rng = np.random.default_rng(1)
    sizes = rng.choice([8, 16, 32, 64, 128, 256, 512, 4096], size=20_000)
    starts = (U64(0xFFFF_8880_0400_0000) + np.cumsum(sizes).astype(U64)).astype(U64)
    starts = np.concatenate((starts, np.array([0xFFFF_FFFF_8200_0000], dtype=U64)))
    index = StartIndex(starts)
    assert index.table is not None            # dense: the table, not the fallback
    values = np.concatenate((starts - U64(1), starts, starts + U64(3),
                             rng.integers(0, 1 << 63, size=1000).astype(U64) * U64(2)))
    want = np.searchsorted(starts, values, side="right").astype(np.int64) - 1
    assert index.floor(values).tolist() == want.tolist()


def test_floor_on_sparse_starts_falls_back_to_binary_search() -> None:
    starts = np.arange(1, 200, dtype=np.uint64) * U64(1 << 23)   # cells would outnumber starts
    index = StartIndex(starts)
    assert index.table is None
    values = starts + U64(5)
    assert index.floor(values).tolist() == list(range(199))
    assert StartIndex(np.zeros(0, dtype=U64)).floor(values).tolist() == [-1] * 199


def test_cells_are_sized_to_the_starts_and_hold_few_of_them() -> None:
    # 32-byte objects packed tight: the smallest cells (16 bytes) fit the budget
    dense = U64(0xFFFF_8880_0000_0000) + np.arange(50_000, dtype=U64) * U64(32)
    assert int(StartIndex(dense).shift) == StartIndex.MIN_SHIFT
    # 1 KiB apart: cells grow until there are at most CELLS_PER_START per start
    spread = U64(0xFFFF_8880_0000_0000) + np.arange(50_000, dtype=U64) * U64(1024)
    index = StartIndex(spread)
    assert index.table is not None
    cells = int(index.cells.sum())
    assert cells <= StartIndex.CELLS_PER_START * len(spread) + 4096
    assert cells > StartIndex.CELLS_PER_START * len(spread) // 4  # not coarser than needed
    values = spread + U64(1023)
    assert index.floor(values).tolist() == list(range(50_000))
