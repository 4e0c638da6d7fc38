"""kmemleak's column store: objects as rows, ``object_list`` as a view, records as snapshots.

The store must be invisible: every object reads and writes its own row,
``object_list`` is the live rows in creation order whatever was freed, a
freed object keeps its last values, compaction moves no object's values,
and a scan's records are the objects as they were at the end of that scan.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmemsim import Kernel
from kmemsim.kmemleak.object import (
    OBJECT_ALLOCATED,
    OBJECT_REPORTED,
    KmemleakObject,
    ObjectList,
    ObjectStore,
)

FIELDS = ("pointer", "size", "min_count", "count", "flags", "excess_ref", "checksum", "jiffies",
          "pid", "serial", "comm", "trace", "areas")


def values(o: KmemleakObject) -> tuple[object, ...]:
    return tuple(getattr(o, f) for f in FIELDS)


def test_object_reads_and_writes_its_own_row() -> None:
    store = ObjectStore()
    a = store.add(0x1000, 32, 1, serial=1, pid=5, comm="insmod", trace=(1, 2))
    b = store.add(0x2000, 64, 2, serial=2)
    a.count, a.checksum, b.flags = 3, 0xDEADBEEF, OBJECT_ALLOCATED | OBJECT_REPORTED
    assert (a.pointer, a.size, a.min_count, a.count, a.checksum, a.pid, a.comm, a.trace) == (
        0x1000, 32, 1, 3, 0xDEADBEEF, 5, "insmod", (1, 2))
    assert (b.count, b.checksum, b.flags) == (0, 0, OBJECT_ALLOCATED | OBJECT_REPORTED)
    assert store.column("count").tolist() == [3, 0]


def test_add_many_gives_the_rows_of_add_one_by_one() -> None:
    one, many = ObjectStore(), ObjectStore()
    ctx = {"flags": OBJECT_ALLOCATED, "jiffies": 77, "pid": 9, "comm": "kworker", "trace": (4,)}
    for i, (p, n) in enumerate([(0x1000, 8), (0x2000, 16), (0x3000, 24)]):
        one.add(p, n, 1, serial=10 + i, **ctx)  # type: ignore[arg-type]
    rows = many.add_many([0x1000, 0x2000, 0x3000], [8, 16, 24], 1, first_serial=10,
                         **ctx)  # type: ignore[arg-type]
    assert list(rows) == [0, 1, 2]
    assert many.live_count == 3
    assert many.objects == [None, None, None]          # views are made when asked for
    assert [values(many.view(r)) for r in rows] == [values(o) for o in one.live_objects()]
    assert many.view(1) is many.view(1)


def test_a_freed_object_keeps_its_values_and_leaves_object_list() -> None:
    k = Kernel(seed=1)
    p = k.kmalloc(64)
    obj = k.kmemleak.find(p)
    assert obj is not None
    before = values(obj)
    serial = obj.serial
    assert serial in k.kmemleak.object_list
    k.kfree(p)
    assert serial not in k.kmemleak.object_list
    assert values(obj)[:4] == before[:4]
    assert not obj.flags & OBJECT_ALLOCATED   # __delete_object cleared it, on the object
    obj.count = 5                              # writes to a freed object touch no live row
    assert all(o.count == 0 for o in k.kmemleak.object_list.values())


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10_000)), min_size=1, max_size=300))
def test_object_list_is_the_live_rows_in_creation_order_through_compaction(
        script: list[tuple[bool, int]]) -> None:
    store = ObjectStore()
    model: dict[int, tuple[int, int]] = {}      # serial -> (pointer, count) of live objects
    live: list[KmemleakObject] = []
    serial = 0
    for alloc, v in script * 8:                 # long enough to compact several times
        if alloc or not live:
            serial += 1
            o = store.add(0x1000 * serial, 8, 1, serial=serial)
            o.count = v
            live.append(o)
            model[serial] = (o.pointer, v)
        else:
            o = live.pop(v % len(live))
            store.unlink(o)
            assert (o.pointer, o.count) == model.pop(o.serial)   # detached with its values
            if store.wants_compaction():
                new_row = store.compact()
                assert all(new_row[x._row] == -1 for x in [o])   # its old row is dropped
    ol = ObjectList(store)
    assert ol.keys() == sorted(model)
    assert [(o.pointer, o.count) for o in ol.values()] == [model[s] for s in sorted(model)]
    assert len(ol) == len(model)
    # compaction keeps the store proportional to the live objects
    assert len(store) <= max(2 * len(model), len(model) + 1025)
    assert all(x._store is store and store.view(x._row) is x for x in live)
    for s in model:
        assert ol[s].serial == s
        assert ol.get(s) is ol[s]
    with pytest.raises(KeyError):
        ol[serial + 1]


def test_compaction_moves_rows_not_values() -> None:
    store = ObjectStore()
    objs = [store.add(0x100 * (i + 1), 8, 1, serial=i + 1) for i in range(3000)]
    for o in objs:
        o.checksum = o.serial * 7
    for o in objs[:2500]:
        store.unlink(o)
    assert store.wants_compaction()
    new_row = store.compact()
    assert new_row[:2500].tolist() == [-1] * 2500
    assert new_row[2500:].tolist() == list(range(500))
    assert len(store) == 500          # compacted: free rows dropped
    kept = objs[2500:]
    assert [o._row for o in kept] == list(range(len(store)))[-len(kept):]
    assert all(o.checksum == o.serial * 7 and o._store is store for o in kept)
    assert all(o.checksum == o.serial * 7 and o._store is not store for o in objs[:2500])
    assert [o.serial for o in store.live_objects()] == [o.serial for o in kept]


def test_trees_follow_compaction_in_a_kernel() -> None:
    k = Kernel(seed=1)
    kl = k.kmemleak
    keep = k.kmalloc_bulk([64] * 500)
    gone = k.kmalloc_bulk([32] * 3000)
    before = len(kl.store)
    for p in gone:
        k.kfree(p)
    assert len(kl.store) < before          # compacted along the way
    kl._check()
    assert all(kl.find(p + 8).pointer == p for p in keep)   # type: ignore[union-attr]
    assert all(kl.find(p) is None for p in gone)
    k.sleep(10)
    kl.scan()                              # poisoned: the checksum pass spares them once
    listed = {r.pointer for r in kl.scan().unreferenced}
    assert set(keep) <= listed
    assert not listed & set(gone)


def test_scan_records_are_snapshots_of_the_end_of_that_scan() -> None:
    k = Kernel(seed=1)
    leaks = [k.kzalloc(32) for _ in range(3)]
    k.sleep(10)
    first = k.kmemleak.scan()
    assert sorted(r.pointer for r in first.new_leaks) == sorted(leaks)
    eager = tuple(k.kmemleak.record(k.kmemleak.find(p)) for p in  # type: ignore[arg-type]
                  [r.pointer for r in first.new_leaks])
    assert first.new_leaks == eager
    assert tuple(first.unreferenced) == eager
    k.kfree(leaks[0])                    # later changes do not reach the snapshot
    k.kmemleak.kmemleak_not_leak(leaks[1])
    k.sleep(10)
    second = k.kmemleak.scan()
    assert first.new_leaks == eager
    assert len(first.unreferenced) == 3
    assert [r.pointer for r in second.unreferenced] == [leaks[2]]
    assert first.new_leaks[-1] == eager[-1]
    assert first.new_leaks[:2] == eager[:2]
    with pytest.raises(IndexError):
        first.new_leaks[3]
