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

import random
import re
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from .errors import KmemsimError, KmemsimValueError, check_int
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

__all__ = ["MISUSE", "DebugKernelSpec", "KernelMachine", "MisuseMachine", "StressReport",
           "apply_misuse", "check_kernel", "detector_state", "plainly_reachable", "stress_run"]

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


# ======================================================================
# Error injection: a buggy caller's operations mixed into valid ones.
# ======================================================================
#: The kinds of misuse :func:`apply_misuse` makes (each names what a buggy caller does).
MISUSE = ("free_unknown", "free_interior", "double_free", "overlap_register", "write_guard",
          "write_unmapped", "overflow_write", "write_after_free", "bad_argument")

#: Bad arguments to public calls: each must raise a documented error and change nothing.
_BAD_CALLS: tuple[Callable[[Kernel], object], ...] = (
    lambda k: k.kmalloc(-1),
    lambda k: k.kfree("0"),  # type: ignore[arg-type]
    lambda k: k.vmalloc(None),  # type: ignore[arg-type]
    lambda k: k.write("/sys/kernel/debug/kmemleak", "bogus"),
    lambda k: k.read("/sys/kernel/debug/nope"),
    lambda k: k.kmemleak.kmemleak_not_leak(None),  # type: ignore[arg-type]
    lambda k: k.kmemleak.kmemleak_alloc(0x1000, -1, 1),
    lambda k: k.memory.write(0x10, "x"),  # type: ignore[arg-type]
    lambda k: k.sleep(-1),
    lambda k: k.rmmod("no_such_module"),
)


@dataclass(frozen=True, slots=True)
class DebugKernelSpec(KernelSpec):
    """A :class:`~kmemsim.strategies.KernelSpec` with a boot command line
    (e.g. ``slub_debug`` for red zones, poison, tracking and SLUB's checks).

    >>> DebugKernelSpec(cmdline="slub_debug=FZ").boot().slab.kmalloc_caches[32].red_left_pad
    32
    """

    cmdline: str = ""

    def boot(self) -> Kernel:
        k = Kernel(arch=self.arch, hz=self.hz, ncpus=self.ncpus, cmdline=self.cmdline,
                   config=None if self.auto_scan else {"CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN": False})
        if not self.stack_scan:
            k.write("/sys/kernel/debug/kmemleak", "stack=off")
        return k


