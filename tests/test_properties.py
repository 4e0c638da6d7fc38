"""Scan-rule properties over random heaps and random operation sequences.

Each property is a plain ``check_*`` function of a :class:`~kmemsim.strategies.Heap`
so that ``tests/test_mutations.py`` can run the same checks with a fault
injected; the ``test_*`` wrappers give them to Hypothesis.  The number of
examples comes from the profile (``HYPOTHESIS_PROFILE``: ``dev``, ``ci``, ``deep``;
see ``tests/conftest.py``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmemsim.kernel import Kernel
from kmemsim.kmemleak import faults
from kmemsim.kmemleak.index import ObjectTree
from kmemsim.kmemleak.object import KmemleakObject
from kmemsim.strategies import (
    Heap,
    HeapSpec,
    KernelSpec,
    Link,
    Node,
    Operation,
    Replayer,
    ScanConfig,
    heaps,
    kernel_specs,
    operations,
    scan_configs,
)
from kmemsim.testing import KernelMachine, detector_state
from kmemsim.truth import Interior, LowBitTag, OnePastTheEnd, Xor, judge

TestKernelMachine = KernelMachine.TestCase

#: Heaps with every kind of odd word: encodings, stale stack words, data words.
MIXED = heaps(encoding_probability=0.3,
              encodings=(Interior(offset=8), LowBitTag(tag=1), OnePastTheEnd(), Xor(key=0x5A)))
#: Heaps whose only references are plain ones and whose objects hold nothing else:
#: what is reported is then exactly what no root reaches.
CLEAN = heaps(allocators=("kzalloc", "vmalloc", "percpu", "kmem_cache"),
              max_stale_words=0, max_data_words=0)
#: Heaps with stale stack words, on kernels that do not scan stacks.
STACK_OFF = heaps(kernel=kernel_specs(stack_scan=[False]), max_stale_words=4,
                  max_data_words=0, allocators=("kzalloc", "vmalloc", "kmem_cache"))


def _ptrs(records: object) -> set[int]:
    return {r.pointer for r in records}  # type: ignore[attr-defined]


def _kernel_crc(k: Kernel, obj: KmemleakObject) -> int:
    """The kernel's CRC computed independently of kmemsim (seed 0, no inversions)."""
    def crc(data: bytes) -> int:
        return zlib.crc32(data, 0xFFFFFFFF) ^ 0xFFFFFFFF

    if obj.flags & 0x20:  # OBJECT_PERCPU: XOR over every CPU's copy
        out = 0
        for cpu in k.possible_cpus():
            out ^= crc(bytes(k.memory.read(obj.pointer + k.per_cpu_offset(cpu), obj.size)))
        return out
    return crc(bytes(k.memory.read(obj.pointer, obj.size)))


# ------------------------------------------------------------------- checks
def check_plain_reachable_never_reported(heap: Heap) -> None:
    """Nothing reachable from statics through plain references is ever listed."""
    k = heap.kernel
    live = {heap.addresses[i] for i in heap.spec.plain_reachable()}
    for _ in range(3):
        k.sleep(6)
        r = k.kmemleak.scan()
        assert not _ptrs(r.unreferenced) & live


def check_engines_agree(heap: Heap) -> None:
    """The reference scan equals the fast scan of the same heap (replayed): colours,
    counts, flags, checksums and results, over three scans."""
    with faults.suspended():  # the twin is the oracle: no fault in it
        twin = heap.replay()
    for seconds in (0, 6, 6):
        heap.kernel.sleep(seconds)
        twin.kernel.sleep(seconds)
        r = heap.kernel.kmemleak.scan(engine="reference")
        with faults.suspended():
            t = twin.kernel.kmemleak.scan(engine="fast")
        assert detector_state(heap.kernel) == detector_state(twin.kernel)
        for f in ("new_leaks", "unreferenced", "checksum_spared", "too_young", "words_scanned"):
            assert getattr(r, f) == getattr(t, f), f


def check_engines_agree_after_operations(heap: Heap, ops: list[Operation]) -> None:
    """Engine agreement once random operations (annotations, pointers to ``vm_struct``s,
    stores) have run on the heap's nodes."""
    with faults.suspended():
        twin = heap.replay()
    runners = []
    for h in (heap, twin):
        with faults.suspended():
            r = Replayer(h.kernel)
        r.blocks = [(a, n.size, n.allocator) for a, n in zip(h.addresses, h.spec.nodes,
                                                             strict=True)]
        runners.append(r)
    for op in [*ops, Operation("sleep", 6), Operation("scan"), Operation("scan")]:
        if op.name == "scan":
            runners[0].k.kmemleak.scan(engine="reference")
            with faults.suspended():
                runners[1].k.kmemleak.scan(engine="fast")
            assert detector_state(heap.kernel) == detector_state(twin.kernel), op
        else:
            runners[0].apply(op)
            with faults.suspended():
                runners[1].apply(op)


def check_unreachable_reported_within_two_scans(heap: Heap) -> None:
    """On a clean heap: a scan younger than the minimum age reports nothing; the
    checksum pass spares exactly the white objects with a non-zero kernel CRC; after
    the minimum age, two scans report exactly the objects no root reaches."""
    k = heap.kernel
    nodes = set(heap.addresses)
    live = {heap.addresses[i] for i in heap.spec.plain_reachable()}
    r0 = k.kmemleak.scan()
    assert not _ptrs(r0.new_leaks) & nodes, "reported younger than the minimum age"
    for p in nodes - live:
        o = k.kmemleak.find(p, tree="percpu") or k.kmemleak.find(p)
        assert o is not None
        assert (p in r0.checksum_spared) == (_kernel_crc(k, o) != 0), hex(p)
    k.sleep(6)
    r1, r2 = k.kmemleak.scan(), k.kmemleak.scan()
    reported = (_ptrs(r0.new_leaks) | _ptrs(r1.new_leaks) | _ptrs(r2.new_leaks)) & nodes
    assert reported == nodes - live
    assert _ptrs(r2.unreferenced) & nodes == nodes - live


