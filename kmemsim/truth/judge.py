"""Judging a scan: a verdict, a cause and a path for every tracked object.

``judge(k)`` joins what kmemleak reported (its last scan and its debugfs
listing) with what the program meant (:class:`~kmemsim.truth.model.Truth`):

* **true positive**: reported and really unreachable;
* **false positive**: reported but reachable: the logical referrers, and why
  kmemleak could not see each of them;
* **false negative**: unreachable, old enough, scanned, and not reported: the
  word that kept it gray, and what that word is;
* **true negative**: reachable and not reported;
* **pending**: unreachable but not reportable yet (too young, or spared by
  the checksum pass this time, or created after the last scan).

Judge right after a scan: the truth is read as it is now.

>>> from kmemsim import Kernel
>>> from kmemsim.truth import Xor, judge
>>> k = Kernel()
>>> head = k.define_static("handle", 8)
>>> p = k.kzalloc(64)
>>> k.store(head, p, encoding=Xor(key=0x5a))      # reachable, but kmemleak cannot see it
>>> k.sleep(6); _ = k.kmemleak.scan()
>>> v = judge(k)[p]
>>> v.kind, v.cause
('false positive', 'encoding XOR')
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..kmemleak.hooks import time_before_eq
from ..kmemleak.object import (
    OBJECT_FULL_SCAN,
    OBJECT_NO_SCAN,
    OBJECT_PERCPU,
    OBJECT_PHYS,
    OBJECT_REPORTED,
    KmemleakObject,
    color_gray,
)
from ..kmemleak.scan import unreferenced_rows
from .model import Block, Edge

if TYPE_CHECKING:
    from ..kernel import Kernel

TRUE_POSITIVE = "true positive"
FALSE_POSITIVE = "false positive"
FALSE_NEGATIVE = "false negative"
TRUE_NEGATIVE = "true negative"
PENDING = "pending"
KINDS = (TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE, TRUE_NEGATIVE, PENDING)
#: False-positive causes that follow from another object's state, not the reference itself.
_SECONDARY_CAUSES = frozenset({"unreferenced holder", "visible reference", "min_count not met"})


@dataclass(frozen=True, slots=True)
class Referrer:
    """A logical reference to a falsely reported object, and why kmemleak missed it."""

    edge: Edge
    why: str
    """Short cause label (``encoding XOR``, ``untracked page memory`` ...)."""
    detail: str


@dataclass(frozen=True, slots=True)
class KeptBy:
    """The word that kept a leaked object gray: where it is and what it is."""

    region: str
    address: int
    offset: int
    """Offset of the word inside its holder (object, stack or section)."""
    value: int
    what: str
    """Short cause label (``stale stack slot`` ...)."""
    detail: str


@dataclass(slots=True)  # not frozen: one is built per object, and frozen init is 7x slower
class Verdict:
    """kmemleak's answer about one object beside the truth."""

    pointer: int
    size: int
    kind: str
    cause: str
    detail: str
    reachable: bool
    reported: bool
    referrers: tuple[Referrer, ...] = ()
    kept_by: KeptBy | None = None
    leak: str | None = None
    """``direct`` or ``indirect`` (held only by other leaks) for unreachable objects."""
    group: int | None = None
    path: tuple[Edge, ...] = ()
    """For a false positive, a shortest chain of logical references from a root."""

    def __str__(self) -> str:
        return f"0x{self.pointer:x} (size {self.size}): {self.kind}: {self.cause}. {self.detail}"


@dataclass(frozen=True, slots=True)
class LeakGroup:
    """Leaked objects one fix frees: a leader (direct leak or leaked cycle) and what it holds."""

    ident: int
    leaders: tuple[int, ...]
    members: tuple[int, ...]
    bytes: int


