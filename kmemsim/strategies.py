"""Hypothesis strategies for kmemsim kernels, heaps, operation sequences and scans.

Requires the ``hypothesis`` package.  This module is public but is not
imported by ``kmemsim/__init__``: import it explicitly.

Every strategy is keyword-only, checks its arguments *before* drawing
(raising :class:`hypothesis.errors.InvalidArgument`), and says how its
examples shrink.  Examples are **descriptions first**: :func:`heaps` draws a
:class:`HeapSpec` (plain data: node allocators and sizes, links, stale and
data words) and builds it on a fresh kernel, so a failing example prints as a
short, replayable description and :meth:`Heap.replay` rebuilds it.

>>> from hypothesis import given, settings
>>> from kmemsim.strategies import heaps
>>> @settings(max_examples=5, deadline=None)
... @given(heap=heaps(max_nodes=4))
... def test_roots_keep_plain_targets(heap):
...     heap.kernel.sleep(6)
...     listed = {r.pointer for s in heap.scan(2) for r in s.unreferenced}
...     assert not listed & {heap.addresses[i] for i in heap.spec.plain_reachable()}
>>> test_roots_keep_plain_targets()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from .kernel import Kernel, Task
from .kmemleak.scan import ScanResult
from .layout import arch_by_name
from .mm.slab import KmemCache
from .truth import Encoding, Interior, LowBitTag, OnePastTheEnd, Plain, TopByteTag, Xor

# Everything bound after this point and not private is public (checked at the end).
_IMPORTED = set(globals())

__all__ = [
    "ALLOCATORS",
    "ANNOTATIONS",
    "CACHE_SIZE",
    "DEFAULT_ENCODINGS",
    "ENCODING_CHOICES",
    "OPERATIONS",
    "SHAPES",
    "DataWord",
    "Heap",
    "HeapSpec",
    "KernelSpec",
    "Link",
    "Node",
    "Operation",
    "Replayer",
    "ScanConfig",
    "heaps",
    "kernel_specs",
    "kernels",
    "operations",
    "scan_configs",
]

#: Allocators a heap node or an ``alloc`` operation can come from.
ALLOCATORS = ("kzalloc", "kmalloc", "vmalloc", "percpu", "kmem_cache")
#: Pointer-graph shapes :func:`heaps` can draw.
SHAPES = ("list", "tree", "cycle", "dag", "random")
#: Annotations an ``annotate`` operation applies.
ANNOTATIONS = ("not_leak", "ignore", "no_scan", "scan_area")
#: Operation names, in the order :func:`operations` shrinks towards (first is simplest).
OPERATIONS = ("alloc", "store", "sleep", "scan", "free", "overwrite", "annotate", "stale",
              "vm_struct", "clear")
#: Encodings used when a strategy is asked for non-plain references.
DEFAULT_ENCODINGS: tuple[Encoding, ...] = (
    Interior(offset=8), LowBitTag(tag=1), OnePastTheEnd(), Xor(key=0x5A), TopByteTag(tag=0x3C))
#: Object size of the ``kmem_cache`` every heap and replayer creates.
CACHE_SIZE = 64
_ARCHS = ("x86_64", "arm64", "i386")
_HZ = (1000, 250, 300, 100)
_NO_AUTO_SCAN = {"CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN": False}
_KMEMLEAK = "/sys/kernel/debug/kmemleak"


def _check_choices(name: str, values: Sequence[object], allowed: Sequence[object]) -> None:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InvalidArgument(f"{name} must be a sequence, got {values!r}")
    if not values:
        raise InvalidArgument(f"{name} must not be empty")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise InvalidArgument(f"{name}: {bad!r} not among {tuple(allowed)!r}")


def _check_probability(name: str, p: float) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise InvalidArgument(f"{name} must be a number in [0, 1], got {p!r}")


def _check_range(lo_name: str, lo: int, hi_name: str, hi: int, minimum: int = 0) -> None:
    for name, v in ((lo_name, lo), (hi_name, hi)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidArgument(f"{name} must be an int, got {v!r}")
        if v < minimum:
            raise InvalidArgument(f"{name} must be at least {minimum}, got {v}")
    if lo > hi:
        raise InvalidArgument(f"{lo_name}={lo} must not exceed {hi_name}={hi}")


def _weighted(p: float) -> st.SearchStrategy[bool]:
    """True with probability *p*; shrinks towards False (the draw shrinks to 0)."""
    cut = 100 - round(100 * p)
    return st.integers(0, 99).map(lambda x: x >= cut)


# ------------------------------------------------------------------- kernels
@dataclass(frozen=True, slots=True)
class KernelSpec:
    """How to boot a kernel: a value, so examples print and replay.

    ``auto_scan=False`` (the default) boots without the scan thread, so the
    only scans are the ones a test runs.

    >>> k = KernelSpec(arch="i386", stack_scan=False).boot()
    >>> k.arch.word_size, k.kmemleak.kmemleak_stack_scan
    (4, False)
    """

    arch: str = "x86_64"
    hz: int = 1000
    ncpus: int = 2
    stack_scan: bool = True
    auto_scan: bool = False

    def boot(self) -> Kernel:
        k = Kernel(arch=self.arch, hz=self.hz, ncpus=self.ncpus,
                   config=None if self.auto_scan else _NO_AUTO_SCAN)
        if not self.stack_scan:
            k.write(_KMEMLEAK, "stack=off")
        return k


def kernel_specs(*, archs: Sequence[str] = _ARCHS, hz: Sequence[int] = _HZ,
                 ncpus: Sequence[int] = (1, 2, 4), stack_scan: Sequence[bool] = (True, False),
                 auto_scan: bool = False) -> st.SearchStrategy[KernelSpec]:
    """Draw a :class:`KernelSpec` from the given choices.

    Shrinks towards the first choice of each parameter (by default x86_64,
    HZ=1000, one CPU, stack scanning on).

    >>> kernel_specs(archs=["sparc"])
    Traceback (most recent call last):
    ...
    hypothesis.errors.InvalidArgument: archs: ['sparc'] not among ('x86_64', 'arm64', 'i386')
    """
    _check_choices("archs", archs, _ARCHS)
    _check_choices("hz", hz, _HZ)
    _check_choices("ncpus", ncpus, range(1, 65))
    _check_choices("stack_scan", stack_scan, (True, False))
    if not isinstance(auto_scan, bool):
        raise InvalidArgument(f"auto_scan must be a bool, got {auto_scan!r}")
    return st.builds(KernelSpec, arch=st.sampled_from(archs), hz=st.sampled_from(hz),
                     ncpus=st.sampled_from(ncpus), stack_scan=st.sampled_from(stack_scan),
                     auto_scan=st.just(auto_scan))


def kernels(*, archs: Sequence[str] = _ARCHS, hz: Sequence[int] = _HZ,
            ncpus: Sequence[int] = (1, 2, 4), stack_scan: Sequence[bool] = (True, False),
            auto_scan: bool = False) -> st.SearchStrategy[Kernel]:
    """A booted :class:`~kmemsim.Kernel`: :func:`kernel_specs` mapped through ``boot``.

    Shrinks like :func:`kernel_specs`.  Use :func:`kernel_specs` when the
    falsifying example should print as a value rather than a kernel.
    """
    return kernel_specs(archs=archs, hz=hz, ncpus=ncpus, stack_scan=stack_scan,
                        auto_scan=auto_scan).map(KernelSpec.boot)


# --------------------------------------------------------------------- heaps
@dataclass(frozen=True, slots=True)
class Node:
    """One heap object: its allocator and requested size."""

    allocator: str
    size: int


@dataclass(frozen=True, slots=True)
class Link:
    """A reference the program stores: in node ``source`` (or a kernel static when
    ``None``), word ``slot``, pointing to node ``target`` written with ``encoding``."""

    source: int | None
    slot: int
    target: int
    encoding: Encoding = field(default_factory=Plain)


@dataclass(frozen=True, slots=True)
class DataWord:
    """A word that is data, not a reference: ``value``, or (when ``into`` is a node
    index) that node's address plus ``value`` (an integer collision)."""

    source: int | None
    slot: int
    value: int
    into: int | None = None