def check_adding_a_root_never_adds_a_report(heap: Heap, node: int) -> None:
    """Monotonicity: the same heap with one more plain root reference reports a subset."""
    spec = heap.spec
    node %= len(spec.nodes)
    extra = replace(spec, links=(*spec.links, Link(None, spec.static_words(), node)))
    more = extra.build()
    before: set[int] = set()
    after: set[int] = set()
    for h, out in ((heap, before), (more, after)):
        h.kernel.sleep(6)
        for r in h.scan(2):
            out |= {h.addresses.index(p) for p in _ptrs(r.new_leaks) if p in h.addresses}
    assert after <= before
    assert node not in after


def check_idempotence(heap: Heap) -> None:
    """With no mutation, once checksums settled, a third scan changes nothing."""
    k = heap.kernel
    k.sleep(6)
    k.kmemleak.scan()
    r2 = k.kmemleak.scan()
    state = detector_state(k)
    r3 = k.kmemleak.scan()
    assert detector_state(k) == state
    assert _ptrs(r3.unreferenced) == _ptrs(r2.unreferenced)
    assert not r3.new_leaks
    assert not r3.checksum_spared


def check_lookups_stay_in_windows(heap: Heap) -> None:
    """The reference walk asks each object tree only about addresses inside its window."""
    kl = heap.kernel.kmemleak
    asked: list[tuple[str, int]] = []
    orig = ObjectTree.lookup

    def spy(self: ObjectTree, addr: int) -> KmemleakObject | None:
        asked.append((self.name, addr))
        return orig(self, addr)

    ObjectTree.lookup = spy  # type: ignore[method-assign]
    try:
        kl.scan(engine="reference")
    finally:
        ObjectTree.lookup = orig  # type: ignore[method-assign]
    windows = {"object_tree_root": (kl.min_addr, kl.max_addr),
               "object_percpu_tree_root": (kl.min_percpu_addr, kl.max_percpu_addr)}
    for tree, addr in asked:
        lo, hi = windows[tree]
        assert lo <= addr < hi, (tree, hex(addr))


def check_stack_off_has_no_stale_stack_false_negatives(heap: Heap) -> None:
    """With ``stack=off`` no object is kept gray by a word on a task stack, and every
    false positive or negative has a cause."""
    k = heap.kernel
    k.sleep(6)
    k.kmemleak.scan()
    k.kmemleak.scan()
    for v in judge(k):
        assert v.kind not in ("false positive", "false negative") or v.cause
        assert v.kept_by is None or not v.kept_by.region.startswith("stack of"), v


#: name -> (strategy of heaps, check): what test_mutations runs under each fault.
HEAP_CHECKS: dict[str, tuple[st.SearchStrategy[Heap], Callable[[Heap], None]]] = {
    "plain_reachable_never_reported": (MIXED, check_plain_reachable_never_reported),
    "engines_agree": (MIXED, check_engines_agree),
    "unreachable_reported_within_two_scans": (CLEAN, check_unreachable_reported_within_two_scans),
    "idempotence": (MIXED, check_idempotence),
    "lookups_stay_in_windows": (MIXED, check_lookups_stay_in_windows),
    "stack_off_no_stale_stack_false_negatives": (
        STACK_OFF, check_stack_off_has_no_stale_stack_false_negatives),
}


@pytest.mark.parametrize("name", sorted(HEAP_CHECKS))
def test_heap_property(name: str) -> None:
    strategy, check = HEAP_CHECKS[name]
    given(heap=strategy)(check)()


#: Operations that change what the scan reads without freeing the heap's nodes.
HEAP_OPERATIONS = operations(names=("annotate", "vm_struct", "store"), min_size=1, max_size=6)


@given(heap=MIXED, ops=HEAP_OPERATIONS)
def test_engines_agree_after_operations(heap: Heap, ops: list[Operation]) -> None:
    check_engines_agree_after_operations(heap, ops)


@given(heap=MIXED, node=st.integers(0, 63))
def test_adding_a_root_never_adds_a_report(heap: Heap, node: int) -> None:
    check_adding_a_root_never_adds_a_report(heap, node)


def test_heap_replay_gives_the_same_addresses() -> None:
    h = HeapSpec(KernelSpec(), (Node("kzalloc", 64), Node("percpu", 32)), "list", (Link(0, 0, 1),)).build()
    assert h.replay().addresses == h.addresses


@given(heap=MIXED, config=scan_configs())
def test_no_scan_config_reports_plain_reachable_objects(heap: Heap, config: ScanConfig) -> None:
    """Whatever the engine, stack setting, number of scans and sleeps: rule 1."""
    live = {heap.addresses[i] for i in heap.spec.plain_reachable()}
    for r in config.run(heap.kernel):
        assert not _ptrs(r.unreferenced) & live


@given(spec=kernel_specs(), ops=operations())
def test_replayed_operations_agree_across_engines(spec: KernelSpec, ops: list[Operation]) -> None:
    """The same operations on two kernels booted alike, one per engine, leave equal
    detector states after every step."""
    kernels = [spec.boot(), spec.boot()]
    kernels[0].kmemleak.default_engine = "reference"
    runners = [Replayer(k) for k in kernels]
    for op in [*ops, Operation("sleep", 6), Operation("scan")]:
        for r in runners:
            r.apply(op)
        assert detector_state(kernels[0]) == detector_state(kernels[1]), op