@dataclass(frozen=True)
class Judgement:
    """One verdict per tracked object, with counts, precision and recall.

    Index it by an object's address: ``judgement[ptr]``.
    """

    verdicts: dict[int, Verdict]
    groups: tuple[LeakGroup, ...]
    scan_jiffies: int | None
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.counts.update(v.kind for v in self.verdicts.values())

    def __getitem__(self, pointer: int) -> Verdict:
        return self.verdicts[pointer]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.verdicts.values())

    def __len__(self) -> int:
        return len(self.verdicts)

    def of_kind(self, kind: str) -> list[Verdict]:
        """The verdicts of one kind, in ``object_list`` order."""
        return [v for v in self.verdicts.values() if v.kind == kind]

    @property
    def precision(self) -> float:
        """TP / (TP + FP): how many reports are real leaks (1.0 with no reports)."""
        tp, fp = self.counts[TRUE_POSITIVE], self.counts[FALSE_POSITIVE]
        return tp / (tp + fp) if tp + fp else 1.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN): how many real, reportable leaks were reported (1.0 with none)."""
        tp, fn = self.counts[TRUE_POSITIVE], self.counts[FALSE_NEGATIVE]
        return tp / (tp + fn) if tp + fn else 1.0

    def confusion(self) -> dict[tuple[str, str], int]:
        """Counts by (verdict, cause)."""
        return dict(Counter((v.kind, v.cause) for v in self.verdicts.values()))

    def __str__(self) -> str:
        lines = [f"{len(self.verdicts)} objects judged: "
                 + ", ".join(f"{self.counts[k]} {k}" for k in KINDS if self.counts[k]),
                 f"precision {self.precision:.3f}, recall {self.recall:.3f}"]
        for (kind, cause), n in sorted(self.confusion().items()):
            if kind in (FALSE_POSITIVE, FALSE_NEGATIVE, PENDING):
                lines.append(f"  {n:4d} {kind}: {cause}")
        biggest = sorted(self.groups, key=lambda g: (-g.bytes, g.ident))
        for g in biggest[:10]:
            lines.append(f"  leak group {g.ident}: {len(g.members)} objects, {g.bytes} bytes, "
                         f"leader {', '.join(f'0x{p:x}' for p in g.leaders)}")
        if len(biggest) > 10:
            lines.append(f"  ... and {len(biggest) - 10} smaller leak groups")
        return "\n".join(lines)


class _Judge:
    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.kl = k.kmemleak
        self.truth = k.truth
        self.scan = self.kl.last_scan
        # which blocks are reachable; the edges that reach them only when a path is asked for
        self.reach = self.truth.reachable_blocks(edges=False)
        self._parents: dict[int, Edge | None] | None = None

    # -- mapping kmemleak objects to allocations ----------------------------
    def block_of(self, obj: KmemleakObject) -> Block | None:
        if obj.flags & OBJECT_PERCPU:
            return self.truth.blocks.get(obj.pointer)
        if obj.flags & OBJECT_PHYS:
            return self.truth.block_at(self.k.phys_to_virt(obj.pointer))
        addr = self.k.arch.untag(obj.pointer)
        # Most objects start exactly where their allocation does: a dict hit.
        block: Block | None = self.truth.blocks.get(addr)
        return block if block is not None else self.truth.block_at(addr)

    def is_root_object(self, obj: KmemleakObject) -> bool:
        addr = self.k.arch.untag(obj.pointer)
        return self.k.kernel_data_start <= addr < self.k.kernel_data_end

    @property
    def parents(self) -> dict[int, Edge | None]:
        """:meth:`Truth.reachable_blocks` with the edge that first reached each block."""
        if self._parents is None:
            self._parents = self.truth.reachable_blocks()
        return self._parents

    def reachable(self, obj: KmemleakObject, block: Block | None) -> bool:
        if block is None:
            return self.is_root_object(obj) or bool(obj.flags & OBJECT_PHYS)
        return block.base in self.reach

    # -- region names ------------------------------------------------------
    def region(self, addr: int) -> tuple[str, int]:
        """A human name for where *addr* is, and its offset inside that place."""
        k = self.k
        if k.kernel_data_start <= addr < k.kernel_data_end:
            return "kernel .data/.bss", addr - k.kernel_data_start
        for task in k.tasks:
            if task.stack <= addr < task.stack + task.stack_size:
                return f"stack of {task.comm}[{task.pid}]", addr - task.stack
        for cpu, (start, end) in enumerate(k.percpu_static_sections()):
            if start <= addr < end:
                return f"per-CPU section of cpu {cpu}", addr - start
        vm = k.arch.vmemmap_start
        if vm <= addr < vm + (k.ram_bytes >> 12) * k.arch.struct_page_size:
            return "struct page", (addr - vm) % k.arch.struct_page_size
        block = self.truth.holder_block(addr)
        if block is not None:
            return f"{block.kind} object 0x{block.base:x} (size {block.size})", addr - block.base
        obj = self.kl.find(addr)
        if obj is not None:
            return f"object 0x{obj.pointer:x} (size {obj.size})", addr - obj.pointer
        return "unknown memory", 0

    # -- false positives -----------------------------------------------------
    def word_points_into(self, edge: Edge, target: KmemleakObject) -> bool:
        """Whether an aligned word covering the edge's bytes, as kmemleak reads it, is
        inside *target*: the bytes decide, not the encoding's class (a top-byte tag is
        cut off in a 32-bit word; a small XOR key can stay inside a large object)."""
        arch, mem = self.k.arch, self.k.memory
        ws = arch.word_size
        lo = arch.untag(target.pointer)
        for addr, data in edge.pieces:
            for w in range(addr & ~(ws - 1), addr + len(data), ws):
                if lo <= arch.untag(mem.read_word(w)) < lo + target.size:
                    return True
        return False

    def why_invisible(self, edge: Edge, target: KmemleakObject) -> tuple[str, str]:
        arch = self.k.arch
        enc = edge.encoding
        if not self.word_points_into(edge, target):
            return f"encoding {enc.label}", f"stored with {type(enc).__name__}: {enc.note}"
        if edge.root is not None:
            if edge.root.startswith("local") and not self.kl.kmemleak_stack_scan:
                return "stack=off", "the slot is a local on a task stack, and stack scanning is off"
            return "visible reference", f"a {edge.root} holds a plain reference: not yet scanned?"
        assert edge.holder is not None
        hb = self.truth.blocks.get(edge.holder)
        tree = "percpu" if hb is not None and hb.kind == "percpu" else "virtual"
        hobj = self.kl.find(edge.holder, tree=tree)
        if hobj is None:
            if hb is not None and hb.kind == "pages":
                return ("untracked page memory", "the slot is in alloc_pages memory, whose "
                        "contents kmemleak never scans")
            return "untracked holder", "the slot is in memory kmemleak does not track"
        if hobj.min_count == -1:
            return "black holder", "the slot is in an object painted black (kmemleak_ignore)"
        if hobj.flags & OBJECT_NO_SCAN:
            return "no-scan holder", "the slot is in a kmemleak_no_scan object"
        if hobj.areas and not hobj.flags & OBJECT_FULL_SCAN and not any(
                a.start <= edge.slot and edge.slot + arch.word_size <= a.start + a.size
                for a in hobj.areas):
            return "outside scan areas", "the slot is outside the holder's kmemleak_scan_area"
        if not color_gray(hobj):
            return ("unreferenced holder", f"the holder 0x{hobj.pointer:x} is itself white: "
                    "its memory was never scanned")
        if target.min_count > 1:
            return ("min_count not met", f"the object needs {target.min_count} references "
                    "and fewer were found")
        return "visible reference", "a plain reference in scanned memory (not yet scanned?)"

    # -- false negatives -----------------------------------------------------
    def kept_by(self, obj: KmemleakObject, block: Block | None) -> KeptBy | None:
        assert self.scan is not None
        g = self.scan.grayed_by.get(obj.pointer)
        if g is None:
            return None
        region, offset = self.region(g.address)
        truth = self.truth
        edge = truth.edges.get(g.address)
        base = block.base if block is not None else None
        if edge is not None and edge.target_base == base:
            what = "held by a leaked object"
            detail = (f"a real reference from {region}, which is itself unreachable but "
                      "kept gray")
        else:
            hist = truth.history.get(g.address)
            if hist is not None and hist.edge.target_base == base:
                what = {"frame returned": "stale stack slot",
                        "holder freed": "stale bytes of a freed object",
                        "overwritten": "copy of an old reference"}.get(hist.reason, "stale word")
                detail = (f"the word is left over from a reference that ended ({hist.reason}) "
                          f"at jiffies {hist.jiffies}")
                if hist.reason == "holder freed" and truth.holder_block(g.address) is not None:
                    what = "stale bytes of a reused object"
                    detail += "; the memory now belongs to another live object"
            elif region.startswith("stack of"):
                what, detail = "stale stack word", "a word on a task stack that no live frame means"
            elif self._is_freelist_word(g.address):
                what, detail = ("freelist word", "SLUB's free pointer, left in the object "
                                "when it was allocated")
            else:
                what, detail = ("integer collision", "a data word whose value happens to fall "
                                "inside the object")
        return KeptBy(region, g.address, offset, g.value, what, detail)

    def _is_freelist_word(self, addr: int) -> bool:
        block = self.truth.holder_block(addr)
        if block is None or block.kind != "slab":
            return False
        cache = self.k.slab.caches.get(block.cache)
        return cache is not None and addr - block.base == cache.offset

    # -- the whole judgement ---------------------------------------------------
    def run(self) -> Judgement:
        kl, scan = self.kl, self.scan
        store = kl.store
        rows = store.live_rows()
        view = store.view
        flags = store.column("flags", rows)
        pointer = store.column("pointer", rows)
        listed, _ = unreferenced_rows(kl, rows)
        reported = listed & (flags & OBJECT_REPORTED != 0)
        reach = self.reach
        # The common case, found for all objects at once: a virtual object that starts
        # a reachable block and is not reported is a true negative.
        addr = pointer | np.uint64(0xFF00_0000_0000_0000) if self.k.arch.top_byte_tags \
            else pointer
        bases = np.fromiter(reach, dtype=np.uint64, count=len(reach))
        plain_tn = ((flags & (OBJECT_PERCPU | OBJECT_PHYS) == 0) & ~reported
                    & np.isin(addr, bases))
        pointers = pointer.tolist()
        sizes = store.column("size", rows).tolist()
        out: list[Verdict | None] = [None] * len(rows)
        for i in np.flatnonzero(plain_tn).tolist():
            out[i] = Verdict(pointers[i], sizes[i], TRUE_NEGATIVE, "reachable",
                             "reachable from a real root", True, False)
        unreachable: dict[int, KmemleakObject] = {}
        for i in np.flatnonzero(~plain_tn).tolist():
            obj = view(int(rows[i]))
            block = self.block_of(obj)
            reachable = block.base in reach if block is not None else self.reachable(obj, None)
            if not reachable and block is not None:
                unreachable[block.base] = obj
            out[i] = self.verdict(obj, block, reachable, bool(reported[i]))
        # object_list order; a pointer met twice keeps its first place and its last verdict
        verdicts: dict[int, Verdict] = dict(zip(pointers, out, strict=True))  # type: ignore[arg-type]
        groups = self.leak_groups(unreachable)
        leak_of: dict[int, tuple[str, int]] = {}
        for g in groups:
            for m in g.members:
                leak_of[m] = ("direct" if m in g.leaders else "indirect", g.ident)
        for base, obj in unreachable.items():
            if base in leak_of:
                kind, ident = leak_of[base]
                v = verdicts[obj.pointer]
                verdicts[obj.pointer] = Verdict(
                    v.pointer, v.size, v.kind, v.cause, v.detail, v.reachable, v.reported,
                    v.referrers, v.kept_by, kind, ident, v.path)
        return Judgement(verdicts, tuple(groups), scan.jiffies if scan else None)

    def verdict(self, obj: KmemleakObject, block: Block | None, reachable: bool,
                reported: bool) -> Verdict:
        base = (obj.pointer, obj.size)
        if reachable:
            if not reported:
                # No path here: it would cost O(depth) per object; explain() gives it.
                return _true_negative(obj)
            path = tuple(self.truth.path_to_root(block.base, self.parents)) if block else ()
            refs = []
            if block is not None:
                for edge in self.truth.referrers(block.base):
                    if edge.holder is None or edge.holder in self.reach:
                        why, detail = self.why_invisible(edge, obj)
                        refs.append(Referrer(edge, why, detail))
            # Name the intrinsic reason first: a referrer that is only missed because
            # its holder is itself white (or not scanned yet) is a consequence.
            refs.sort(key=lambda r: r.why in _SECONDARY_CAUSES)
            cause = refs[0].why if refs else "reachable root"
            detail = refs[0].detail if refs else "the object is a root of the program"
            return Verdict(*base, FALSE_POSITIVE, cause, detail, True, True, tuple(refs),
                           path=path)
        if reported:
            return Verdict(*base, TRUE_POSITIVE, "unreachable",
                           "no reference the program holds reaches it", False, True)
        scan = self.scan
        if scan is None:
            return Verdict(*base, PENDING, "no scan yet", "kmemleak has not scanned yet",
                           False, False)
        if obj.min_count == -1:
            return Verdict(*base, FALSE_NEGATIVE, "ignored",
                           "painted black with kmemleak_ignore: never reported", False, False)
        if obj.min_count == 0:
            if obj.flags & OBJECT_REPORTED:
                return Verdict(*base, FALSE_NEGATIVE, "made a root by clear",
                               "reported once, then `clear` made it permanently gray",
                               False, False)
            return Verdict(*base, FALSE_NEGATIVE, "not_leak",
                           "annotated kmemleak_not_leak (min_count 0): never reported",
                           False, False)
        if (obj.jiffies - scan.jiffies) & self.k.arch.word_mask < 1 << 31 \
                and obj.jiffies != scan.jiffies:
            return Verdict(*base, PENDING, "not scanned yet", "created after the last scan",
                           False, False)
        if obj.pointer in scan.checksum_spared:
            return Verdict(*base, PENDING, "checksum changed",
                           "its contents changed since the previous scan: spared once",
                           False, False)
        if obj.pointer in scan.too_young:
            return Verdict(*base, PENDING, "too young",
                           "younger than the 5 s minimum age at the scan's start", False, False)
        kept = self.kept_by(obj, block)
        if kept is None:
            if obj.jiffies == scan.jiffies and not scan.interrupted:
                # An object as old as the scan that was there is in too_young (white)
                # or grayed_by (gray): this one was created after it, in the same jiffy.
                return Verdict(*base, PENDING, "not scanned yet",
                               "created after the last scan", False, False)
            return Verdict(*base, PENDING, "not reported yet",
                           "white but not reported by the last scan", False, False)
        if not time_before_eq(obj.jiffies + self.kl.jiffies_min_age, scan.jiffies,
                              self.k.arch.word_mask):
            # Not a false negative (yet): white or gray, it was too young to be reported.
            return Verdict(*base, PENDING, "too young",
                           "younger than the 5 s minimum age at the scan's start; "
                           f"kept gray by 0x{kept.value:x} at {kept.region}+0x{kept.offset:x} "
                           f"({kept.what})", False, False, kept_by=kept)
        return Verdict(*base, FALSE_NEGATIVE, kept.what,
                       f"kept gray by 0x{kept.value:x} at {kept.region}+0x{kept.offset:x}: "
                       f"{kept.detail}", False, False, kept_by=kept)

    def leak_groups(self, unreachable: dict[int, KmemleakObject]) -> list[LeakGroup]:
        """Group unreachable tracked blocks by the leader whose fix frees them."""
        nodes = list(unreachable)
        succ = {b: sorted({e.target_base for e in self.truth.out_edges(b)
                           if e.target_base in unreachable and e.target_base != b})
                for b in nodes}
        comp = _scc(nodes, succ)
        has_in: set[int] = set()
        for b in nodes:
            for t in succ[b]:
                if comp[t] != comp[b]:
                    has_in.add(comp[t])
        groups: list[LeakGroup] = []
        assigned: set[int] = set()
        first_serial: dict[int, int] = {}  # a component's earliest object: a stable order
        for b in nodes:
            c, serial = comp[b], unreachable[b].serial
            if serial < first_serial.get(c, serial + 1):
                first_serial[c] = serial
        leader_comps = sorted({comp[b] for b in nodes if comp[b] not in has_in},
                              key=first_serial.__getitem__)
        pos = {b: i for i, b in enumerate(nodes)}  # object_list order
        members_of: dict[int, list[int]] = {}
        for b in nodes:
            members_of.setdefault(comp[b], []).append(b)
        for c in leader_comps:
            leaders = tuple(members_of[c])
            seen, stack = set(leaders), list(leaders)
            while stack:
                for t in succ[stack.pop()]:
                    if t not in seen:
                        seen.add(t)
                        stack.append(t)
            members = tuple(sorted((b for b in seen if b not in assigned), key=pos.__getitem__))
            assigned.update(members)
            groups.append(LeakGroup(len(groups) + 1, leaders, members,
                                    sum(unreachable[m].size for m in members)))
        return groups


def _true_negative(obj: KmemleakObject) -> Verdict:
    return Verdict(obj.pointer, obj.size, TRUE_NEGATIVE, "reachable",
                   "reachable from a real root", True, False)


def _scc(nodes: list[int], succ: dict[int, list[int]]) -> dict[int, int]:
    """Strongly connected components (iterative Tarjan): node -> component id."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    comp: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            recurse = False
            for j in range(i, len(succ[v])):
                w = succ[v][j]
                if w not in index:
                    work.append((v, j + 1))
                    work.append((w, 0))
                    recurse = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp[w] = v
                    if w == v:
                        break
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
    return comp


def judge(k: Kernel) -> Judgement:
    """Judge kmemleak's last scan of *k* against the truth (see the module docstring)."""
    return _Judge(k).run()
