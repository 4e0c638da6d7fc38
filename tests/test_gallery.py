"""The gallery of causes: every scenario's verdicts, a few details, random heaps, the CLI.

The expected verdicts are pinned here as well as in the scenarios, so that
changing a scenario's own expectation without noticing fails a test.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmemsim import Kernel
from kmemsim.cli import main
from kmemsim.truth import Encoding, TopByteTag, Xor, judge
from kmemsim.truth.judge import (
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    PENDING,
    TRUE_NEGATIVE,
    TRUE_POSITIVE,
)
from kmemsim.workloads.gallery import (
    GALLERY,
    KMEMLEAK,
    age_and_scan_twice,
    freelist_word,
    run_scenario,
    scan,
    transient_leak_pending,
)

TN, TP, FP, FN = TRUE_NEGATIVE, TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE
ARCHES = ("x86_64", "arm64", "i386")

#: name -> [(label, kind, cause)] on the scenario's default arch.
PINNED: dict[str, list[tuple[str, str, str]]] = {
    "xor_linked_list": [("node A", TN, "reachable"), ("node B", TN, "reachable"),
                        ("node C", FP, "encoding XOR"), ("node D", TN, "reachable"),
                        ("node E", TN, "reachable")],
    "xor_linked_list_not_leak": [(f"node {c}", TN, "reachable") for c in "ABCDE"],
    "page_memory_pointer": [("object", FP, "untracked page memory")],
    "page_memory_registered": [("page", TN, "reachable"), ("object", TN, "reachable")],
    "physical_address": [("buffer", FP, "encoding physical address")],
    "tagged_pointer": [("object", FP, "encoding top-byte tag")],
    "tagged_pointer_arm64": [("object", TN, "reachable")],
    "one_past_the_end": [("buffer", FP, "encoding one past the end")],
    "unaligned_pointer": [("object", FP, "encoding unaligned slot")],
    "no_scan_holder": [("holder", TN, "reachable"), ("child", FP, "no-scan holder")],
    "scan_area_misses_pointer": [("holder", TN, "reachable"),
                                 ("child", FP, "outside scan areas")],
    "scan_area_covers_pointer": [("holder", TN, "reachable"), ("child", TN, "reachable")],
    "unreferenced_holder": [("holder", FP, "encoding XOR"),
                            ("child", FP, "unreferenced holder")],
    "live_local_stack_off": [("object", FP, "stack=off")],
    "stale_stack_slot": [("leak", FN, "stale stack slot")],
    "stale_stack_slot_stack_off": [("leak", TP, "unreachable")],
    "kmemleak_erase_stale_slot": [("leak", TP, "unreachable")],
    "reused_slab_memory": [("new owner", TN, "reachable"),
                           ("leak", FN, "stale bytes of a reused object")],
    "freelist_word": [("owner", TN, "reachable"), ("leak", FN, "freelist word")],
    "integer_collision": [("leak", FN, "integer collision")],
    "clear_hides_later_leak": [("request", FN, "made a root by clear"),
                               ("buffer", FN, "held by a leaked object")],
    "not_leak_hides_a_leak": [("object", FN, "not_leak")],
    "kmemleak_ignore": [("buffer", TN, "reachable")],
    "ignore_hides_a_leak": [("buffer", FN, "ignored")],
    "black_holder": [("holder", TN, "reachable"), ("child", FP, "black holder")],
    "relinked_during_scan": [("entry", FP, "visible reference")],
    "relinked_during_scan_transient": [("entry", TN, "reachable")],
    "relinked_zero_entry_transient": [("entry", FP, "visible reference")],
    "transient_leak_pending": [("node", PENDING, "checksum changed")],
    "young_objects": [("old", TP, "unreachable"), ("young", PENDING, "too young"),
                      ("late", PENDING, "not scanned yet")],
    "leaked_cycle": [("A", TP, "unreachable"), ("B", TP, "unreachable"),
                     ("C", TP, "unreachable")],
    "leaked_tree": [("root", TP, "unreachable"), ("left", TP, "unreachable"),
                    ("right", TP, "unreachable"), ("leaf", TP, "unreachable")],
}

#: Where a scenario's verdicts differ on another arch: (name, arch) -> [(label, kind, cause)].
ARCH_DIFFERENCES = {
    ("tagged_pointer", "arm64"): [("object", TN, "reachable")],
    # A 32-bit word has no top byte to spare: the tag is cut off, the pointer is plain.
    ("tagged_pointer", "i386"): [("object", TN, "reachable")],
    ("tagged_pointer_arm64", "x86_64"): [("object", FP, "encoding top-byte tag")],
}


def test_every_scenario_is_pinned() -> None:
    assert set(PINNED) == set(GALLERY)


@pytest.mark.parametrize("name", list(GALLERY))
def test_scenario_verdicts(name: str) -> None:
    outcome = GALLERY[name].run()
    got = [(e.label, outcome.judgement[e.pointer].kind, outcome.judgement[e.pointer].cause)
           for e in outcome.expectation.objects]
    assert got == PINNED[name]
    assert [(e.label, e.kind, e.cause) for e in outcome.expectation.objects] == PINNED[name]
    assert outcome.mismatches() == []


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name", list(GALLERY))
def test_scenario_on_every_arch(name: str, arch: str) -> None:
    outcome = GALLERY[name].run(arch=arch)
    assert outcome.mismatches() == []
    got = [(e.label, outcome.judgement[e.pointer].kind, outcome.judgement[e.pointer].cause)
           for e in outcome.expectation.objects]
    assert got == ARCH_DIFFERENCES.get((name, arch), PINNED[name])


def test_scenarios_are_described() -> None:
    for name, s in GALLERY.items():
        assert s.name == name
        assert s.title
        assert "\n" not in s.title
        assert len(s.explanation) > 80
        assert "  " not in s.explanation
        assert s.build.__doc__


# ------------------------------------------------------------------ details
def test_stale_stack_slot_names_the_word() -> None:
    o = run_scenario("stale_stack_slot")
    k, v = o.kernel, o.verdict("leak")
    slot = o.expectation.addresses["stale slot"]
    task = k.current
    assert v.kept_by is not None
    assert v.kept_by.region == f"stack of {task.comm}[{task.pid}]"
    assert v.kept_by.address == slot
    assert v.kept_by.offset == slot - task.stack
    assert v.kept_by.value == v.pointer == k.memory.read_word(slot)
    assert slot < task.sp  # below the stack pointer: no live frame owns it
    assert k.truth.history[slot].reason == "frame returned"
    assert v.leak == "direct"


def test_stale_stack_slot_wiped_or_unscanned_is_reported() -> None:
    for name in ("stale_stack_slot_stack_off", "kmemleak_erase_stale_slot"):
        o = run_scenario(name)
        v = o.verdict("leak")
        assert v.reported
        assert v.kept_by is None
        assert f"unreferenced object 0x{v.pointer:016x}" in o.kernel.read(KMEMLEAK)
    wiped = run_scenario("kmemleak_erase_stale_slot")
    assert wiped.kernel.memory.read_word(wiped.expectation.addresses["wiped slot"]) == 0


def test_xor_referrers_carry_their_encoding() -> None:
    o = run_scenario("xor_linked_list")
    k = o.kernel
    nodes = [e.pointer for e in o.expectation.objects]
    v = o.verdict("node C")
    assert {r.edge.holder for r in v.referrers} == {nodes[1], nodes[3]}
    for r in v.referrers:
        enc = r.edge.encoding
        assert isinstance(enc, Xor)
        assert r.why == "encoding XOR"
        assert r.edge.target_base == nodes[2]
        # B's link is A ^ C, D's link is C ^ E: the key is the other neighbour.
        assert enc.key == (nodes[0] if r.edge.holder == nodes[1] else nodes[4])
        assert k.memory.read_word(r.edge.slot) == nodes[2] ^ enc.key
    assert v.path
    assert v.path[0].root == "kernel static"


def test_unreferenced_holder_points_at_the_holder() -> None:
    o = run_scenario("unreferenced_holder")
    holder = o.expectation["holder"].pointer
    (ref,) = o.verdict("child").referrers
    assert ref.edge.holder == holder
    assert ref.why == "unreferenced holder"


def test_leaked_cycle_is_one_group_of_leaders() -> None:
    o = run_scenario("leaked_cycle")
    (group,) = o.judgement.groups
    ptrs = {e.pointer for e in o.expectation.objects}
    assert set(group.leaders) == set(group.members) == ptrs
    assert group.bytes == 64 + 128 + 32
    assert all(o.judgement[p].group == group.ident for p in ptrs)


def test_leaked_tree_has_one_leader() -> None:
    o = run_scenario("leaked_tree")
    (group,) = o.judgement.groups
    assert group.leaders == (o.expectation["root"].pointer,)
    assert set(group.members) == {e.pointer for e in o.expectation.objects}
    assert group.bytes == 288
    assert [o.verdict(x).leak for x in ("root", "left", "right", "leaf")] == \
        ["direct", "indirect", "indirect", "indirect"]
    assert o.kernel.read(KMEMLEAK).count("unreferenced object") == 4


def test_clear_groups_the_hidden_leaks() -> None:
    o = run_scenario("clear_hides_later_leak")
    (group,) = o.judgement.groups
    assert group.leaders == (o.expectation["request"].pointer,)
    assert o.verdict("buffer").leak == "indirect"
    assert o.kernel.read(KMEMLEAK) == ""  # nothing listed: both are gray now


def test_reused_slab_memory_word_survives_the_free_pointer() -> None:
    o = run_scenario("reused_slab_memory")
    k, v = o.kernel, o.verdict("leak")
    owner = o.expectation["new owner"].pointer
    assert k.slab.cache_of(owner).offset != 8
    assert v.kept_by is not None
    assert v.kept_by.address == o.expectation.addresses["stale word"] == owner + 8
    assert v.kept_by.region.startswith(f"slab object 0x{owner:x}")
    assert k.truth.history[owner + 8].reason == "holder freed"


def test_freelist_word_needs_an_unhardened_freelist() -> None:
    o = run_scenario("freelist_word")
    assert o.kernel.config.SLAB_FREELIST_HARDENED is False
    owner = o.expectation["owner"].pointer
    assert o.verdict("leak").kept_by.offset == o.kernel.slab.cache_of(owner).offset
    k = Kernel()  # hardened by default: the word is scrambled and the leak is reported
    e = freelist_word(k)
    assert e.mismatches(judge(k)) == []
    assert e["leak"].kind == TP


def test_transient_leak_makes_the_difference() -> None:
    k = Kernel()
    e = transient_leak_pending(k, annotate=False)
    assert e.mismatches(judge(k)) == []
    assert e["node"].kind == TP
    o = run_scenario("transient_leak_pending")
    assert o.expectation["node"].pointer in o.kernel.kmemleak.last_scan.checksum_spared


def test_relink_race_is_spared_with_transient_leak() -> None:
    raced = run_scenario("relinked_during_scan")
    entry = raced.expectation["entry"].pointer
    assert raced.verdict("entry").reported
    assert entry not in raced.kernel.kmemleak.last_scan.checksum_spared
    fixed = run_scenario("relinked_during_scan_transient")
    assert fixed.expectation["entry"].pointer in fixed.kernel.kmemleak.last_scan.checksum_spared


def test_live_local_frame_is_kept_open() -> None:
    o = run_scenario("live_local_stack_off")
    assert o.expectation.keep is not None
    (ref,) = o.verdict("object").referrers
    assert ref.edge.root is not None
    assert ref.edge.root.startswith("local in a live frame")
    assert ref.edge.slot == o.expectation.addresses["local"]


def test_page_registered_is_a_kmemleak_object() -> None:
    o = run_scenario("page_memory_registered")
    page = o.expectation["page"].pointer
    assert o.kernel.kmemleak.find(page) is not None
    unregistered = run_scenario("page_memory_pointer")
    assert unregistered.kernel.kmemleak.find(unregistered.expectation.addresses["page"]) is None


def test_young_leak_kept_by_a_stale_word_is_pending_not_a_false_negative() -> None:
    """Regression (judge): an object too young to be reported is pending even when gray."""
    k = Kernel()
    with k.stack_frame(2) as f:
        leak = k.kzalloc(64)
        k.store(f.slot(0), leak)
    scan(k)
    v = judge(k)[leak]
    assert (v.kind, v.cause) == (PENDING, "too young")
    assert v.kept_by is not None
    assert v.kept_by.what == "stale stack slot"
    age_and_scan_twice(k)
    assert (judge(k)[leak].kind, judge(k)[leak].cause) == (FN, "stale stack slot")


@pytest.mark.parametrize(("arch", "encoding"), [
    ("i386", TopByteTag()),  # the tag does not fit in a 32-bit word: the word is plain
    ("x86_64", Xor(key=0x18)),  # a small key keeps the word inside a 256-byte object
])
def test_encoding_cause_needs_an_invisible_word(arch: str, encoding: Encoding) -> None:
    """Regression (judge): a referrer is blamed on its encoding only if its bytes are
    invisible; here the word points into the child and the holder is the cause."""
    k = Kernel(arch=arch)
    handle = k.define_static("handle", k.arch.word_size)
    holder, child = k.kzalloc(128), k.kzalloc(256)
    k.store(handle, holder, encoding=Xor())
    k.store(holder, child, encoding=encoding)
    age_and_scan_twice(k)
    j = judge(k)
    assert (j[holder].kind, j[holder].cause) == (FP, "encoding XOR")
    assert (j[child].kind, j[child].cause) == (FP, "unreferenced holder")


# ------------------------------------------------------------ random heaps
@dataclass(frozen=True)
class Heap:
    """A random heap: objects, plain pointers between them, a few static roots."""

    arch: str
    sizes: list[int]
    nstatics: int
    edges: list[tuple[int, int, int]]
    """(holder index, word index, target index), stored in this order."""
    roots: list[tuple[int, int]]
    """(static index, target index)."""
    dropped: set[int]
    """Statics overwritten with NULL at the end."""


@st.composite
def heaps(draw: st.DrawFn) -> Heap:
    n = draw(st.integers(1, 24))
    nstatics = draw(st.integers(1, 4))
    idx = st.integers(0, n - 1)
    return Heap(
        arch=draw(st.sampled_from(ARCHES)),
        sizes=draw(st.lists(st.sampled_from([16, 32, 64, 128, 256]), min_size=n, max_size=n)),
        nstatics=nstatics,
        edges=draw(st.lists(st.tuples(idx, st.integers(0, 31), idx), min_size=n // 2,
                            max_size=3 * n)),
        roots=draw(st.lists(st.tuples(st.integers(0, nstatics - 1), idx), min_size=1,
                            max_size=2 * nstatics)),
        dropped=draw(st.sets(st.integers(0, nstatics - 1))),
    )


@settings(max_examples=30, deadline=None)
@given(heaps())
def test_plain_heaps_are_judged_exactly(h: Heap) -> None:
    """Plain pointers, no stale data (kzalloc, no stack frames): kmemleak is exact."""
    k = Kernel(arch=h.arch)
    ws = k.arch.word_size
    statics = [k.define_static(f"root{i}", ws) for i in range(h.nstatics)]
    objs = [k.kzalloc(s) for s in h.sizes]
    meant: dict[int, int] = {}  # slot -> target index: the test's own model
    for src, word, dst in h.edges:
        slot = objs[src] + (word % (h.sizes[src] // ws)) * ws
        k.store(slot, objs[dst])
        meant[slot] = dst
    for i, dst in h.roots:
        k.store(statics[i], objs[dst])
        meant[statics[i]] = dst
    for i in h.dropped:
        k.memory.write_word(statics[i], 0)
        meant.pop(statics[i], None)
    age_and_scan_twice(k)

    # Reachability by the test's own walk, independent of the truth model.
    reach: set[int] = set()
    todo = [meant[s] for s in statics if s in meant]
    while todo:
        i = todo.pop()
        if i in reach:
            continue
        reach.add(i)
        start, end = objs[i], objs[i] + h.sizes[i]
        todo += [t for slot, t in meant.items() if start <= slot < end]

    j = judge(k)
    assert j.counts[FP] == 0
    assert j.counts[FN] == 0
    assert j.counts[PENDING] == 0
    for i, p in enumerate(objs):
        assert j[p].kind == (TN if i in reach else TP), (i, str(j[p]))
    lost = [i for i in range(len(objs)) if i not in reach]
    assert {m for g in j.groups for m in g.members} == {objs[i] for i in lost}
    assert sum(g.bytes for g in j.groups) == sum(h.sizes[i] for i in lost)
    listed = k.read(KMEMLEAK).count("unreferenced object")
    assert listed == len(lost)


# --------------------------------------------------------------------- CLI
def test_cli_lists_the_gallery(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gallery"]) == 0
    out = capsys.readouterr().out
    for name, s in GALLERY.items():
        assert name in out
        assert s.title in out


def test_cli_runs_a_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gallery", "xor_linked_list"]) == 0
    out = capsys.readouterr().out
    assert "doubly linked XOR list" in out
    assert f"cat {KMEMLEAK}" in out
    assert out.count("unreferenced object 0x") == 1
    assert "1 false positive: encoding XOR" in out  # str(judge(k))
    assert "node C: 0x" in out
    assert "false positive: encoding XOR. stored with Xor" in out
    assert out.count("true negative: reachable") == 4


def test_cli_arch_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gallery", "tagged_pointer", "--arch", "arm64"]) == 0
    out = capsys.readouterr().out
    assert "(arm64)" in out
    assert "(nothing reported)" in out
    assert "object: 0xffff" in out
    assert "true negative" in out


def test_cli_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gallery", "no_such_thing"]) == 2
    captured = capsys.readouterr()
    assert "no scenario named 'no_such_thing'" in captured.err
    assert captured.out == ""


def test_cli_demo_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--quiet"]) == 0
    assert "unreferenced object" in capsys.readouterr().out