@dataclass(frozen=True)
class HeapSpec:
    """A heap as plain data; :meth:`build` makes it on a fresh kernel.

    Node ``i`` lives at ``Heap.addresses[i]``; links and data words fill
    words of their source node in order; kernel-static slots live in one
    static array.  ``stale`` lists nodes whose address a returned stack frame
    of a worker task left behind (seen only with stack scanning on).
    """

    kernel: KernelSpec
    nodes: tuple[Node, ...]
    shape: str
    links: tuple[Link, ...]
    stale: tuple[int, ...] = ()
    data: tuple[DataWord, ...] = ()

    def plain_reachable(self) -> frozenset[int]:
        """Nodes reachable from the statics through :class:`Plain` links only.

        kmemleak must never report these: every holder is tracked and scanned.
        """
        out: dict[int | None, list[int]] = {}
        for ln in self.links:
            if type(ln.encoding) is Plain:
                out.setdefault(ln.source, []).append(ln.target)
        seen: set[int] = set()
        todo: list[int | None] = [None]
        while todo:
            for t in out.get(todo.pop(), []):
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return frozenset(seen)

    def static_words(self) -> int:
        return 1 + max([ln.slot for ln in self.links if ln.source is None]
                       + [d.slot for d in self.data if d.source is None] + [0])

    def build(self) -> Heap:
        """Boot the kernel and make the heap on it.

        >>> spec = HeapSpec(KernelSpec(), (Node("kzalloc", 32), Node("kzalloc", 32)), "list",
        ...                 (Link(None, 0, 0), Link(0, 0, 1)))
        >>> h = spec.build()
        >>> h.kernel.memory.read_word(h.addresses[0]) == h.addresses[1]
        True
        """
        k = self.kernel.boot()
        ws = k.arch.word_size
        cache = k.kmem_cache_create("heap_cache", CACHE_SIZE)
        addrs = tuple(_alloc(k, n.allocator, n.size, cache) for n in self.nodes)
        statics = k.define_static("heap_statics", self.static_words() * ws)

        def slot_addr(source: int | None, slot: int) -> int:
            if source is None:
                return statics + slot * ws
            base = addrs[source]
            if self.nodes[source].allocator == "percpu":
                base = k.per_cpu_ptr(base, 0)
            return base + slot * ws

        for ln in self.links:
            k.store(slot_addr(ln.source, ln.slot), addrs[ln.target], encoding=ln.encoding)
        for d in self.data:
            value = d.value if d.into is None else addrs[d.into] + d.value
            k.memory.write_word(slot_addr(d.source, d.slot), value & k.arch.word_mask)
        if self.stale:
            worker = k.spawn("heap_worker")
            with k.task_context(worker), k.stack_frame(len(self.stale)) as f:
                for i, node in enumerate(self.stale):
                    k.store(f.slot(i), addrs[node])
        return Heap(self, k, addrs, statics)