def apply_misuse(runner: Replayer, freed: list[tuple[int, int, str]], kind: str, a: int,
                 b: int) -> str | None:
    """Make one misuse *kind* (from :data:`MISUSE`) on ``runner.k``; *a* and *b* choose
    the block, the address and the bytes, so the same call on a twin does the same.

    Returns the name of the documented error the kernel answered with (a
    :class:`~kmemsim.errors.KmemsimError` or ``OSError`` subclass), or ``None``
    when it answered in the log only.  Any other exception propagates: that is
    an internal error.  *freed* lists blocks the caller freed (for double frees
    and writes after free); a block the allocators handed out again is skipped,
    as is everything a live object of the kernel's own might sit on.

    >>> k = KernelSpec().boot(); r = Replayer(k)
    >>> r.apply(Operation("alloc", 1, 64))
    >>> apply_misuse(r, [], "free_interior", 0, 1)
    'KernelOops'
    """
    if kind not in MISUSE:
        raise KmemsimValueError(f"unknown misuse {kind!r}; known: {', '.join(MISUSE)}")
    k = runner.k
    ws = k.arch.word_size
    try:
        if kind == "free_unknown":
            # Addresses no allocator handed out: the top of the vmalloc space, the NULL
            # page, a kernel static.
            where = (k.arch.vmalloc_end + 1 - (1 + b % 64) * 4096, 0x1000 + 8 * (b % 512),
                     k.kernel_data_start + 8 * (b % 64))[a % 3]
            runner.free_as(("kmalloc", "vmalloc", "percpu", "kmem_cache")[b % 4], where)
        elif kind == "free_interior":
            if not runner.blocks:
                return None
            addr, size, what = runner.pick(a)
            if size < 2:
                return None
            # strictly inside: never one past the end, which is the next object's start
            runner.free_as(what, addr + 1 + b % (size - 1))
        elif kind in ("double_free", "write_after_free"):
            gone = [f for f in freed if f[0] not in k.truth.blocks]  # not handed out again
            if not gone:
                return None
            addr, size, what = gone[a % len(gone)]
            if kind == "double_free":
                runner.free_as(what, addr)
            elif what != "percpu":
                if what == "vmalloc":
                    k.memory.write(addr + b % size, b"\xee")  # unmapped now: an oops
                else:
                    k.memory.write(addr + b % max(1, size), b"\xee")
        elif kind == "overlap_register":
            # Rare on purpose: it turns kmemleak off for the rest of the run.
            live = [blk for blk in runner.blocks if blk[2] != "percpu"]
            if not live or b % 4:
                return None
            addr = live[a % len(live)][0]
            k.kmemleak.kmemleak_alloc(addr + ws * (b >> 4 & 3), ws, 1)
        elif kind == "write_guard":
            vm = [blk for blk in runner.blocks if blk[2] == "vmalloc"]
            if not vm:
                return None
            area = k.vmalloc_allocator.areas[vm[a % len(vm)][0]]
            k.memory.write(area.addr + area.size + b % 4096, b"\xee")
        elif kind == "write_unmapped":
            where = (8 * (b % 512), k.arch.vmalloc_end + 1 - 4096)[a % 2]
            k.memory.write_word(where, b)
        elif kind == "overflow_write":
            # Past what was asked for, but never into a neighbour: into the size class's
            # slack, or into the red zones when the cache has them.
            slab = [blk for blk in runner.blocks if blk[2] in ("kmalloc", "kzalloc", "kmem_cache")]
            if not slab:
                return None
            addr, size, _ = slab[a % len(slab)]
            cache = k.slab.cache_of(addr)
            assert cache is not None
            start, end = addr + min(size, cache.object_size), addr + cache.object_size
            if cache.red_left_pad:
                start, end = ((addr - cache.red_left_pad, addr), (start, addr + cache.inuse)
                              )[b % 2]
            if end > start:
                k.memory.write(start + (b >> 1) % (end - start), b"\xee")
        else:  # bad_argument
            _BAD_CALLS[a % len(_BAD_CALLS)](k)
    except (KmemsimError, OSError) as exc:
        return type(exc).__name__
    return None


def check_kernel(k: Kernel) -> None:
    """The invariants that hold whatever a caller did: allocator and index bookkeeping,
    and kmemleak either working or cleanly disabled.

    >>> check_kernel(Kernel())
    """
    k._check()
    kl = k.kmemleak
    if kl.kmemleak_enabled:
        assert not kl.kmemleak_error
    else:
        # Disabled: no scan thread, frees no longer tracked once the cleanup ran, and the
        # metadata either freed or kept because leaks were found (then readable).
        assert not kl.scan_thread_running
        assert kl.next_scan_jiffies is None
        assert kl.metadata_kept or len(kl) == 0
        if kl.kmemleak_late_initialized:
            assert not kl.kmemleak_free_enabled


