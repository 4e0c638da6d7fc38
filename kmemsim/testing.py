"""A Hypothesis state machine that holds a simulated kernel to kmemleak's rules.

Requires the ``hypothesis`` package; not imported by ``kmemsim/__init__``.

:class:`KernelMachine` drives **two** kernels booted alike with the same
operations (:class:`~kmemsim.strategies.Replayer`): the *kernel* scans with
the reference engine, its *twin* with the fast one.  Booting is
deterministic, so both have the same addresses and, after every step, must
have the same detector state.  The twin is the oracle: its operations run with
every injected fault suspended (:func:`kmemsim.kmemleak.faults.suspended`).

Use it as is, or subclass it to add rules and invariants::

    from kmemsim.testing import KernelMachine

    class MyMachine(KernelMachine):
        ...

    TestMyMachine = MyMachine.TestCase

Invariants (after every step; the judged ones right after a scan):

* ``index_is_consistent``: the object index's ``_check()`` holds on both kernels;
* ``engines_agree``: colours, counts, flags, checksums and the listing are equal;
* ``every_object_has_a_verdict``: :func:`kmemsim.truth.judge` judges every object,
  and every false positive or negative has a named cause;
* ``nothing_plainly_reachable_is_reported``: an object reachable from kernel
  statics through plain references in scanned memory is never listed;
* ``reports_are_sticky``: ``OBJECT_REPORTED`` is never cleared on a live object,
  and with only ``sleep`` and ``scan`` in between a listed object stays listed.
"""

from __future__ import annotations

from typing import ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from .kernel import Kernel
from .kmemleak import faults
from .kmemleak.object import (
    OBJECT_FULL_SCAN,
    OBJECT_NO_SCAN,
    OBJECT_PERCPU,
    OBJECT_REPORTED,
)
from .strategies import ALLOCATORS, ANNOTATIONS, KernelSpec, Operation, Replayer
from .truth import Plain, judge
from .truth.judge import FALSE_NEGATIVE, FALSE_POSITIVE

__all__ = ["KernelMachine", "detector_state", "plainly_reachable"]

_pick = st.integers(0, 255)


def detector_state(k: Kernel) -> list[tuple[int, ...]]:
    """Per object: pointer, size, count, flags, checksum, min_count, excess_ref.

    >>> from kmemsim import Kernel
    >>> detector_state(Kernel())[0][:2] == (Kernel().kmemleak.objects()[0].pointer,
    ...                                     Kernel().kmemleak.objects()[0].size)
    True
    """
    return [(o.pointer, o.size, o.count, o.flags, o.checksum, o.min_count, o.excess_ref)
            for o in k.kmemleak.object_list.values()]


def plainly_reachable(k: Kernel) -> set[int]:
    """Pointers of objects reachable from kernel statics through :class:`Plain`
    references held in memory kmemleak scans.

    A holder counts when it is tracked, not black, not ``NO_SCAN``, and the
    slot lies inside one of its scan areas (if it has any and no
    ``FULL_SCAN``).  This is the set kmemleak must never report.
    """
    truth, kl, ws = k.truth, k.kmemleak, k.arch.word_size
    found: set[int] = set()
    todo: list[int] = []

    def visit(base: int) -> None:
        block = truth.blocks.get(base)
        obj = kl.find(base, tree="percpu" if block is not None and block.kind == "percpu"
                      else "virtual")
        if obj is not None and obj.pointer not in found:
            found.add(obj.pointer)
            todo.append(base)

    for edge in truth.out_edges(None):
        if edge.root == "kernel static" and type(edge.encoding) is Plain:
            visit(edge.target_base)
    while todo:
        base = todo.pop()
        block = truth.blocks.get(base)
        obj = kl.find(base, tree="percpu" if block is not None and block.kind == "percpu"
                      else "virtual")
        if obj is None or obj.min_count == -1 or obj.flags & OBJECT_NO_SCAN:
            continue
        for edge in truth.out_edges(base):
            if type(edge.encoding) is not Plain:
                continue
            if obj.areas and not obj.flags & OBJECT_FULL_SCAN and not obj.flags & OBJECT_PERCPU \
                    and not any(a.start <= edge.slot and edge.slot + ws <= a.start + a.size
                                for a in obj.areas):
                continue
            visit(edge.target_base)
    return found