@dataclass(eq=False)
class Heap:
    """A built heap: the kernel, the node addresses and the static array.

    Its ``repr`` is the :class:`HeapSpec`, so a falsifying example is a
    description; :meth:`replay` builds the same heap on a new kernel.
    """

    spec: HeapSpec
    kernel: Kernel
    addresses: tuple[int, ...]
    statics: int

    def __repr__(self) -> str:
        return f"Heap({self.spec!r})"

    def replay(self) -> Heap:
        """The same heap on a freshly booted kernel (same addresses: boots are deterministic)."""
        return self.spec.build()

    def scan(self, n: int = 1, engine: str | None = None) -> list[ScanResult]:
        """Run *n* scans now (no sleeping in between)."""
        return [self.kernel.kmemleak.scan(engine=engine) for _ in range(n)]


def _alloc(k: Kernel, allocator: str, size: int, cache: KmemCache) -> int:
    if allocator == "kzalloc":
        return k.kzalloc(size)
    if allocator == "kmalloc":
        return k.kmalloc(size)
    if allocator == "vmalloc":
        return k.vzalloc(size)
    if allocator == "percpu":
        return k.alloc_percpu(size)
    return k.kmem_cache_zalloc(cache)


def heaps(*, kernel: st.SearchStrategy[KernelSpec] | None = None, min_nodes: int = 1,
          max_nodes: int = 8, allocators: Sequence[str] = ALLOCATORS,
          shapes: Sequence[str] = SHAPES, min_size: int = 32, max_size: int = 256,
          root_probability: float = 0.5, cut_probability: float = 0.2,
          encoding_probability: float = 0.0,
          encodings: Sequence[Encoding] = DEFAULT_ENCODINGS,
          max_stale_words: int = 2, max_data_words: int = 2) -> st.SearchStrategy[Heap]:
    """A :class:`Heap`: nodes, a pointer graph of one shape, roots, leaks, odd words.

    * ``kernel``: a strategy of :class:`KernelSpec` (default :func:`kernel_specs`);
    * nodes: ``min_nodes..max_nodes`` objects from ``allocators``, sizes in
      ``min_size..max_size`` (``kmem_cache`` nodes are 64 bytes);
    * shape: ``list`` (i -> i+1), ``cycle`` (and back to 0), ``tree`` (a random
      parent for each node), ``dag`` (edges to later nodes), ``random`` (any
      edges, self-loops included); each shape edge is cut with
      ``cut_probability``, which detaches subgraphs (leaks);
    * roots: each node is referenced from a kernel static with ``root_probability``;
      nodes no root reaches are leaks;
    * encodings: each reference is written with one of ``encodings`` (from
      :mod:`kmemsim.truth`) with ``encoding_probability``, else :class:`Plain`;
    * up to ``max_stale_words`` stale stack words and ``max_data_words`` data
      words (random integers, or integer collisions into a node).

    A node keeps its last word free of links.  Shrinks towards fewer nodes,
    the first allocator and shape, the smallest sizes, fewer roots (hence
    more leaks), fewer links, plain encodings, no stale and no data words.

    >>> heaps(min_nodes=3, max_nodes=2)
    Traceback (most recent call last):
    ...
    hypothesis.errors.InvalidArgument: min_nodes=3 must not exceed max_nodes=2
    """
    _check_range("min_nodes", min_nodes, "max_nodes", max_nodes)
    _check_range("min_size", min_size, "max_size", max_size, minimum=16)
    if max_size > 4096:
        raise InvalidArgument(f"max_size must be at most 4096, got {max_size}")
    _check_choices("allocators", allocators, ALLOCATORS)
    _check_choices("shapes", shapes, SHAPES)
    for name, p in (("root_probability", root_probability), ("cut_probability", cut_probability),
                    ("encoding_probability", encoding_probability)):
        _check_probability(name, p)
    if encoding_probability and not encodings:
        raise InvalidArgument("encodings must not be empty when encoding_probability > 0")
    if not all(isinstance(e, Encoding) for e in encodings):
        raise InvalidArgument("encodings must be kmemsim.truth.Encoding instances")
    _check_range("max_stale_words", max_stale_words, "max_stale_words", max_stale_words)
    _check_range("max_data_words", max_data_words, "max_data_words", max_data_words)
    kernel_st = kernel_specs() if kernel is None else kernel
    encs = tuple(encodings)

    @st.composite
    def build(draw: st.DrawFn) -> Heap:
        kspec = draw(kernel_st, label="kernel")
        n = draw(st.integers(min_nodes, max_nodes), label="nodes")
        nodes = []
        for _ in range(n):
            alloc = draw(st.sampled_from(allocators))
            size = CACHE_SIZE if alloc == "kmem_cache" else draw(st.integers(min_size, max_size))
            nodes.append(Node(alloc, size))
        ws = arch_by_name(kspec.arch).word_size
        shape = draw(st.sampled_from(shapes), label="shape")
        pairs: list[tuple[int, int]] = []
        if shape in ("list", "cycle"):
            pairs = [(i, i + 1) for i in range(n - 1)]
            if shape == "cycle" and n > 1:
                pairs.append((n - 1, 0))
        elif shape == "tree":
            pairs = [(draw(st.integers(0, i - 1)), i) for i in range(1, n)]
        elif n > 1 or shape == "random":
            lo = st.integers(0, n - 1)
            raw = draw(st.lists(st.tuples(lo, lo), max_size=2 * n))
            pairs = [(a, b) for a, b in raw if shape == "random" or a < b]
        cut = _weighted(cut_probability)
        pairs = [pr for pr in pairs if not draw(cut)]
        rooted = [i for i in range(n) if draw(_weighted(root_probability))]

        def encoding() -> Encoding:
            if len(encs) > 0 and draw(_weighted(encoding_probability)):
                return draw(st.sampled_from(encs))
            return Plain()

        used = [0] * n
        links: list[Link] = []
        for a, b in pairs:
            if used[a] < nodes[a].size // ws - 1:  # the last word stays free of links
                links.append(Link(a, used[a], b, encoding()))
                used[a] += 1
        links += [Link(None, j, i, encoding()) for j, i in enumerate(rooted)]
        node = st.integers(0, n - 1)
        stale = tuple(draw(st.lists(node, max_size=max_stale_words), label="stale words"))
        data: list[DataWord] = []
        for j, (src, collide, value) in enumerate(draw(st.lists(
                st.tuples(st.one_of(st.none(), node), st.booleans(),
                          st.integers(0, (1 << (8 * ws)) - 1)),
                max_size=max_data_words), label="data words")):
            if src is None:
                slot = len(rooted) + j
            else:
                slot = nodes[src].size // ws - 1
            into = value % n if collide else None
            val = (value % nodes[value % n].size) if collide else value
            data.append(DataWord(src, slot, val, into))
        return HeapSpec(kspec, tuple(nodes), shape, tuple(links), stale, tuple(data)).build()

    return build()