class MisuseMachine(KernelMachine):
    """:class:`KernelMachine` with a buggy caller: frees of unknown, interior and freed
    pointers, an overlapping registration, writes to guard pages, unmapped memory,
    past objects and after free, and bad arguments, mixed into valid operations.

    Each misuse is made on both kernels; both must answer alike, only with
    documented errors (or log lines), and every invariant of
    :class:`KernelMachine` plus :func:`check_kernel` must hold after each step.
    Subclasses may set :attr:`spec` (e.g. a :class:`DebugKernelSpec` with
    ``cmdline="slub_debug"``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.freed: list[tuple[int, int, str]] = []
        self.answers: dict[str, int] = {}
        """How often each documented error answered a misuse (for the curious)."""

    @precondition(lambda self: self.runner.blocks)
    @rule(i=_pick)
    def free(self, i: int) -> None:
        self.freed.append(self.runner.pick(i))
        self.freed = self.freed[-32:]
        super().free(i)

    @rule(kind=st.sampled_from(MISUSE), a=st.integers(0, 1 << 16), b=st.integers(0, 1 << 16))
    def misuse(self, kind: str, a: int, b: int) -> None:
        ours = apply_misuse(self.runner, self.freed, kind, a, b)
        with faults.suspended():
            theirs = apply_misuse(self.twin_runner, self.freed, kind, a, b)
        assert ours == theirs, (kind, ours, theirs)
        if ours is not None:
            self.answers[ours] = self.answers.get(ours, 0) + 1
        self.just_scanned = False
        self.mutated = True

    @precondition(lambda self: self.runner.blocks)
    @rule(a=st.integers(0, 255), chance=st.integers(0, 7))
    def overlapping_registration(self, a: int, chance: int) -> None:
        """Register a block twice, now and then (it disables kmemleak for the run)."""
        if chance == 0:
            self.misuse("overlap_register", a, 0)

    @invariant()
    def kernel_is_consistent(self) -> None:
        check_kernel(self.kernel)
        check_kernel(self.twin)
        assert self.kernel.kmemleak.kmemleak_enabled == self.twin.kmemleak.kmemleak_enabled


# ======================================================================
# The long profile: a plain seeded loop (no Hypothesis), for speed.
# ======================================================================
#: Relative weights of the operations :func:`stress_run` draws (``misuse`` = one of MISUSE).
STRESS_WEIGHTS: dict[str, float] = {
    "alloc": 24, "free": 20, "store": 16, "overwrite": 5, "annotate": 4, "stale": 4,
    "vm_struct": 2, "sleep": 3, "scan": 0.15, "clear": 0.1, "misuse": 10,
}
#: The kernel's answers that are log lines only (counted by :func:`stress_run`).
_LOGGED = re.compile(r"BUG \S+ \([^)]*\): ([A-Za-z ]+?)(?= 0x|$)|(Trying to vfree\(\) nonexistent)"
                     r"|kmemleak: (Found object by alias|Cannot insert|Memory pool empty)"
                     r"|(Wrong slab cache)|(free_percpu of unknown pointer)", re.M)
_SCAN_FIELDS = ("new_leaks", "unreferenced", "checksum_spared", "too_young", "gray", "white",
                "black", "words_scanned", "interrupted")


@dataclass
class StressReport:
    """What :func:`stress_run` did and found (``as_dict()`` is the benchmark's JSON)."""

    ops: int = 0
    seconds: float = 0.0
    scans: int = 0
    boots: int = 0
    checks: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    """Documented errors that answered injected misuse, by type (expected, not findings)."""
    findings: Counter[str] = field(default_factory=Counter)
    """Internal errors, failed invariants, documented errors from valid operations."""
    first: dict[str, str] = field(default_factory=dict)
    """The first traceback or message of each kind of finding."""

    def as_dict(self) -> dict[str, object]:
        return {"ops": self.ops, "seconds": round(self.seconds, 2), "scans": self.scans,
                "boots": self.boots, "checks": self.checks,
                "answers": dict(sorted(self.answers.items())),
                "findings": dict(sorted(self.findings.items())), "first": self.first}


def stress_run(ops: int, seed: int, *, spec: KernelSpec | None = None, check_every: int = 500,
               max_blocks: int = 300, reboot_after_disable: int = 2000,
               judge_every: int = 20) -> StressReport:
    """Run *ops* random operations (valid ones and :data:`MISUSE`) on a fast-engine
    kernel and a reference-engine twin booted alike, with a ``random.Random(seed)``.

    Every *check_every* operations, and after each scan, the invariants are
    checked: :func:`check_kernel` on both kernels, equal detector states and
    scan results (engines agree), and every *judge_every* scans a verdict for
    every object.  An undocumented exception (an internal error), a failed
    invariant, or a documented error raised by a *valid* operation is a
    finding: it is counted, its first traceback kept, and both kernels are
    booted afresh.  So is a kernel whose kmemleak was disabled (by an
    overlapping registration) once *reboot_after_disable* operations have run
    on it.  Deterministic for a given seed (``seconds`` aside).

    >>> r = stress_run(300, seed=1)
    >>> r.ops, dict(r.findings)
    (300, {})
    """
    check_int_args = {"ops": ops, "seed": seed, "check_every": check_every,
                      "max_blocks": max_blocks, "reboot_after_disable": reboot_after_disable,
                      "judge_every": judge_every}
    for name, value in check_int_args.items():
        check_int(name, value, minimum=0 if name in ("ops", "seed") else 1)
    spec = spec or KernelSpec()
    rng = random.Random(seed)
    names = list(STRESS_WEIGHTS)
    weights = list(STRESS_WEIGHTS.values())
    rep = StressReport()
    t0 = time.perf_counter()

    def boot() -> tuple[Replayer, Replayer]:
        rep.boots += 1
        k, t = spec.boot(), spec.boot()
        k.kmemleak.default_engine, t.kmemleak.default_engine = "fast", "reference"
        return Replayer(k), Replayer(t)

    def finding(kind: str, text: str) -> None:
        rep.findings[kind] += 1
        rep.first.setdefault(kind, text)

    run, twin = boot()
    freed: list[tuple[int, int, str]] = []
    disabled_at: int | None = None
    for i in range(ops):
        name = rng.choices(names, weights)[0]
        if name == "alloc" and len(run.blocks) >= max_blocks:
            name = "free"
        a, b, c = rng.getrandbits(16), rng.getrandbits(16), rng.getrandbits(12)
        try:
            if name == "misuse":
                kind = rng.choice(MISUSE)
                if kind == "overlap_register" and rng.random() > 0.05:
                    kind = "write_unmapped"  # overlaps end the run's kmemleak: keep them rare
                ours = apply_misuse(run, freed, kind, a, b)
                theirs = apply_misuse(twin, freed, kind, a, b)
                if ours != theirs:
                    finding("misuse answered differently", f"{kind}: {ours} != {theirs}")
                if ours is not None:
                    rep.answers[ours] += 1
            else:
                if name == "alloc":
                    op = Operation("alloc", a % len(ALLOCATORS), 8 + b % 505)
                elif name == "sleep":
                    op = Operation("sleep", 1 + a % 7)
                elif name == "store":
                    op = Operation("store", a, b, c % 64 | (c >> 6) % 6 << 8)
                else:
                    op = Operation(name, a, b, c)
                if name == "free" and run.blocks:
                    freed.append(run.pick(a))
                    del freed[:-32]
                for r in (run, twin):
                    try:
                        r.apply(op)
                    except (KmemsimError, OSError) as exc:
                        finding(f"{type(exc).__name__} from valid {name}",
                                f"op {i} on {'the twin' if r is twin else 'the kernel'}, "
                                f"boot {rep.boots}: "
                                + "".join(traceback.format_exception(exc))[-2000:])
                        raise _Reboot from exc
                if name == "scan":
                    rep.scans += 1
                    ra, rb = run.scans[-1], twin.scans[-1]
                    for f in _SCAN_FIELDS:
                        if getattr(ra, f) != getattr(rb, f):
                            finding("engines disagree", f"{f} after op {i}")
                            raise _Reboot
                    if rep.scans % judge_every == 0:
                        j = judge(run.k)
                        assert all(o.pointer in j.verdicts
                                   for o in run.k.kmemleak.object_list.values())
            if i % check_every == check_every - 1 or name == "scan":
                rep.checks += 1
                for r in (run, twin):
                    check_kernel(r.k)
                    # keep the log from growing without bound; count what it answered
                    text = r.k.dmesg(clear=True)
                    if r is run:
                        rep.answers.update(f"dmesg: {''.join(m)}" for m in _LOGGED.findall(text))
                if detector_state(run.k) != detector_state(twin.k):
                    finding("detector states differ", f"after op {i} ({name})")
                    raise _Reboot
                if not run.k.kmemleak.kmemleak_enabled:
                    disabled_at = i if disabled_at is None else disabled_at
                    if i - disabled_at >= reboot_after_disable:
                        raise _Reboot
        except _Reboot:
            run, twin = boot()
            freed, disabled_at = [], None
        except AssertionError as exc:
            finding("invariant failed", f"op {i}, boot {rep.boots}: "
                    + "".join(traceback.format_exception(exc))[-2000:])
            run, twin = boot()
            freed, disabled_at = [], None
        except Exception as exc:  # an internal error: the finding this run hunts for
            finding(f"internal {type(exc).__name__}", f"op {i}, boot {rep.boots}: "
                    + "".join(traceback.format_exception(exc))[-2000:])
            run, twin = boot()
            freed, disabled_at = [], None
        rep.ops += 1
    rep.seconds = time.perf_counter() - t0
    return rep


class _Reboot(Exception):
    """Start over on fresh kernels (after a finding, or a long-disabled kmemleak)."""