class KernelMachine(RuleBasedStateMachine):
    """Random kernel operations on a reference-engine kernel and its fast-engine twin.

    Subclasses may set :attr:`spec` to boot another configuration.
    """

    spec: ClassVar[KernelSpec] = KernelSpec()

    def __init__(self) -> None:
        super().__init__()
        self.kernel = self.spec.boot()
        self.kernel.kmemleak.default_engine = "reference"
        with faults.suspended():
            self.twin = self.spec.boot()
        self.twin.kmemleak.default_engine = "fast"
        self.runner = Replayer(self.kernel)
        with faults.suspended():
            self.twin_runner = Replayer(self.twin)
        self.just_scanned = False
        self.mutated = False
        self.reported: set[int] = set()  # serials of live objects with OBJECT_REPORTED
        self.listed: set[int] = set()  # serials listed right after the last scan

    def apply(self, op: Operation) -> None:
        """Apply *op* to both kernels (the twin with faults suspended)."""
        self.runner.apply(op)
        with faults.suspended():
            self.twin_runner.apply(op)
        self.just_scanned = op.name == "scan"
        if op.name not in ("scan", "sleep"):
            self.mutated = True

    # ------------------------------------------------------------------ rules
    @rule(kind=st.sampled_from(ALLOCATORS), size=st.integers(8, 512))
    def allocate(self, kind: str, size: int) -> None:
        self.apply(Operation("alloc", ALLOCATORS.index(kind), size))

    @precondition(lambda self: self.runner.blocks)
    @rule(i=_pick)
    def free(self, i: int) -> None:
        self.apply(Operation("free", i))

    @precondition(lambda self: self.runner.blocks)
    @rule(i=_pick, holder=_pick, word=st.integers(0, 63), encoding=st.integers(0, 5))
    def store(self, i: int, holder: int, word: int, encoding: int) -> None:
        self.apply(Operation("store", i, holder, word | encoding << 8))

    @precondition(lambda self: self.runner.blocks)
    @rule(value=st.integers(0, (1 << 64) - 1), holder=_pick, word=st.integers(0, 63))
    def overwrite(self, value: int, holder: int, word: int) -> None:
        self.apply(Operation("overwrite", value, holder, word))

    @precondition(lambda self: self.runner.blocks)
    @rule(i=_pick, what=st.sampled_from(ANNOTATIONS), area=st.integers(0, 255))
    def annotate(self, i: int, what: str, area: int) -> None:
        self.apply(Operation("annotate", i, ANNOTATIONS.index(what), area))

    @precondition(lambda self: self.runner.blocks)
    @rule(i=_pick, frame=st.integers(0, 15))
    def stale_stack_word(self, i: int, frame: int) -> None:
        self.apply(Operation("stale", i, frame))

    @precondition(lambda self: any(b[2] == "vmalloc" for b in self.runner.blocks))
    @rule(i=_pick, holder=_pick, word=st.integers(0, 63))
    def point_at_vm_struct(self, i: int, holder: int, word: int) -> None:
        self.apply(Operation("vm_struct", i, holder, word))

    @rule(seconds=st.integers(1, 7))
    def sleep(self, seconds: int) -> None:
        self.apply(Operation("sleep", seconds))

    @rule()
    def scan(self) -> None:
        kl = self.kernel.kmemleak
        before = self.listed
        self.apply(Operation("scan"))
        self.listed = {o.serial for o in kl.reported_unreferenced()}
        if not self.mutated:
            assert before <= self.listed, "a listed object dropped out with no mutation"
        self.mutated = False

    @rule()
    def clear(self) -> None:
        self.apply(Operation("clear"))

    # ------------------------------------------------------------- invariants
    @invariant()
    def index_is_consistent(self) -> None:
        self.kernel.kmemleak._check()
        self.twin.kmemleak._check()

    @invariant()
    def engines_agree(self) -> None:
        assert detector_state(self.kernel) == detector_state(self.twin)
        if self.just_scanned:
            r, t = self.runner.scans[-1], self.twin_runner.scans[-1]
            for f in ("new_leaks", "unreferenced", "checksum_spared", "too_young", "gray",
                      "white", "black", "words_scanned"):
                assert getattr(r, f) == getattr(t, f), f

    @invariant()
    def every_object_has_a_verdict(self) -> None:
        if not self.just_scanned:
            return
        j = judge(self.kernel)
        for obj in self.kernel.kmemleak.object_list.values():
            assert obj.pointer in j.verdicts, obj
        for v in j:
            if v.kind in (FALSE_POSITIVE, FALSE_NEGATIVE):
                assert v.cause, v

    @invariant()
    def nothing_plainly_reachable_is_reported(self) -> None:
        if not self.just_scanned:
            return
        listed = {o.pointer for o in self.kernel.kmemleak.reported_unreferenced()}
        assert not listed & plainly_reachable(self.kernel)

    @invariant()
    def reports_are_sticky(self) -> None:
        live = self.kernel.kmemleak.object_list
        now = {s for s, o in live.items() if o.flags & OBJECT_REPORTED}
        assert {s for s in self.reported if s in live} <= now
        self.reported = now
