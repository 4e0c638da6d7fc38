"""The edge table's rows (``kmemsim.truth.model.EdgeTable``): columns only, read as records.

Bulk plain stores keep their edges as rows of sorted runs with a live byte
each and orders by target and by holder; these tests check what the
one-by-one twin of ``test_truth_compact`` does not reach: the breadth-first
parents against a plain reference walk, a table saved in the layout before
rows had columns of their own, and an encoding raising in the middle of a
bulk store.
"""

from __future__ import annotations

from array import array
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_truth_compact import NOBJ, Program, views

from kmemsim import Kernel
from kmemsim.experiments.heaps import build_heap
from kmemsim.truth.encodings import Encoding, Plain, Xor
from kmemsim.truth.model import Edge, EdgeTable, Truth, _index_add, _slots


def reference_reach(t: Truth) -> dict[int, Edge | None]:
    """The breadth-first walk of ``reachable_blocks``, written plainly over ``edges.items()``."""
    held: dict[int | None, list[Edge]] = {}
    for _, e in sorted(t.edges.items()):
        held.setdefault(e.holder, []).append(e)
    parent: dict[int, Edge | None] = {}
    queue: deque[int] = deque()
    for e in held.get(None, []):
        if e.target_base not in parent:
            parent[e.target_base] = e
            queue.append(e.target_base)
    for base in sorted(b.base for b in t.blocks.values() if b.kind == "module"):
        if base not in parent:
            parent[base] = None
            queue.append(base)
    while queue:
        for e in held.get(queue.popleft(), []):
            if e.target_base not in parent:
                parent[e.target_base] = e
                queue.append(e.target_base)
    return parent


def _random_links(k: Kernel, objs: list[int], rng: np.random.Generator, n: int,
                  batches: int) -> None:
    """*n* random plain links between *objs* (words 1 and 2 of each), in *batches* bulk
    stores (0: one by one)."""
    ws = k.arch.word_size
    slots = sorted({int(objs[i]) + ws * int(w) for i, w in zip(
        rng.integers(0, len(objs), n), rng.integers(1, 3, n), strict=True)})
    targets = [int(objs[i]) for i in rng.integers(0, len(objs), len(slots))]
    if not batches:
        for s, t in zip(slots, targets, strict=True):
            k.store(s, t)
        return
    for part in np.array_split(np.arange(len(slots)), batches):
        k.store_many([slots[i] for i in part], [targets[i] for i in part])


@pytest.mark.parametrize(("seed", "batches"), [(1, None), (2, None), (3, 0), (4, 5)])
def test_reachable_blocks_parents_are_the_plain_walks(seed: int, batches: int | None) -> None:
    """The benchmark heap (one bulk store), or random links stored one by one (records
    only) or in several bulk stores (several runs of rows)."""
    k = Kernel(seed=seed)
    rng = np.random.default_rng(seed)
    if batches is None:
        objs = build_heap(k, 3000, rng, leak_fraction=0.05)
    else:
        objs = k.kmalloc_bulk([64] * 400)
        head = k.define_static("rows_head", 4 * k.arch.word_size)
        k.store_many([head, head + k.arch.word_size], [objs[0], objs[7]])
        _random_links(k, objs, rng, 700, batches)
    ws = k.arch.word_size
    # records among the rows: single stores, an encoded one, a row turned record
    k.store(objs[10] + 2 * ws, objs[20])
    k.store(objs[11] + 2 * ws, objs[21], encoding=Xor())
    k.memory.write_word(objs[3] + ws, 0)
    t = k.truth
    reach = t.reachable_blocks()
    ref = reference_reach(t)
    assert list(reach.items()) == list(ref.items())  # same parents, same discovery order
    assert list(t.reachable_blocks(edges=False)) == list(ref)
    assert set(t.reachable_blocks(edges=False).values()) == {None}
    extra = t.reachable_blocks([objs[-1], 12345])
    assert list(extra)[:2] == [objs[-1], 12345]


def test_a_row_replaced_in_place_keeps_its_place_in_the_order() -> None:
    p = Program("x86_64", bulk=True)
    slots = [p.objs[i] for i in range(5)]
    p.k.store_many(slots, [p.objs[i + 5] for i in range(5)])
    edges = p.k.truth.edges
    edge = edges[slots[2]]
    edges[slots[2]] = edge  # now a record, in the row's place
    assert not edges.is_row(slots[2])
    assert list(edges)[-5:] == slots
    del edges[slots[1]]
    edges[slots[1]] = edge  # a new slot goes last
    assert list(edges)[-5:] == [slots[0], *slots[2:], slots[1]]
    with pytest.raises(KeyError):
        del edges[12345]