# ---------------------------------------------------------------- operations
class Operation(NamedTuple):
    """One kernel operation: a name and small integers that pick among live blocks.

    Replaying the same operations on kernels booted alike does the same
    thing (:class:`Replayer`); the integers are taken modulo what exists.
    """

    name: str
    a: int = 0
    b: int = 0
    c: int = 0


ENCODING_CHOICES: tuple[Encoding, ...] = (Plain(), *DEFAULT_ENCODINGS)


class Replayer:
    """Applies :class:`Operation` values to one kernel, keeping its live blocks.

    >>> k = KernelSpec().boot()
    >>> r = Replayer(k)
    >>> for op in [Operation("alloc", 0, 64), Operation("store", 0, 1, 0), Operation("scan")]:
    ...     r.apply(op)
    >>> len(r.blocks), r.scans[-1].engine
    (1, 'fast')
    """

    STATIC_WORDS = 16

    def __init__(self, k: Kernel) -> None:
        self.k = k
        ws = k.arch.word_size
        self.statics = k.define_static("replay_statics", self.STATIC_WORDS * ws)
        self.cache = k.kmem_cache_create("replay_cache", CACHE_SIZE)
        self.worker: Task = k.spawn("replay_worker")
        self.blocks: list[tuple[int, int, str]] = []
        """Live blocks: ``(address, size, allocator)`` in allocation order."""
        self.scans: list[ScanResult] = []

    def free_as(self, kind: str, addr: int) -> None:
        """Free *addr* with the call that matches how a block of *kind* was allocated."""
        k = self.k
        if kind == "percpu":
            k.free_percpu(addr)
        elif kind == "vmalloc":
            k.vfree(addr)
        elif kind == "kmem_cache":
            k.kmem_cache_free(self.cache, addr)
        else:
            k.kfree(addr)

    def pick(self, i: int) -> tuple[int, int, str]:
        return self.blocks[i % len(self.blocks)]

    def slot(self, holder: int, word: int) -> int:
        """Word *word* of block ``holder`` (mod its size), or of the statics when the
        index lands one past the blocks."""
        ws = self.k.arch.word_size
        if holder % (len(self.blocks) + 1) == len(self.blocks):
            return self.statics + ws * (word % self.STATIC_WORDS)
        addr, size, kind = self.pick(holder)
        if kind == "percpu":
            addr = self.k.per_cpu_ptr(addr, word % self.k.ncpus)
        return addr + ws * (word % max(1, size // ws))

    def apply(self, op: Operation) -> None:
        k, kl = self.k, self.k.kmemleak
        name, a, b, c = op
        if name == "alloc":
            kind = ALLOCATORS[a % len(ALLOCATORS)]
            size = CACHE_SIZE if kind == "kmem_cache" else max(8, b)
            if kind == "percpu":
                size = min(size, 256)
            addr = _alloc(k, kind, size, self.cache)
            if addr:
                self.blocks.append((addr, size, kind))
        elif name == "scan":
            self.scans.append(kl.scan())
        elif name == "sleep":
            k.sleep(a)
        elif name == "clear":
            k.write(_KMEMLEAK, "clear")
        elif not self.blocks:
            return
        elif name == "free":
            addr, _, kind = blk = self.pick(a)
            self.blocks.remove(blk)
            self.free_as(kind, addr)
        elif name == "store":
            target = self.pick(a)[0]
            k.store(self.slot(b, c), target, encoding=ENCODING_CHOICES[(c >> 8) % 6])
        elif name == "overwrite":
            k.memory.write_word(self.slot(b, c), a & k.arch.word_mask)
        elif name == "stale":
            with k.task_context(self.worker), k.stack_frame(1 + b % 4) as f:
                k.store(f.slot(b % (1 + b % 4)), self.pick(a)[0])
        elif name == "vm_struct":
            vmallocs = [blk for blk in self.blocks if blk[2] == "vmalloc"]
            if vmallocs:
                # a pointer to a vmalloc block's vm_struct (surplus references are
                # forwarded through excess_ref), or the vm_struct pointing to itself
                vm = k.vmalloc_allocator.areas[vmallocs[a % len(vmallocs)][0]].vm_struct
                slot = vm + (c % 2) * 7 * k.arch.word_size  # vm->next or vm->caller
                k.store(slot if b % 3 == 0 else self.slot(b, c), vm)
        elif name == "annotate":
            addr, size, kind = self.pick(a)
            what = ANNOTATIONS[b % len(ANNOTATIONS)]
            if what == "not_leak":
                kl.kmemleak_not_leak(addr)
            elif what == "ignore":
                (kl.kmemleak_ignore_percpu if kind == "percpu" else kl.kmemleak_ignore)(addr)
            elif what == "no_scan":
                kl.kmemleak_no_scan(addr)
            elif kind != "percpu":
                ws = k.arch.word_size
                words = max(1, size // ws)
                off = ws * (c % words)
                kl.kmemleak_scan_area(addr + off, ws * (1 + (c >> 4) % (words - off // ws)))


def operations(*, min_size: int = 1, max_size: int = 30,
               names: Sequence[str] = OPERATIONS) -> st.SearchStrategy[list[Operation]]:
    """A list of :class:`Operation` for :class:`Replayer`.

    Shrinks towards shorter lists, operations earlier in ``names`` (``alloc``
    first), and arguments 0 (the first live block, the smallest size, a plain
    encoding).

    >>> operations(names=[])
    Traceback (most recent call last):
    ...
    hypothesis.errors.InvalidArgument: names must not be empty
    """
    _check_range("min_size", min_size, "max_size", max_size)
    _check_choices("names", names, OPERATIONS)
    arg = st.integers(0, 1 << 12)
    op = st.builds(Operation, st.sampled_from(names), arg, arg, arg)
    sleep = st.builds(Operation, st.just("sleep"), st.integers(1, 7))
    return st.lists(st.one_of(op, sleep) if "sleep" in names else op,
                    min_size=min_size, max_size=max_size)


# --------------------------------------------------------------------- scans
@dataclass(frozen=True, slots=True)
class ScanConfig:
    """How to scan: engine, stack scanning, number of scans and the sleep before each.

    >>> k = KernelSpec().boot(); p = k.kzalloc(32)
    >>> [len(r.new_leaks) for r in ScanConfig(scans=2).run(k)]
    [1, 0]
    """

    engine: str = "reference"
    stack_scan: bool = True
    scans: int = 2
    interval: int = 6

    def run(self, k: Kernel) -> list[ScanResult]:
        """Apply the stack setting, then sleep and scan ``scans`` times."""
        k.write(_KMEMLEAK, "stack=on" if self.stack_scan else "stack=off")
        out = []
        for _ in range(self.scans):
            k.sleep(self.interval)
            out.append(k.kmemleak.scan(engine=self.engine))
        return out


def scan_configs(*, engines: Sequence[str] = ("reference", "fast"),
                 stack_scan: Sequence[bool] = (True, False), min_scans: int = 1,
                 max_scans: int = 3, max_interval: int = 10) -> st.SearchStrategy[ScanConfig]:
    """A :class:`ScanConfig`.

    Shrinks towards the first engine and stack setting, ``min_scans`` scans
    and no sleep between them.
    """
    _check_choices("engines", engines, ("reference", "fast"))
    _check_choices("stack_scan", stack_scan, (True, False))
    _check_range("min_scans", min_scans, "max_scans", max_scans, minimum=1)
    _check_range("max_interval", max_interval, "max_interval", max_interval)
    return st.builds(ScanConfig, engine=st.sampled_from(engines),
                     stack_scan=st.sampled_from(stack_scan),
                     scans=st.integers(min_scans, max_scans),
                     interval=st.integers(0, max_interval))


# Hypothesis's own import-time check: ``__all__`` lists exactly the public names.
_PUBLIC = {n for n in set(globals()) - _IMPORTED if not n.startswith("_")}
assert set(__all__) == _PUBLIC, sorted(_PUBLIC ^ set(__all__))
del _PUBLIC, _IMPORTED
