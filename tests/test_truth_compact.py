"""The compact edges of bulk plain stores answer exactly as the records built one by one.

``Kernel.store_many`` keeps its edges as rows of the truth's edge table
(``kmemsim.truth.model.EdgeTable``) and builds an ``Edge`` only when one is
read.  A twin kernel runs the same program with ``Kernel.store`` one call at
a time; after every step of a random program (bulk and single stores,
overwrites by ``write_word``, ``memory.write``, ``write_words`` and
``store``, unaligned partial overwrites, frees of holders and targets,
partial memblock frees) every public view of the two truths must be equal,
in the same order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmemsim import Kernel
from kmemsim.truth import judge
from kmemsim.truth.encodings import Xor
from kmemsim.truth.model import _COMPACT_MIN, EdgeTable, Truth, _slots

NOBJ = 12
OBJ_WORDS = 8


def views(t: Truth) -> tuple[Any, ...]:
    """Every public answer of a truth, in its own order."""
    edges = t.edges
    slots = list(edges)
    reach = t.reachable_blocks()
    return (
        list(edges.items()), list(edges.values()), slots, len(edges),
        [edges[s] for s in slots], [edges.get(s) for s in slots], dict(edges),
        [s in edges for s in slots], list(t.history.items()), list(t.blocks.items()),
        reach, [t.referrers(b) for b in t.blocks],
        [t.out_edges(b) for b in [None, *t.blocks]],
        [t.path_to_root(b, reach) for b in t.blocks], t.path_to_root(t.blocks.peekitem(-1)[0]),
    )


class Program:
    """A kernel with statics, a memblock area and a few objects to point from and to."""

    def __init__(self, arch: str, bulk: bool) -> None:
        self.k = k = Kernel(arch=arch, seed=3)
        self.bulk = bulk
        self.ws = ws = k.arch.word_size
        self.static = k.define_static("compact_roots", 16 * ws)
        self.objs = k.kmalloc_bulk([self.words(i) * ws for i in range(NOBJ)])
        self.mb = k.memblock_alloc(16 * ws)

    @staticmethod
    def words(i: int) -> int:
        """The first two objects are long enough that a free looks for its edges through
        the sorted row slots rather than word by word."""
        return OBJ_WORDS * (6 if i < 2 else 1)

    def live(self, i: int) -> int:
        """The i-th object, allocated again if it was freed."""
        if self.objs[i] == 0:
            self.objs[i] = self.k.kmalloc(self.words(i) * self.ws)
        return self.objs[i]

    def slot(self, where: int, word: int) -> int:
        if where == NOBJ:
            return self.static + word * self.ws
        if where == NOBJ + 1 and self.mb:
            return self.mb + word * self.ws
        i = where % NOBJ
        return self.live(i) + word * (self.words(i) // OBJ_WORDS) * self.ws

    def target(self, i: int, off: int) -> int:
        if i == NOBJ:
            return self.static + 2 * self.ws  # not an allocation: no edge
        return self.live(i) + off

    def run(self, op: tuple[Any, ...]) -> None:
        k, ws, name = self.k, self.ws, op[0]
        if name == "bulk":
            pairs = {self.slot(w, j): (t, o) for w, j, t, o in op[1]}  # distinct slots
            slots = list(pairs)
            targets = [self.target(t, o) for t, o in pairs.values()]
            if self.bulk:
                k.store_many(slots, targets)
            else:
                for s, t in zip(slots, targets, strict=True):
                    k.store(s, t)
        elif name == "store":
            _, w, j, t, o, xor = op
            k.store(self.slot(w, j), self.target(t, o), encoding=Xor() if xor else None)
        elif name == "write_word":
            k.memory.write_word(self.slot(op[1], op[2]), op[3])
        elif name == "write":  # any length, at any byte: partial overlaps of words
            _, w, j, off, n = op
            k.memory.write(self.slot(w, j) + off, bytes(range(1, n + 1)))
        elif name == "write_words":
            addrs = sorted({self.slot(w, j) for w, j in op[1]})
            k.memory.write_words(addrs, list(range(1, len(addrs) + 1)))
        elif name == "free":
            i = op[1] % NOBJ
            if self.objs[i]:
                k.kfree(self.objs[i])
                self.objs[i] = 0
        elif name == "free_part" and self.mb:  # the memblock area loses a word range
            _, j, n = op
            k.memblock_free(self.mb + j * ws, n * ws)
            if j == 0:
                self.mb = 0  # its start is gone: no more slots there
        elif name == "tick":
            k.sleep(op[1])


where = st.integers(0, NOBJ + 1)
word = st.integers(0, OBJ_WORDS - 1)
tgt = st.integers(0, NOBJ)
off = st.sampled_from([0, 0, 0, 8, 24])
ops = st.one_of(
    st.tuples(st.just("bulk"), st.lists(st.tuples(where, word, tgt, off), min_size=1,
                                        max_size=24)),
    st.tuples(st.just("store"), where, word, tgt, off, st.booleans()),
    st.tuples(st.just("write_word"), where, word, st.integers(0, 2**32 - 1)),
    st.tuples(st.just("write"), where, word, st.integers(0, 7), st.integers(1, 12)),
    st.tuples(st.just("write_words"), st.lists(st.tuples(where, word), min_size=1, max_size=8)),
    st.tuples(st.just("free"), st.integers(0, NOBJ - 1)),
    st.tuples(st.just("free_part"), st.integers(0, 12), st.integers(1, 4)),
    st.tuples(st.just("tick"), st.sampled_from([0.001, 0.01])),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=st.lists(ops, min_size=1, max_size=25),
       arch=st.sampled_from(["x86_64", "arm64", "i386"]))
def test_bulk_edges_read_as_the_records_stored_one_by_one(program: list[tuple[Any, ...]],
                                                          arch: str) -> None:
    a, b = Program(arch, bulk=True), Program(arch, bulk=False)
    for op in program:
        a.run(op)
        b.run(op)
        a.k.truth._check()
        assert views(a.k.truth) == views(b.k.truth)
    assert a.objs == b.objs
    verdicts_a, verdicts_b = judge(a.k).verdicts, judge(b.k).verdicts
    assert sorted(verdicts_a.items()) == sorted(verdicts_b.items())


def test_rows_are_used_and_materialise_fresh_equal_records() -> None:
    p = Program("x86_64", bulk=True)
    slots = [p.objs[i] for i in range(4)]
    p.k.store_many(slots, [p.objs[i + 4] for i in range(4)])
    t = p.k.truth
    assert all(t.edges.is_row(s) and s not in t.edges._rec for s in slots)  # rows, no record
    assert t.edges.rows_between(min(slots), max(slots) + 1) == sorted(slots)
    # no slot index entry either: the runs answer for the rows
    assert all(s not in _slots(t._rec_by_holder.get(p.objs[i])) for i, s in enumerate(slots))
    e = t.edges[slots[0]]
    assert e == t.edges[slots[0]]
    assert e is not t.edges[slots[0]]
    assert e.pieces == ((slots[0], p.objs[4].to_bytes(8, "little")),)
    assert (e.holder, e.root, e.target_base) == (p.objs[0], None, p.objs[4])
    p.k.store_many([p.static], [p.objs[1]])  # a root slot: kept as a record
    assert t.edges._rec[p.static] == t.edges[p.static]
    assert not t.edges.is_row(p.static)
    assert t.edges[p.static].root == "kernel static"


def test_dead_rows_are_merged_and_compacted_and_reads_stay_equal() -> None:
    """Re-storing the same slots again and again, or ending most rows, does not leave the
    runs growing: superseded rows go when runs merge, ended ones when they compact."""
    k, twin = Kernel(seed=2), Kernel(seed=2)
    n = _COMPACT_MIN + 4096
    objs = k.kmalloc_bulk([64] * (n + 1024))
    assert twin.kmalloc_bulk([64] * (n + 1024)) == objs
    slots, targets = objs[:1024], objs[n:]
    for r in range(40):
        order = targets[r % 7:] + targets[:r % 7]
        k.store_many(slots, order)
        for s, t in zip(slots, order, strict=True):
            twin.store(s, t)
        k.sleep(0.001)
        twin.sleep(0.001)
    table = k.truth.edges
    assert table._nstored <= 4 * len(slots)  # superseded rows merged away
    assert len(table._rows) <= 3
    assert views(k.truth) == views(twin.truth)
    # Many rows, then most of them end with their holders: the runs compact.
    holders = objs[1024:n]
    k.store_many(holders, [objs[0]] * len(holders))
    for s in holders:
        twin.store(s, objs[0])
    for p in holders[: _COMPACT_MIN + 1024]:
        k.kfree(p)
        twin.kfree(p)
    assert table._nstored < n // 2  # compacted at least once
    assert table._nstored == sum(len(run) for run in table._rows)
    assert len(table._kind_list) < 8  # and only the kinds still in use are kept
    k.truth._check()
    assert views(k.truth) == views(twin.truth)


def test_edge_table_mapping_behaviour() -> None:
    p = Program("i386", bulk=True)
    t = p.k.truth
    p.k.store_many([p.objs[0], p.objs[0] + 4], [p.objs[1], p.objs[2]])
    edges: EdgeTable = t.edges
    first = edges[p.objs[0]]
    assert edges.get(12345) is None
    assert edges.get(12345, "x") == "x"
    with pytest.raises(KeyError):
        _ = edges[12345]
    assert edges.pop(p.objs[0]) == first
    assert p.objs[0] not in edges
    edges[p.objs[0]] = first  # now a record, inserted last
    assert list(edges)[-2:] == [p.objs[0] + 4, p.objs[0]]
    assert repr(edges).startswith("EdgeTable({")
    assert edges == dict(edges.items())


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_rows_survive_a_save(tmp_path: Path, arch: str) -> None:
    a, b = Program(arch, bulk=True), Program(arch, bulk=False)
    for p in (a, b):
        p.run(("bulk", [(i, j, (i + 3) % NOBJ, 0) for i in range(NOBJ) for j in (1, 5)]))
        p.run(("free", 2))
        p.run(("write", 4, 1, 3, 2))
    a.k.save(tmp_path / "a.kmem")
    loaded = Kernel.load(tmp_path / "a.kmem")
    assert views(loaded.truth) == views(b.k.truth)
    loaded.truth._check()
    # the loaded table goes on answering like the twin
    for p_k in (loaded, b.k):
        p_k.kfree(a.objs[5])
    assert views(loaded.truth) == views(b.k.truth)