def _to_old_layout(t: Truth) -> None:
    """Put *t* in the layout saved before rows had columns of their own: the table maps a
    row's slot to its target block base, runs of four columns, indexes hold every slot."""
    table = t.edges
    d: dict[int, Any] = {}
    rows: list[tuple[int, int, int, int]] = []
    for slot, edge in table.items():
        if table.is_row(slot):
            d[slot] = edge.target_base
            kind = next(i for i, (enc, jif, n) in enumerate(table._kind_list)
                        if enc == edge.encoding and jif == edge.jiffies and n == len(
                            edge.pieces[0][1]))
            assert edge.holder is not None
            rows.append((slot, edge.target, edge.holder, kind))
        else:
            d[slot] = edge
    rows.sort()
    run = tuple(array(c, [r[i] for r in rows]) for i, c in enumerate("QQQI"))
    new = (array("Q"), array("Q"), array("Q"), array("I"))
    by_target: dict[int | None, Any] = {}
    by_holder: dict[int | None, Any] = {}
    for slot, edge in table.items():
        _index_add(by_target, edge.target_base, slot)
        _index_add(by_holder, edge.holder, slot)
    kinds, word = table._kind_list, table._word
    table.__dict__.clear()
    table.__dict__.update(_d=d, _ws=word, _runs=[run], _new=new, _kinds=kinds,
                          _live=len(rows), _stored=len(rows))
    for name in ("_rec_by_target", "_rec_by_holder"):
        del t.__dict__[name]
    t.__dict__.update(_by_target=by_target, _by_holder=by_holder)


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_a_table_of_the_old_layout_is_converted(tmp_path: Path, arch: str) -> None:
    a, b = Program(arch, bulk=True), Program(arch, bulk=False)
    for p in (a, b):
        p.run(("bulk", [(i, j, (i + 3) % NOBJ, 0) for i in range(NOBJ) for j in (1, 5)]))
        p.run(("store", 3, 2, 4, 0, True))
        p.run(("free_part", 6, 2))  # a row turned record
    _to_old_layout(a.k.truth)
    a.k.save(tmp_path / "old.kmem")
    loaded = Kernel.load(tmp_path / "old.kmem")
    for k in (a.k, loaded):
        assert "_d" in k.truth.edges.__dict__
        assert views(k.truth) == views(b.k.truth)  # converted on first use
        assert "_d" not in k.truth.edges.__dict__
        assert "_by_target" not in k.truth.__dict__
        assert all(not k.truth.edges.is_row(s) for s in _slots(k.truth._rec_by_target.get(
            b.objs[3])))
        k.truth._check()
    b.run(("free", 4))
    for k in (a.k, loaded):
        k.kfree(a.objs[4])
        assert views(k.truth) == views(b.k.truth)


class _Raising(Encoding):
    """Writes the plain word, but refuses the target at ``bad``."""

    bad = 0

    def writes(self, target: int, slot: int) -> list[tuple[int, bytes]]:
        if target == self.bad:
            raise RuntimeError("refused")
        return [(slot, target.to_bytes(8, "little"))]


def test_an_encoding_raising_mid_batch_leaves_the_edges_before_it() -> None:
    k = Kernel(seed=5)
    objs = k.kmalloc_bulk([64] * 12 + [128])
    _Raising.bad = objs[12]
    raising = _Raising().bind(k.arch, 128)
    plain = Plain().bind(k.arch, 64)

    def bind(size: int) -> Encoding:
        return raising if size == 128 else plain

    slots = [objs[i] for i in range(8)]
    targets = [objs[8], objs[9], objs[12], objs[10], objs[12], objs[11], objs[8], objs[9]]
    edges = k.truth.edges
    before = list(edges)  # (the boot's own edges)
    with pytest.raises(RuntimeError, match="refused"):
        k.truth.add_plain_edges(slots, targets, bind)
    # the edges before the one that raised are in, in order; none after it
    assert list(edges) == [*before, *slots[:2]]
    assert [edges.is_row(s) for s in slots[:2]] == [True, True]
    k.truth._check()
    assert len(EdgeTable(8)) == 0
