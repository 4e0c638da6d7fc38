"""``truth.tool_views``: LeakSanitizer, Valgrind memcheck, kmemleak and the truth on one heap.

Each hand-built heap is one where the tools disagree, and every row is
asserted whole.  Conventions as in ``test_scan_rules.py``: no automatic
scans, ``kzalloc`` objects, ``k.sleep(6)`` to pass the minimum age, two
scans so that objects holding pointers (checksum recorded by the first)
can be reported.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmemsim import Kernel
from kmemsim.truth import Interior, ToolViews, tool_views
from kmemsim.truth.views import COLUMNS, _gather, _read_words

ARCHES = ("x86_64", "arm64", "i386")
NO_AUTO_SCAN = {"CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN": False}
_names = itertools.count()

Row = tuple[str, str, str, bool, str, str | None]
"""(lsan, valgrind, kmemleak colour, listed, truth, judge verdict)."""

KEPT: Row = ("reachable", "still reachable", "gray", False, "reachable", "true negative")
LISTED_DIRECT: Row = ("direct", "definitely lost", "white", True, "leaked", "true positive")
LISTED_INDIRECT: Row = ("indirect", "indirectly lost", "white", True, "leaked", "true positive")


def boot(arch: str = "x86_64") -> Kernel:
    return Kernel(arch=arch, config=NO_AUTO_SCAN)


def static(k: Kernel, nwords: int = 4) -> int:
    return k.define_static(f"views_root_{next(_names)}", nwords * k.arch.word_size)


def scan_twice(k: Kernel) -> None:
    k.sleep(6)
    k.kmemleak.scan()
    k.kmemleak.scan()


def row(views: ToolViews, p: int) -> Row:
    r = views[p]
    return (r.lsan, r.valgrind, r.kmemleak, r.listed, r.truth, r.verdict)


# ------------------------------------------------------------- (1) interior pointer
@pytest.mark.parametrize("arch", ARCHES)
def test_interior_pointer_from_a_static(arch: str) -> None:
    """LSan counts an interior pointer like a start pointer; memcheck calls the block
    possibly lost, and so is everything it alone reaches, start pointers or not."""
    k = boot(arch)
    p, child = k.kzalloc(64), k.kzalloc(64)
    k.store(static(k), p, encoding=Interior(offset=16))
    k.store(p, child)
    scan_twice(k)
    v = tool_views(k)
    assert row(v, p) == ("reachable", "possibly lost", "gray", False, "reachable",
                         "true negative")
    assert row(v, child) == ("reachable", "possibly lost", "gray", False, "reachable",
                             "true negative")


def test_start_pointer_upgrades_possibly_lost_and_rescans() -> None:
    """A start pointer found after an interior one makes the block still reachable, and
    what it holds is marked again (memcheck rescans a block whose state improves)."""
    k = boot()
    p, child = k.kzalloc(64), k.kzalloc(64)
    roots = static(k)
    k.store(roots, p, encoding=Interior(offset=8))
    k.store(roots + k.arch.word_size, p)
    k.store(p, child)
    v = tool_views(k)
    assert (v[p].valgrind, v[child].valgrind) == ("still reachable", "still reachable")


# ------------------------------------------------------------------- (2) leaked tree
@pytest.mark.parametrize("arch", ARCHES)
def test_leaked_tree_root_direct_children_indirect(arch: str) -> None:
    k = boot(arch)
    ws = k.arch.word_size
    root, left, right, leaf = (k.kzalloc(64) for _ in range(4))
    k.store(root, left)
    k.store(root + ws, right, encoding=Interior(offset=8))   # any pointer makes it indirect
    k.store(left, leaf)
    scan_twice(k)
    v = tool_views(k)
    assert row(v, root) == LISTED_DIRECT
    for p in (left, right, leaf):
        assert row(v, p) == LISTED_INDIRECT


def test_leaked_cycle_lsan_all_indirect_memcheck_has_a_leader() -> None:
    """LSan: every block of a lost cycle is pointed to by another lost block, so all are
    indirect.  memcheck: the clique leader (lowest address) stays definitely lost."""
    k = boot()
    a, b, c = k.kzalloc(64), k.kzalloc(64), k.kzalloc(64)
    assert a < b < c
    k.store(b, c)
    k.store(c, a)
    k.store(a, b)
    k.store(a + 8, a)   # a self-reference makes nothing indirect
    v = tool_views(k)
    assert [v[p].lsan for p in (a, b, c)] == ["indirect"] * 3
    assert [v[p].valgrind for p in (a, b, c)] == ["definitely lost", "indirectly lost",
                                                   "indirectly lost"]
    lone = k.kzalloc(64)
    k.store(lone, lone)
    v = tool_views(k)
    assert (v[lone].lsan, v[lone].valgrind) == ("direct", "definitely lost")


# ----------------------------------------------------------- (3) pointer in a page
def test_pointer_kept_only_in_an_alloc_pages_page() -> None:
    """Page-allocator memory is client memory to memcheck (a root), invisible to LSan
    (neither a block nor a root, like mmap'd memory) and never scanned by kmemleak."""
    k = boot()
    page = k.alloc_pages(0)
    x = k.kzalloc(64)
    k.store(page, x)
    k.store(static(k), page)
    scan_twice(k)
    v = tool_views(k)
    assert row(v, x) == ("direct", "still reachable", "white", True, "reachable",
                         "false positive")
    assert row(v, page) == ("untracked", "root", "untracked", False, "reachable", None)


def test_struct_page_is_a_memcheck_root_only() -> None:
    k = boot()
    x = k.kzalloc(64)
    pa = k.page_allocator
    k.memory.write_word(pa.struct_page(pa.virt_to_pfn(k.alloc_pages(0))) + 24, x)
    scan_twice(k)
    assert row(tool_views(k), x) == ("direct", "still reachable", "gray", False, "leaked",
                                     "false negative")


# ----------------------------------------------------------- (4) stale stack word
@pytest.mark.parametrize("arch", ARCHES)
def test_stale_stack_word_keeps_a_leak_for_every_tool(arch: str) -> None:
    """The frame that held the only reference returned; a new frame now covers the slot
    without writing it (an uninitialised local).  Every conservative tool keeps the
    object, by the same word; the truth says it leaked."""
    k = boot(arch)
    x = k.kzalloc(64)
    with k.stack_frame(2) as old:
        k.store(old.slot(0), x)
    with k.stack_frame(2) as live:
        assert live.slot(0) == old.slot(0)
        assert k.memory.read_word(live.slot(0)) == x
        scan_twice(k)
        v = tool_views(k)
    assert row(v, x) == ("reachable", "still reachable", "gray", False, "leaked",
                         "false negative")


# --------------------------------------------------------------------- (5) per-CPU
@pytest.mark.parametrize("arch", ARCHES)
def test_percpu_block_by_cookie(arch: str) -> None:
    """A per-CPU block is found by its cookie and scanned through every CPU's copy."""
    k = boot(arch)
    held, lost = k.alloc_percpu(16), k.alloc_percpu(16)
    inner = k.alloc_percpu(32)
    x = k.kzalloc(64)
    roots = static(k)
    k.store(roots, held)
    k.store(roots + k.arch.word_size, inner, encoding=Interior(offset=8))
    k.store(k.per_cpu_ptr(held, k.ncpus - 1) + k.arch.word_size, x)  # only the last CPU's copy
    scan_twice(k)
    v = tool_views(k)
    assert row(v, held) == KEPT
    assert row(v, x) == KEPT
    assert row(v, inner) == ("reachable", "possibly lost", "gray", False, "reachable",
                             "true negative")
    assert row(v, lost) == LISTED_DIRECT
    assert v[held].kind == "percpu"
    assert v[held].size == 16


# ------------------------------------------------------------- other disagreements
def test_vmalloc_leak_is_held_by_allocator_metadata() -> None:
    """``vm_struct.addr`` holds a vmalloc block's start and ``vmap_area_list`` holds the
    metadata (through an interior list pointer): LSan keeps the leak, memcheck calls it
    possibly lost; kmemleak (min_count 2) and the truth see the leak."""
    k = boot()
    p = k.vzalloc(100)
    scan_twice(k)
    assert row(tool_views(k), p) == ("reachable", "possibly lost", "white", True, "leaked",
                                     "true positive")


def test_module_data_is_a_root() -> None:
    k = boot()
    k.modprobe("article_leak")
    lm = k.modules["article_leak"]
    scan_twice(k)
    v = tool_views(k)
    assert row(v, lm.data) == ("root", "root", "gray", False, "reachable", "true negative")
    assert v[lm.text].lsan == "reachable"
    assert v[lm.text].kind == "module_text"
    leaked = [r for r in v if r.truth == "leaked"]
    assert leaked
    assert all(r.listed for r in leaked)


def test_memblock_block_is_a_kmemleak_root_but_an_lsan_leak() -> None:
    k = boot()
    m = k.memblock_alloc(256)
    scan_twice(k)
    r = tool_views(k)[m]
    assert (r.kind, r.lsan, r.valgrind, r.kmemleak, r.listed, r.truth) == (
        "memblock", "direct", "definitely lost", "gray", False, "leaked")


def test_kmemleak_column_before_and_after_scans() -> None:
    k = boot()
    p = k.kzalloc(64)
    assert tool_views(k)[p].kmemleak == "unscanned"
    scan_twice(k)
    same_jiffy = k.kzalloc(64)                 # after the last scan, in its jiffy
    k.sleep(1)
    q = k.kzalloc(64)                          # after the last scan: no colour yet
    k.kmemleak.kmemleak_ignore(p)
    v = tool_views(k)
    assert (v[p].kmemleak, v[p].listed) == ("black", False)
    for late in (same_jiffy, q):
        assert (v[late].kmemleak, v[late].listed, v[late].verdict) == (
            "unscanned", False, "pending")
    young = k.kzalloc(64)
    k.kmemleak.scan()                          # scanned at once: white, too young to report
    assert (tool_views(k)[young].kmemleak, tool_views(k)[young].listed) == ("white", False)


# --------------------------------------------------------------------------- the value
def test_table_counts_str_and_lookup() -> None:
    k = boot()
    a, b = k.kzalloc(64), k.kzalloc(128)
    k.store(static(k), a)
    scan_twice(k)
    v = tool_views(k)
    assert len(v) == len(k.truth.blocks)
    assert [r.address for r in v] == sorted(k.truth.blocks)
    table = v.table()
    assert all(list(t) == list(COLUMNS) for t in table)
    assert all(type(x) in (int, str, bool, type(None)) for t in table for x in t.values())
    small = v.subset([a, b])
    assert small.table() == [
        {"address": a, "size": 64, "kind": "slab", "lsan": "reachable",
         "valgrind": "still reachable", "kmemleak": "gray", "listed": False,
         "truth": "reachable", "verdict": "true negative"},
        {"address": b, "size": 128, "kind": "slab", "lsan": "direct",
         "valgrind": "definitely lost", "kmemleak": "white", "listed": True,
         "truth": "leaked", "verdict": "true positive"}]
    assert small.counts() == {
        "lsan": {"reachable": 1, "direct": 1},
        "valgrind": {"still reachable": 1, "definitely lost": 1},
        "kmemleak": {"gray": 1, "white": 1, "listed": 1},
        "truth": {"reachable": 1, "leaked": 1}}
    lines = str(small).splitlines()
    assert lines[0].split() == ["address", "size", "kind", "LSan", "Valgrind", "kmemleak",
                                "truth", "judge"]
    assert lines[1].split() == [f"0x{a:x}", "64", "slab", "reachable", "still", "reachable",
                                "gray", "reachable", "TN"]
    assert lines[2].split() == [f"0x{b:x}", "128", "slab", "direct", "definitely", "lost",
                                "white", "listed", "leaked", "TP"]
    assert lines[3].startswith("2 blocks. LSan: 1 reachable, 1 direct.")
    assert lines[4].startswith("legend: ")
    assert len({line.index("slab") for line in lines[1:3]}) == 1  # columns aligned
    assert a in v
    assert 12345 not in v
    assert "x" not in v
    with pytest.raises(KeyError):
        v[a + 8]
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.rows = ()  # type: ignore[misc]
    assert v == tool_views(k)
    assert hash(v) == hash(tool_views(k))
    last = k.kmemleak.last_scan
    assert last is not None
    assert v.scan_jiffies == last.jiffies


@pytest.mark.parametrize("arch", ARCHES)
def test_bulk_reads_match_memory_words(arch: str) -> None:
    """The numpy reader applies ``words()``'s rules: alignment, whole words, holes."""
    k = boot(arch)
    ws = k.arch.word_size
    p = k.vzalloc(100)
    for i in range(0, 4096, ws):
        k.memory.write_word(p + i, (i * 0x01010101) & k.arch.word_mask)
    q = k.kzalloc(64)
    k.store(q, p)
    cases = [(p, p + 4096), (p + 1, p + 4095), (p + 4096 - 2 * ws, p + 4096 + 64),
             (p - 64, p + 16), (q, q + 64), (q + 3, q + 3)]
    for start, end in cases:
        want = [v for _, v in k.memory.words(start, end)]
        assert _read_words(k.memory, k.arch, start, end).tolist() == want
    owners, values = _gather(k.memory, k.arch, [(i, s, e) for i, (s, e) in enumerate(cases)])
    want_pairs = [(i, v) for i, (s, e) in enumerate(cases) for _, v in k.memory.words(s, e)]
    assert sorted(zip(owners.tolist(), values.tolist(), strict=True)) == sorted(want_pairs)


# ---------------------------------------------------------------------- the property
@st.composite
def plain_heaps(draw: st.DrawFn) -> tuple[str, list[int], list[tuple[int, int, int | None]]]:
    """Object sizes, then stores ``(holder, word, target)``: holder -1 is a kernel static,
    a target of ``None`` stores NULL (an edge removed without leaving a stale word)."""
    arch = draw(st.sampled_from(ARCHES))
    sizes = draw(st.lists(st.sampled_from([32, 64, 128]), min_size=1, max_size=10))
    n = len(sizes)
    stores = draw(st.lists(st.tuples(st.integers(-1, n - 1), st.integers(0, 3),
                                     st.one_of(st.none(), st.integers(0, n - 1))),
                           max_size=25))
    return arch, sizes, stores


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_heaps())
def test_plain_heaps_lsan_truth_and_kmemleak_agree(
        heap: tuple[str, list[int], list[tuple[int, int, int | None]]]) -> None:
    """With plain pointers and no stale data, every tool's leak set is the truth's."""
    arch, sizes, stores = heap
    k = boot(arch)
    ws = k.arch.word_size
    objs = [k.kzalloc(s) for s in sizes]
    roots = static(k)
    for holder, word, target in stores:
        slot = (roots if holder < 0 else objs[holder]) + word * ws
        k.store(slot, 0 if target is None else objs[target])
    scan_twice(k)
    v = tool_views(k)
    lsan = {r.address for r in v if r.lsan in ("direct", "indirect")}
    truth = {r.address for r in v if r.truth == "leaked"}
    listed = {r.address for r in v if r.listed}
    memcheck = {r.address for r in v if r.valgrind in ("definitely lost", "indirectly lost")}
    assert lsan == truth == listed == memcheck
    assert truth <= set(objs)
    # Plain pointers and no stale words: the bytes are the edges, so LSan's indirect leaks
    # are exactly the leaked blocks another leaked block holds an edge to.
    held = {e.target_base for h in truth for e in k.truth.out_edges(h) if e.target_base != h}
    held &= truth
    assert {r.address for r in v if r.lsan == "indirect"} == held
    # A direct LSan leak is definitely lost; an indirect one may be a memcheck clique leader.
    for r in v:
        if r.lsan == "indirect":
            assert r.valgrind in ("indirectly lost", "definitely lost")
        if r.lsan == "direct":
            assert r.valgrind == "definitely lost"
