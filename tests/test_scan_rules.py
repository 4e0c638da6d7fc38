"""One test per scan rule of the spec (``kmemleak-spec.md`` sections 2-5 and 14).

Each test is named after the rule it checks and is built so that a plausible
wrong implementation of that rule fails it (a control object that the rule
treats differently sits beside the object under test wherever that helps).
Every test runs once per scan engine: the reference walk and the fast
(vectorised) one, which must give the same answers.  The few checks that look
inside the walk (which addresses the object trees are asked about, the order of
the gray list, time passing during a scan) run the reference engine explicitly.

Conventions used throughout:

* kernels are booted without ``CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN`` so that the
  only scans are the ones a test runs (the scan thread would otherwise record
  checksums behind the test's back);
* objects are made with ``kzalloc`` (all zero: CRC 0) or written explicitly,
  never left with freelist words or poison unless the test is about that;
* ``k.sleep(6)`` makes everything older than ``MSECS_MIN_AGE`` (5 s);
* an object holding anything non-zero needs two scans to be reported (the
  first one records its checksum and spares it).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmemsim import Kernel
from kmemsim.klib import INIT_LIST_HEAD, list_add_tail, list_del, list_del_init
from kmemsim.kmemleak.index import ObjectTree
from kmemsim.kmemleak.object import (
    OBJECT_ALLOCATED,
    OBJECT_FULL_SCAN,
    OBJECT_NO_SCAN,
    OBJECT_PHYS,
    OBJECT_REPORTED,
    KmemleakObject,
    color_gray,
    color_white,
    crc32,
)
from kmemsim.kmemleak.scan import ScanResult

KMEMLEAK = "/sys/kernel/debug/kmemleak"
NO_AUTO_SCAN = {"CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN": False}
SIZE_MAX = -1
ENGINES = ("reference", "fast")
_engine = ["reference"]

_names = itertools.count()


# --------------------------------------------------------------------------- helpers
def boot(**kwargs: object) -> Kernel:
    """A kernel whose only scans are the ones the test runs."""
    kwargs.setdefault("config", NO_AUTO_SCAN)
    k = Kernel(**kwargs)  # type: ignore[arg-type]
    k.kmemleak.default_engine = _engine[0]
    return k


def static(k: Kernel, nwords: int = 8, section: str = "bss") -> int:
    """A fresh kernel static of *nwords* words: a root (``.data``/``.bss`` are gray)."""
    return k.define_static(f"test_root_{next(_names)}", nwords * k.arch.word_size, section)


def obj(k: Kernel, p: int, tree: str = "virtual") -> KmemleakObject:
    o = k.kmemleak.find(p, tree=tree)
    assert o is not None, f"{p:#x} is not tracked"
    return o


def color(k: Kernel, p: int, tree: str = "virtual") -> str:
    return obj(k, p, tree).color


def ptrs(records: object) -> set[int]:
    return {r.pointer for r in records}  # type: ignore[attr-defined]


def leaks(r: ScanResult) -> set[int]:
    return ptrs(r.new_leaks)


def scans(k: Kernel, n: int) -> list[ScanResult]:
    return [k.kmemleak.scan() for _ in range(n)]


def reported_in(results: list[ScanResult]) -> set[int]:
    out: set[int] = set()
    for r in results:
        out |= leaks(r)
    return out


def nonzero(k: Kernel, p: int, offset: int = 0, byte: int = 0x5A) -> None:
    """Make an object's contents non-zero without storing anything pointer-like."""
    k.memory.write(p + offset, bytes([byte]))


@pytest.fixture(autouse=True, params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run every test with each scan engine as the kernels' default."""
    _engine[0] = request.param
    yield request.param
    _engine[0] = "reference"


@pytest.fixture
def k(engine: str) -> Kernel:
    return boot()


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every ``(tree name, address)`` an object-tree lookup was asked for.

    Only the reference walk looks objects up word by word: scan with
    ``engine="reference"`` where this is read.
    """
    calls: list[tuple[str, int]] = []
    orig = ObjectTree.lookup

    def spy(self: ObjectTree, addr: int) -> KmemleakObject | None:
        calls.append((self.name, addr))
        return orig(self, addr)

    monkeypatch.setattr(ObjectTree, "lookup", spy)
    return calls


# ------------------------------------------------------------------------- colours (2)
def test_white_means_count_below_min_count(k: Kernel) -> None:
    """White is ``count < min_count``, not ``count == 0``: a vmalloc block with one
    reference (its ``vm_struct``) is still white; gray is ``count >= min_count``."""
    x = k.kzalloc(64)
    v = k.vzalloc(100)
    y = k.kzalloc(64)
    k.store(static(k), y)
    k.sleep(6)
    r = k.kmemleak.scan()
    ox, ov, oy = obj(k, x), obj(k, v), obj(k, y)
    assert (ox.count, ox.min_count, ox.color) == (0, 1, "white")
    assert (ov.count, ov.min_count, ov.color) == (1, 2, "white")
    assert (oy.count, oy.min_count, oy.color) == (1, 1, "gray")
    assert {x, v} <= leaks(r)
    assert y not in leaks(r)
    # The predicates themselves, at the boundary.
    o = KmemleakObject(0x1000, 64, 2, serial=10**9)
    for count, white in [(0, True), (1, True), (2, False), (3, False)]:
        o.count = count
        assert color_white(o) is white
        assert color_gray(o) is not white


def test_black_object_never_scanned_nor_reported(k: Kernel) -> None:
    """``min_count == -1``: never on the gray list (even without ``NO_SCAN``), never
    reported, and references to it change nothing (its count stays 0)."""
    root = static(k)
    b1 = k.kzalloc(64)       # referenced and black: holds the only pointer to q1
    b2 = k.kzalloc(64)       # unreferenced and black: would be a leak otherwise
    q1 = k.kzalloc(64)
    q2 = k.kzalloc(64)
    k.store(root, b1)
    k.store(root + 8, b1 + 8)
    k.store(root + 16, b2)  # now b2 is referenced too: still count 0
    k.store(b1, q1)
    k.store(b2, q2)
    k.kmemleak.kmemleak_ignore(b1)
    k.kmemleak.kmemleak_ignore(b2)
    # Black alone must keep b2 out of the gray list: drop the NO_SCAN that ignore set.
    obj(k, b2).flags &= ~OBJECT_NO_SCAN
    k.sleep(6)
    reported = reported_in(scans(k, 3))
    for b in (b1, b2):
        o = obj(k, b)
        assert (o.min_count, o.count, o.color) == (-1, 0, "black")
        assert not o.flags & OBJECT_REPORTED
        assert b not in reported
    assert {q1, q2} <= reported


def test_count_saturates_at_min_count(k: Kernel) -> None:
    """Once gray, further references do not increase ``count`` -- not even a surplus
    forwarded through ``excess_ref`` to a target that is gray already."""
    root = static(k)
    x = k.kzalloc(64)
    v = k.vzalloc(64)
    for i in range(3):
        k.store(root + 8 * i, x + 8 * i)
    k.store(root + 24, v)
    k.store(root + 32, v + 8)   # with the vm_struct: 3 references, min_count 2
    k.store(root + 40, k.vmalloc_allocator.areas[v].vm_struct)   # a surplus, forwarded
    k.kmemleak.scan()
    assert (obj(k, x).count, obj(k, x).color) == (1, "gray")
    assert (obj(k, v).count, obj(k, v).color) == (2, "gray")


def test_references_counted_per_word_occurrence(k: Kernel) -> None:
    """Two words in the same scanned object pointing into X count twice (not once per
    distinct holder); one word counts once."""
    two, one = k.alloc_pages(0), k.alloc_pages(0)
    for page in (two, one):
        k.memory.fill(page, 4096, 0)
        k.kmemleak.kmemleak_alloc(page, 4096, 2)   # a hand-registered block, min_count 2
    holder = k.kzalloc(64)
    k.store(static(k), holder)
    k.store(holder, two)
    k.store(holder + 8, two + 100)   # same holder, second word: counts again
    k.store(holder + 16, one + 8)
    k.sleep(6)
    r = k.kmemleak.scan()
    assert (obj(k, two).count, color(k, two)) == (2, "gray")
    assert (obj(k, one).count, color(k, one)) == (1, "white")
    assert one in leaks(r)
    assert two not in leaks(r)


# ------------------------------------------------------------ vmalloc and excess_ref
def test_vmalloc_block_held_only_by_vm_struct_is_reported(k: Kernel) -> None:
    """min_count 2: the ``vm_struct->addr`` reference alone (1 < 2) leaves it white, and
    ``vmap_area->va_start`` (outside the vmap_area's scan area) does not count."""
    v = k.vzalloc(100)
    area = k.vmalloc_allocator.areas[v]
    k.sleep(6)
    r = k.kmemleak.scan()
    assert v in leaks(r)
    o = obj(k, v)
    assert (o.size, o.min_count, o.count) == (4096, 2, 1)
    assert color(k, area.vm_struct) == "gray"
    assert obj(k, area.vm_struct).excess_ref == v
    assert r.grayed_by[area.vm_struct].holder == area.vmap_area


def test_vmalloc_block_also_stored_by_caller_is_not_reported(k: Kernel) -> None:
    v = k.vzalloc(100)
    nonzero(k, v, 200)
    k.store(static(k), v)
    k.sleep(6)
    results = scans(k, 3)
    assert v not in reported_in(results)
    assert (obj(k, v).count, color(k, v)) == (2, "gray")


def test_surplus_reference_to_gray_vm_struct_forwarded_via_excess_ref(k: Kernel) -> None:
    """A second pointer to the (already gray) ``vm_struct`` is forwarded to the block."""
    v = k.vzalloc(100)
    w = k.vzalloc(100)        # the control: same, without the second pointer
    vm = k.vmalloc_allocator.areas[v].vm_struct
    k.store(static(k), vm)
    k.sleep(6)
    results = scans(k, 2)
    assert w in reported_in(results)
    assert v not in reported_in(results)
    assert (obj(k, vm).count, color(k, vm)) == (1, "gray")   # saturated: forwarded
    assert (obj(k, v).count, color(k, v)) == (2, "gray")


def test_excess_ref_forwarded_once_per_surplus_word(k: Kernel) -> None:
    """With ``r`` references to a gray ``vm_struct``, ``r - 1`` are forwarded: two extra
    words (3 in all with ``vmap_area->vm``) push the block to min_count and saturate."""
    v = k.vzalloc(100)
    vm = k.vmalloc_allocator.areas[v].vm_struct
    root = static(k)
    k.store(root, vm)
    k.store(root + 8, vm)
    k.kmemleak.scan()
    assert obj(k, v).count == 2


# --------------------------------------------------------------- what counts (5.4)
def test_interior_pointer_counts(k: Kernel) -> None:
    """Any address inside ``[start, start+size)`` counts, and the size is the cache's
    object size: ``kzalloc(129)`` is a 192-byte object."""
    root = static(k)
    a, b, c = k.kzalloc(64), k.kzalloc(64), k.kzalloc(64)
    d = k.kzalloc(129)
    assert obj(k, d).size == 192
    k.store(root, a + 17)       # container_of-style interior pointer
    k.store(root + 8, b + 63)   # the last byte
    k.store(root + 16, d + 150)  # past the requested size, inside the object
    k.sleep(6)
    r = k.kmemleak.scan()
    assert color(k, a) == color(k, b) == color(k, d) == "gray"
    assert "Found object by alias" not in k.dmesg()   # scanning looks up with alias=1
    assert leaks(r) & {a, b, d} == set()
    assert c in leaks(r)


def test_data_that_looks_like_a_pointer_counts(k: Kernel) -> None:
    """Conservative scanning: any word with the right value counts, pointer or not."""
    x = k.kzalloc(64)
    k.memory.write(static(k), (x + 5).to_bytes(k.arch.word_size, "little"))
    k.sleep(6)
    assert x not in leaks(k.kmemleak.scan())
    assert color(k, x) == "gray"


def test_one_past_the_end_does_not_count(k: Kernel) -> None:
    x = k.kzalloc(64)
    assert obj(k, x).size == 64
    k.store(static(k), x + 64)
    k.sleep(6)
    r = k.kmemleak.scan()
    assert x in leaks(r)
    assert obj(k, x).count == 0


def test_self_reference_ignored(k: Kernel) -> None:
    """A word in an object pointing into itself is skipped.  It shows where it matters:
    a ``vm_struct`` pointing to itself must not forward a surplus to its block."""
    v = k.vzalloc(100)
    w = k.vzalloc(100)
    vm = k.vmalloc_allocator.areas[v].vm_struct
    k.store(vm, vm)              # vm->next = vm
    k.store(vm + 56, vm + 8)     # and an interior self-pointer
    k.sleep(6)
    r = k.kmemleak.scan()
    assert {v, w} <= leaks(r)
    assert obj(k, v).count == 1


def test_list_del_init_self_pointers_do_not_keep_node(k: Kernel) -> None:
    """After ``list_del_init`` a leaked node points to itself twice: still reported
    (a model that counts pointers from every object, or from the node while the
    checksum pass scans it, would keep it).  A node removed the same way but kept by
    its owner is not reported."""
    head = static(k, 2)
    INIT_LIST_HEAD(k, head)
    kept_by = static(k)
    leaked, kept = k.kzalloc(64), k.kzalloc(64)
    list_add_tail(k, leaked + 16, head)
    list_add_tail(k, kept + 16, head)
    k.store(kept_by, kept)
    list_del_init(k, leaked + 16)
    list_del_init(k, kept + 16)
    assert k.memory.read_word(leaked + 16) == leaked + 16
    k.sleep(6)
    r1, r2 = scans(k, 2)
    assert leaked in r1.checksum_spared   # non-zero (the self-pointers): spared once
    assert leaked in leaks(r2)
    assert kept not in reported_in([r1, r2])


@pytest.mark.parametrize("arch", ["x86_64", "arm64", "i386"])
def test_list_poison_never_counts(arch: str, lookups: list[tuple[str, int]]) -> None:
    """``list_del`` leaves LIST_POISON1/2 behind: below every window, they are never
    even looked up, and the deleted node is reported."""
    k = boot(arch=arch)
    ws = k.arch.word_size
    head = static(k, 2)
    INIT_LIST_HEAD(k, head)
    a, b = k.kzalloc(64), k.kzalloc(64)
    list_add_tail(k, a + 16, head)
    list_add_tail(k, b + 16, head)
    list_del(k, a + 16)
    poison = (k.arch.list_poison1, k.arch.list_poison2)
    assert (k.memory.read_word(a + 16), k.memory.read_word(a + 16 + ws)) == poison
    # The poison also sits in a scanned object, where it must not count either.
    holder = k.kzalloc(64)
    k.store(static(k), holder)
    k.memory.write_word(holder, poison[0])
    k.memory.write_word(holder + ws, poison[1])
    k.sleep(6)
    reported = reported_in(scans(k, 2))
    assert a in reported
    assert b not in reported
    lookups.clear()
    k.kmemleak.scan(engine="reference")
    assert not {addr for _, addr in lookups} & {k.arch.untag(p) for p in poison}


def test_word_outside_window_ignored(k: Kernel, lookups: list[tuple[str, int]]) -> None:
    """``min_addr <= w < max_addr`` (half-open) gates the virtual-tree lookup; the
    window only grows: freeing does not shrink it; phys objects do not touch it."""
    kl = k.kmemleak
    lo, hi = kl.min_addr, kl.max_addr
    # Grow the window above .bss with a block in the module area, then free it.
    m = k.vmalloc_allocator.vmalloc(4096, zero=True, space="module")
    assert m >= hi
    assert (kl.min_addr, kl.max_addr) == (lo, m + 4096)
    k.vfree(m)
    assert (kl.min_addr, kl.max_addr) == (lo, m + 4096)   # not shrunk
    k.memblock_alloc(64)
    assert (kl.min_addr, kl.max_addr) == (lo, m + 4096)   # phys: no change
    lo, hi = kl.min_addr, kl.max_addr

    root = static(k)
    inside = [lo, hi - 1, m + 8]        # m + 8: freed, but still inside the window
    outside = [lo - 1, hi, hi + 8, 0x1234_5678]
    for i, w in enumerate(inside + outside):
        k.memory.write_word(root + 8 * i, w)
    lookups.clear()
    k.kmemleak.scan(engine="reference")
    virt = {addr for tree, addr in lookups if tree == "object_tree_root"}
    assert set(inside) <= virt
    assert not set(outside) & virt


def test_unaligned_pointer_invisible(k: Kernel) -> None:
    """Words are read at aligned absolute addresses only."""
    ws = k.arch.word_size
    root = static(k, 4)
    x, y = k.kzalloc(64), k.kzalloc(64)
    k.memory.write(root + 3, x.to_bytes(ws, "little"))        # misaligned by 3
    k.memory.write(root + 2 * ws, y.to_bytes(ws, "little"))   # aligned: the control
    k.sleep(6)
    r = k.kmemleak.scan()
    assert x in leaks(r)
    assert y not in leaks(r)


# ------------------------------------------------------------- what gets scanned (5.5)
def test_scan_areas_limit_scanning(k: Kernel) -> None:
    """Only the areas are read, whole words only; ``SIZE_MAX`` runs to the end of the
    object; an oversized area is refused.  (Their order: the next test.)"""
    kl = k.kmemleak
    h = k.kzalloc(64)
    k.store(static(k), h)
    a, b, c, d, e = (k.kzalloc(64) for _ in range(5))
    for off, target in [(0, a), (8, b), (24, c), (40, d), (56, e)]:
        k.store(h + off, target)
    kl.kmemleak_scan_area(h + 4, 12)          # [4, 16): only the word at 8 fits
    kl.kmemleak_scan_area(h + 20, 10)         # [20, 30): no whole word
    kl.kmemleak_scan_area(h + 40, SIZE_MAX)   # [40, 64)
    assert [(s - h, n) for s, n in kl.record(obj(k, h)).areas] == [(40, 24), (20, 10), (4, 12)]

    # Larger than the object: warned about and not added (the whole object is scanned).
    h3 = k.kzalloc(64)
    k.store(static(k), h3)
    f = k.kzalloc(64)
    k.store(h3 + 56, f)
    kl.kmemleak_scan_area(h3 + 8, 64)
    assert "Scan area larger than object" in k.dmesg()
    assert obj(k, h3).areas == ()

    k.sleep(6)
    reported = reported_in(scans(k, 2))
    assert {a, c} <= reported
    assert not {b, d, e, f} & reported


def test_scan_areas_scanned_most_recent_first(k: Kernel) -> None:
    """Areas are prepended and scanned in list order, so the area added last is read
    first: its word is the one that grays x, and what it grays joins the gray list
    first (here: y before z, although z's pointer sits at the lower address), so y is
    the one that grays w, which both point to."""
    kl = k.kmemleak
    h = k.kzalloc(64)
    k.store(static(k), h)
    x, y, z = k.kzalloc(64), k.kzalloc(64), k.kzalloc(64)
    k.store(h, x)
    k.store(h + 8, z)
    k.store(h + 32, x)
    k.store(h + 40, y)
    kl.kmemleak_scan_area(h, 16)
    kl.kmemleak_scan_area(h + 32, 16)
    assert [(s - h, n) for s, n in kl.record(obj(k, h)).areas] == [(32, 16), (0, 16)]
    w = k.kzalloc(64)
    k.store(y, w)
    k.store(z, w)
    r = kl.scan()
    assert r.grayed_by[x].address == h + 32
    assert r.grayed_by[x].holder == h
    assert r.grayed_by[w].holder == y      # y was queued, and so scanned, before z


def test_no_scan_object_contents_ignored_but_object_reportable(k: Kernel) -> None:
    root = static(k)
    n1, n2 = k.kzalloc(64), k.kzalloc(64)
    x1, x2 = k.kzalloc(64), k.kzalloc(64)
    k.store(root, n1)           # n1 is referenced: gray, but not scanned
    k.store(n1, x1)
    k.store(n2, x2)             # n2 is not referenced: reportable
    k.kmemleak.kmemleak_no_scan(n1)
    k.kmemleak.kmemleak_no_scan(n2)
    k.sleep(6)
    r1, r2 = scans(k, 2)
    assert n2 in r1.checksum_spared   # spared, grayed, but still not scanned
    reported = reported_in([r1, r2])
    assert {x1, x2, n2} <= reported
    assert n1 not in reported
    assert color(k, n1) == "gray"


def test_full_scan_flag_when_scan_area_alloc_fails(k: Kernel) -> None:
    """A failed scan-area allocation sets ``OBJECT_FULL_SCAN``: the whole object is
    scanned even though other areas exist; the warning is printed once."""
    kl = k.kmemleak
    h = k.kzalloc(64)
    k.store(static(k), h)
    a, b = k.kzalloc(64), k.kzalloc(64)
    k.store(h, a)
    k.store(h + 40, b)
    kl.kmemleak_scan_area(h + 40, 8)     # succeeds: only b would be seen
    kl.fail_scan_area_alloc = True
    try:
        kl.kmemleak_scan_area(h + 48, 8)
        kl.kmemleak_scan_area(h + 56, 8)
    finally:
        kl.fail_scan_area_alloc = False
    o = obj(k, h)
    assert o.flags & OBJECT_FULL_SCAN
    assert len(o.areas) == 1
    assert k.dmesg().count("Cannot allocate a scan area, scanning the full object") == 1
    k.sleep(6)
    assert not {a, b} & reported_in(scans(k, 2))
    assert color(k, a) == color(k, b) == "gray"


# ------------------------------------------------------------ the checksum pass (5.7)
def test_two_scan_effect_nonzero_object_spared_once(k: Kernel) -> None:
    x = k.kzalloc(64)
    nonzero(k, x, 10)
    k.sleep(6)
    r1 = k.kmemleak.scan()
    assert x in r1.checksum_spared
    assert x not in leaks(r1)
    assert obj(k, x).checksum == crc32(k.memory.read(x, 64)) != 0
    r2 = k.kmemleak.scan()
    assert x in leaks(r2)
    assert x not in r2.checksum_spared


def test_all_zero_object_reported_one_scan_earlier() -> None:
    """CRC 0 equals the initial checksum: an all-zero leak is not "modified" and is
    reported by the first scan; a poisoned (non-zero) one only by the second."""
    assert crc32(bytes(32)) == 0
    assert crc32(b"\x6b" * 31 + b"\xa5") == 0x362C6625
    k = boot(cmdline="slub_debug=P")
    z = k.kzalloc(32)
    p = k.kmalloc(32)
    assert k.memory.read(p, 32) == b"\x6b" * 31 + b"\xa5"
    k.sleep(6)
    r1 = k.kmemleak.scan()
    assert z in leaks(r1)
    assert z not in r1.checksum_spared
    assert p in r1.checksum_spared
    assert p not in leaks(r1)
    assert obj(k, p).checksum == 0x362C6625
    assert obj(k, z).checksum == 0
    r2 = k.kmemleak.scan()
    assert p in leaks(r2)


def test_each_change_postpones_report(k: Kernel) -> None:
    x = k.kzalloc(64)
    nonzero(k, x, 0, 1)
    k.sleep(6)
    for byte in (2, 3):
        r = k.kmemleak.scan()
        assert x in r.checksum_spared
        assert x not in leaks(r)
        nonzero(k, x, 0, byte)
    r = k.kmemleak.scan()
    assert x in r.checksum_spared
    assert x not in leaks(r)
    r = k.kmemleak.scan()
    assert x in leaks(r)


def test_checksum_refreshed_only_while_white(k: Kernel) -> None:
    """A gray object keeps its old checksum: once it turns white it still looks
    modified and is spared one more scan."""
    root = static(k)
    x = k.kzalloc(64)
    nonzero(k, x, 8)
    k.store(root, x)
    k.sleep(6)
    k.kmemleak.scan()
    assert color(k, x) == "gray"
    assert obj(k, x).checksum == 0
    k.store(root, 0)
    r2 = k.kmemleak.scan()
    assert x in r2.checksum_spared
    assert x not in leaks(r2)
    assert x in leaks(k.kmemleak.scan())


def test_checksum_pass_ignores_age(k: Kernel) -> None:
    """A young white object is checksummed too: the scan that spares it need not be one
    where it is old enough, so the first scan after 5 s already reports it."""
    y = k.kzalloc(64)
    nonzero(k, y, 24)
    r1 = k.kmemleak.scan()
    assert y in r1.checksum_spared
    k.sleep(6)
    r2 = k.kmemleak.scan()
    assert y in leaks(r2)
    assert y not in r2.checksum_spared


# ---------------------------------------------------------------- age and reporting
@pytest.mark.parametrize("hz", [250, 1000])
def test_minimum_age_measured_from_scan_start(hz: int) -> None:
    """``obj.jiffies + jiffies_min_age <= jiffies_last_scan``, with ``jiffies_min_age``
    = msecs_to_jiffies(5000) and the time taken at the *start* of the scan."""
    # One tick short at the scan's start, and time passing during the scan: not reported.
    k = boot(hz=hz)
    min_age = k.kmemleak.jiffies_min_age
    assert min_age == 5 * hz
    z = k.kzalloc(64)
    born = obj(k, z).jiffies
    k.sleep((min_age - 1) / hz)
    start = k.jiffies
    assert start - born == min_age - 1

    def time_passes(kind: str, payload: object) -> None:
        if kind == "phase" and payload == "report":
            k.sleep(1)

    r = k.kmemleak.scan(observer=time_passes)
    assert r.jiffies == start
    assert k.jiffies > start + 1
    assert z in r.too_young
    assert z not in leaks(r)

    # Exactly min_age old at the start: reported.
    k = boot(hz=hz)
    z = k.kzalloc(64)
    k.sleep(min_age / hz)
    assert k.jiffies - obj(k, z).jiffies == min_age
    r = k.kmemleak.scan()
    assert z in leaks(r)
    assert z not in r.too_young


def test_minimum_age_is_wrap_safe_on_32_bit() -> None:
    """Jiffies start at 2**32 - 300*HZ: on i386 they wrap after 5 minutes, and an
    object allocated just before the wrap is still old enough just after it."""
    k = boot(arch="i386")
    k.sleep(300 - k.uptime - 2)
    old = k.kzalloc(64)
    k.sleep(6)
    young = k.kzalloc(64)
    k.sleep(3)
    r = k.kmemleak.scan()
    assert obj(k, old).jiffies > r.jiffies    # the counter wrapped in between
    assert old in leaks(r)
    assert young in r.too_young
    assert young not in leaks(r)


def test_reported_flag_counts_once(k: Kernel) -> None:
    root = static(k)
    z = k.kzalloc(64)
    k.sleep(6)
    r1 = k.kmemleak.scan()
    assert leaks(r1) == {z}
    assert obj(k, z).flags & OBJECT_REPORTED
    r2 = k.kmemleak.scan()
    assert leaks(r2) == set()
    assert z in ptrs(r2.unreferenced)
    # Referenced again, then lost again: still never counted a second time.
    k.store(root, z)
    r3 = k.kmemleak.scan()
    assert z not in ptrs(r3.unreferenced)
    assert obj(k, z).flags & OBJECT_REPORTED
    k.store(root, 0)
    r4 = k.kmemleak.scan()
    assert leaks(r4) == set()
    assert z in ptrs(r4.unreferenced)
    log = k.dmesg()
    assert log.count("new suspected memory leaks") == 1
    assert "kmemleak: 1 new suspected memory leaks (see /sys/kernel/debug/kmemleak)\n" in log


def test_interrupted_scan_reports_nothing(k: Kernel) -> None:
    """The stop condition (here: kmemleak disabled mid-scan) skips the reporting step."""
    z = k.kzalloc(64)
    oz = obj(k, z)
    k.sleep(6)

    def switch_off(kind: str, payload: object) -> None:
        if kind == "phase" and payload == "checksum":
            k.write(KMEMLEAK, "off")

    r = k.kmemleak.scan(observer=switch_off)
    assert r.interrupted
    assert r.new_leaks == ()
    assert not oz.flags & OBJECT_REPORTED
    assert "new suspected memory leaks" not in k.dmesg()


def test_clear_turns_reported_objects_into_roots(k: Kernel) -> None:
    """``clear`` paints reported leaks gray for good: never listed again, and whatever
    they point to later is hidden.  Unreported (young) white objects are untouched."""
    z = k.kzalloc(64)
    k.sleep(6)
    assert leaks(k.kmemleak.scan()) == {z}
    young = k.kzalloc(64)
    k.write(KMEMLEAK, "clear")
    assert (obj(k, z).min_count, color(k, z)) == (0, "gray")
    assert obj(k, young).min_count == 1
    assert k.read(KMEMLEAK) == ""
    w = k.kzalloc(64)            # leaked later, its only pointer inside the cleared z
    k.store(z, w)
    k.sleep(6)
    results = scans(k, 3)
    assert w not in reported_in(results)
    assert color(k, w) == "gray"
    assert results[-1].grayed_by[w].holder == z
    assert z not in ptrs(results[-1].unreferenced)
    assert young in reported_in(results)


# --------------------------------------------------------------- gray list draining
def test_gray_list_drained_fifo_in_same_pass(k: Kernel) -> None:
    """Objects grayed during the drain are scanned in the same drain, first in first
    out: a chain hanging off a root is gray after one scan without any help from the
    checksum pass (its all-zero tail would be reported otherwise)."""
    chain = [k.kzalloc(64) for _ in range(8)]
    k.store(static(k), chain[0])
    for a, b in itertools.pairwise(chain):
        k.store(a + 8, b)
    # A small tree for the order: root -> (p, q); p -> p1; q -> q1; p1 and q1 -> w.
    # FIFO scans p1 before q1, so p1 is the one that grays w (LIFO would pick q1).
    p, q, p1, q1, w = (k.kzalloc(64) for _ in range(5))
    root = static(k, 2)
    k.store(root, p)
    k.store(root + 8, q)
    k.store(p, p1)
    k.store(q, q1)
    k.store(p1, w)
    k.store(q1, w)
    order: list[int] = []

    def watch(kind: str, payload: object) -> None:
        if kind == "scan_object":
            order.append(payload.pointer)  # type: ignore[attr-defined]

    k.sleep(6)
    r = k.kmemleak.scan()
    assert all(color(k, c) == "gray" for c in chain)
    assert not set(chain) & (set(r.checksum_spared) | leaks(r))
    for a, b in itertools.pairwise(chain):
        assert r.grayed_by[b].holder == a
    assert r.grayed_by[w].holder == p1
    k.kmemleak.scan(observer=watch)      # an observer implies the reference walk
    assert [x for x in order if x in {p, q, p1, q1}] == [p, q, p1, q1]


def test_pointer_in_white_object_counts_for_nothing(k: Kernel) -> None:
    """Only scanned (gray) memory contributes.  A white object's pointers help only
    while the checksum pass grays it for one scan."""
    w, x = k.kzalloc(64), k.kzalloc(64)
    k.store(w, x)
    k.sleep(6)
    r1 = k.kmemleak.scan()
    assert w in r1.checksum_spared
    assert x not in leaks(r1)           # rescued, this once
    r2 = k.kmemleak.scan()
    assert {w, x} <= leaks(r2)
    assert (obj(k, x).count, color(k, x)) == (0, "white")


# --------------------------------------------------------------------------- roots (5.3)
def test_kernel_data_and_bss_are_gray_roots(k: Kernel) -> None:
    data, bss = static(k, 1, "data"), static(k, 1, "bss")
    x, y = k.kzalloc(64), k.kzalloc(64)
    k.store(data, x)
    k.store(bss, y)
    for s in (data, bss):
        o = obj(k, s)
        assert (o.min_count, o.color) == (0, "gray")
    k.sleep(6)
    r = k.kmemleak.scan()
    assert not {x, y} & leaks(r)
    assert r.grayed_by[x].holder == obj(k, data).pointer
    assert r.grayed_by[y].holder == obj(k, bss).pointer


def test_direct_roots_scanned_first_in_kernel_order(k: Kernel) -> None:
    """Per-CPU sections, then ``struct page`` descriptors, then task stacks, and only
    then the gray objects (``.data``/``.bss`` included): the first word met grays."""
    pa = k.page_allocator
    t = k.spawn("worker")
    page = k.alloc_pages(0)
    sp = pa.struct_page(pa.virt_to_pfn(page)) + 24
    pcpu = k.per_cpu_ptr(k.percpu.define_static(8), 1)
    bss = static(k)
    w, x, y = k.kzalloc(64), k.kzalloc(64), k.kzalloc(64)
    with k.task_context(t), k.stack_frame(3) as f:
        for i, target in enumerate((w, x, y)):
            k.store(f.slot(i), target)
    k.store(bss, y)
    k.store(sp, x)
    k.store(sp + 8, w)
    k.store(pcpu, w)
    r = k.kmemleak.scan()
    assert (r.grayed_by[w].root, r.grayed_by[w].address) == ("percpu", pcpu)
    assert (r.grayed_by[x].root, r.grayed_by[x].address) == ("struct page", sp)
    assert (r.grayed_by[y].root, r.grayed_by[y].address) == ("stack", f.slot(2))
    kinds = [rr.kind for rr in r.root_ranges]
    assert kinds == sorted(kinds, key=["percpu", "struct page", "stack"].index)


def test_page_allocator_memory_never_scanned(k: Kernel) -> None:
    page = k.alloc_pages(0)
    x = k.kzalloc(64)
    k.store(page, x)
    k.store(static(k), page)    # the page is reachable, but untracked and unscanned
    assert k.kmemleak.find(page) is None
    k.sleep(6)
    assert x in leaks(k.kmemleak.scan())


def test_struct_page_descriptors_are_roots(k: Kernel) -> None:
    """The ``struct page`` of every page in use is scanned (not the page); the
    descriptor of a free page is not."""
    x, y = k.kzalloc(64), k.kzalloc(64)
    pa = k.page_allocator
    used = k.alloc_pages(0)
    gone = k.alloc_pages(0)
    k.free_pages(gone)
    used_sp = pa.struct_page(pa.virt_to_pfn(used))
    gone_sp = pa.struct_page(pa.virt_to_pfn(gone))
    assert pa.virt_to_pfn(gone) not in pa.allocated
    k.store(used_sp + 24, x)
    k.store(gone_sp + 24, y)
    k.sleep(6)
    r = k.kmemleak.scan()
    assert x not in leaks(r)
    assert r.grayed_by[x].root == "struct page"
    assert y in leaks(r)


def test_percpu_static_sections_are_roots(k: Kernel) -> None:
    """Every CPU's copy of the static per-CPU section is a direct root."""
    cookie = k.percpu.define_static(16)
    x, y = k.kzalloc(64), k.kzalloc(64)
    k.store(k.per_cpu_ptr(cookie, 0), x)
    k.store(k.per_cpu_ptr(cookie, 1) + 8, y)
    k.sleep(6)
    r = k.kmemleak.scan()
    assert not {x, y} & leaks(r)
    assert r.grayed_by[y].root == "percpu"


def test_stale_stack_word_hides_leak_with_stack_on_not_off(k: Kernel) -> None:
    t = k.spawn("worker")
    p = k.kzalloc(64)
    with k.task_context(t), k.stack_frame(2) as f:
        k.store(f.slot(0), p)
    assert k.memory.read_word(f.slot(0)) == p     # the frame returned: a stale word
    k.sleep(6)
    r = k.kmemleak.scan()
    assert p not in leaks(r)
    assert r.grayed_by[p].root == "stack"
    k.write(KMEMLEAK, "stack=off")
    assert p in leaks(k.kmemleak.scan())


def test_exited_task_stack_not_scanned(k: Kernel) -> None:
    t = k.spawn("worker")
    p = k.kzalloc(64)
    with k.task_context(t), k.stack_frame(2) as f:
        k.store(f.slot(0), p)
    k.exit_task(t)
    k.sleep(6)
    assert p in leaks(k.kmemleak.scan())


# ------------------------------------------------------------------------- per-CPU
def test_percpu_object_reported_with_min_count_1() -> None:
    k = boot(ncpus=2)
    leaked = k.alloc_percpu(16)
    o = obj(k, leaked, "percpu")
    assert (o.min_count, o.checksum) == (1, 0)
    assert k.kmemleak.find(leaked) is None     # not in the virtual tree
    k.sleep(6)
    r = k.kmemleak.scan()                       # zeroed on every CPU: CRC 0
    assert leaked in leaks(r)
    assert o.color == "white"


def test_percpu_cookie_found_through_percpu_window(
        lookups: list[tuple[str, int]]) -> None:
    """A cookie stored in scanned memory keeps the per-CPU object (looked up in the
    per-CPU tree through its own window); a pointer to one CPU's copy is no cookie."""
    k = boot(ncpus=2)
    kl = k.kmemleak
    before = (kl.min_addr, kl.max_addr)
    in_static, in_object, interior, by_copy = (k.alloc_percpu(32) for _ in range(4))
    assert (kl.min_addr, kl.max_addr) == before         # the virtual window is untouched
    assert kl.min_percpu_addr <= in_static < kl.max_percpu_addr
    holder = k.kzalloc(64)
    root = static(k)
    k.store(root, holder)
    k.store(root + 8, in_static)
    k.store(holder, in_object)
    k.store(holder + 8, interior + 8)
    k.store(holder + 16, k.per_cpu_ptr(by_copy, 0))
    k.sleep(6)
    r = k.kmemleak.scan()
    assert not {in_static, in_object, interior} & leaks(r)
    assert r.grayed_by[in_object].holder == holder
    assert by_copy in leaks(r)
    lookups.clear()
    k.kmemleak.scan(engine="reference")
    assert ("object_percpu_tree_root", in_object) in lookups


def test_percpu_object_scanned_on_every_cpu() -> None:
    k = boot(ncpus=3)
    c = k.alloc_percpu(32)
    k.store(static(k), c)
    x0, x2 = k.kzalloc(64), k.kzalloc(64)
    k.store(k.per_cpu_ptr(c, 0), x0)
    k.store(k.per_cpu_ptr(c, 2) + 24, x2)     # only the last CPU's copy holds x2
    k.sleep(6)
    r = k.kmemleak.scan()
    assert not {x0, x2} & leaks(r)
    assert r.grayed_by[x2].holder == c


@pytest.mark.parametrize(("ncpus", "copies", "spared"), [
    (2, {0: b"\x11" * 16, 1: b"\x11" * 16}, False),   # identical on 2 CPUs: XOR is 0
    (2, {0: b"\x11" * 16}, True),
    (2, {0: b"\x11" * 16, 1: b"\x22" * 16}, True),
    (3, {0: b"\x11" * 16, 1: b"\x11" * 16, 2: b"\x11" * 16}, True),
])
def test_percpu_checksum_is_xor_across_cpus(
        ncpus: int, copies: dict[int, bytes], spared: bool) -> None:
    k = boot(ncpus=ncpus)
    c = k.alloc_percpu(16)
    for cpu, data in copies.items():
        k.memory.write(k.per_cpu_ptr(c, cpu), data)
    expected = 0
    for cpu in range(ncpus):
        expected ^= crc32(copies.get(cpu, bytes(16)))
    k.sleep(6)
    r = k.kmemleak.scan()
    assert obj(k, c, "percpu").checksum == expected
    assert (c in r.checksum_spared) is spared
    assert (c in leaks(r)) is not spared


# ----------------------------------------------------------------------------- phys
def test_phys_object_is_root_and_never_found_by_scanning(
        k: Kernel, lookups: list[tuple[str, int]]) -> None:
    """memblock blocks: phys-tree objects with min_count 0, scanned through the linear
    map, outside both windows, and never looked up while scanning."""
    kl = k.kmemleak
    window = (kl.min_addr, kl.max_addr)
    v = k.memblock_alloc(64)
    phys = k.virt_to_phys(v)
    o = obj(k, phys, "phys")
    assert o.flags & OBJECT_PHYS
    assert o.min_count == 0
    assert kl.find(v) is None
    assert (kl.min_addr, kl.max_addr) == window
    x = k.kzalloc(64)
    k.store(v + 8, x)
    root = static(k)
    k.memory.write_word(root, phys)
    k.store(root + 8, v)
    k.sleep(6)
    r = k.kmemleak.scan()
    assert x not in leaks(r)
    assert r.grayed_by[x].holder == phys
    assert (o.count, o.color) == (0, "gray")
    lookups.clear()
    k.kmemleak.scan(engine="reference")
    assert not [t for t, _ in lookups if t == "object_phys_tree_root"]


def test_phys_object_outside_lowmem_painted_black(k: Kernel) -> None:
    kl = k.kmemleak
    max_pfn = k.lowmem_pfn_range()[1]
    top = max_pfn << 12
    kl.kmemleak_alloc_phys(top - 4096, 4096)     # ends exactly at max_low_pfn: stays
    kl.kmemleak_alloc_phys(top, 4096)            # beyond lowmem: black at whitening
    k.kmemleak.scan()
    inside, beyond = obj(k, top - 4096, "phys"), obj(k, top, "phys")
    assert inside.color == "gray"
    assert not inside.flags & OBJECT_NO_SCAN
    assert beyond.color == "black"
    assert beyond.flags & OBJECT_NO_SCAN


# ----------------------------------------------------------------------- the API (4.1)
def test_transient_leak_spares_once(k: Kernel) -> None:
    x = k.kzalloc(64)
    nonzero(k, x, 16)
    z = k.kzalloc(64)
    k.sleep(6)
    r1 = k.kmemleak.scan()
    assert x in r1.checksum_spared
    k.kmemleak.kmemleak_transient_leak(x)
    k.kmemleak.kmemleak_transient_leak(z)   # all zero: CRC 0 is not a change
    assert obj(k, x).checksum == 0
    r2 = k.kmemleak.scan()
    assert x in r2.checksum_spared
    assert x not in leaks(r2)
    assert z in leaks(r1)
    r3 = k.kmemleak.scan()
    assert x in leaks(r3)


def test_transient_leak_on_all_zero_object_does_not_spare(k: Kernel) -> None:
    z = k.kzalloc(64)
    k.kmemleak.kmemleak_transient_leak(z)
    k.sleep(6)
    r = k.kmemleak.scan()
    assert z in leaks(r)
    assert z not in r.checksum_spared


def test_not_leak_makes_permanent_root(k: Kernel) -> None:
    """``min_count = 0``: gray at every scan without any reference, still scanned (so
    unlike ``ignore`` what it points to is kept), never reported."""
    root = static(k)
    x, y = k.kzalloc(64), k.kzalloc(64)
    k.store(root, x)
    k.store(x, y)
    k.kmemleak.kmemleak_not_leak(x)
    k.store(root, 0)
    k.sleep(6)
    results = scans(k, 3)
    assert not {x, y} & reported_in(results)
    o = obj(k, x)
    assert (o.min_count, o.count, o.color) == (0, 0, "gray")
    assert color(k, y) == "gray"
    assert results[-1].grayed_by[y].holder == x


def test_free_removes_object_and_never_reported(k: Kernel) -> None:
    root = static(k)
    x = k.kzalloc(64)
    h, y = k.kzalloc(64), k.kzalloc(64)
    k.store(root, h)
    k.store(h, y)
    k.kfree(x)
    k.kfree(h)         # the root now holds a dangling pointer; h's bytes are not scanned
    assert k.kmemleak.find(x) is None
    assert k.kmemleak.find(h) is None
    assert not {x, h} & ptrs(k.kmemleak.objects())
    k.sleep(6)
    results = scans(k, 2)
    assert not {x, h} & reported_in(results)
    assert not {x, h} & set(results[-1].too_young)
    assert y in reported_in(results)
    # An interior pointer frees nothing (the alias warning).
    z = k.kzalloc(64)
    k.kmemleak.kmemleak_free(z + 8)
    assert "Found object by alias" in k.dmesg()
    assert obj(k, z).flags & OBJECT_ALLOCATED


def test_vfree_and_free_percpu_remove_objects(k: Kernel) -> None:
    v = k.vzalloc(64)
    vm = k.vmalloc_allocator.areas[v].vm_struct
    c = k.alloc_percpu(16)
    k.vfree(v)
    k.free_percpu(c)
    assert k.kmemleak.find(v) is None
    assert k.kmemleak.find(vm) is None
    assert k.kmemleak.find(c, tree="percpu") is None
    k.sleep(6)
    assert not {v, vm, c} & reported_in(scans(k, 2))


def test_large_kmalloc_tracked_with_requested_size(k: Kernel) -> None:
    """Above KMALLOC_MAX_CACHE_SIZE the page-allocator block is registered with the
    requested size: a pointer at that size (inside the pages) is one past the end."""
    big, far = k.kzalloc(10000), k.kzalloc(10000)
    assert obj(k, big).size == 10000
    holder = k.kzalloc(10000)          # large objects are scanned like any other
    k.store(static(k), holder)
    k.store(holder + 9992, big + 9999)
    k.store(holder + 8, far + 10000)
    k.sleep(6)
    r = k.kmemleak.scan()
    assert big not in leaks(r)
    assert far in leaks(r)


def test_free_part_splits_object(k: Kernel) -> None:
    """``kmemleak_free_part`` leaves ``[start, ptr)`` and ``[ptr+size, end)`` with the same
    min_count and fresh metadata (new jiffies, checksum 0, no NO_SCAN)."""
    kl = k.kmemleak
    page = k.alloc_pages(0)
    k.memory.fill(page, 4096, 0)
    nonzero(k, page, 100)
    nonzero(k, page, 3000)
    kl.kmemleak_alloc(page, 4096, 2)
    kl.kmemleak_no_scan(page)
    kl.scan()                            # records a non-zero checksum
    assert obj(k, page).checksum != 0
    k.sleep(6)
    split_at = k.jiffies
    kl.kmemleak_free_part(page + 1024, 1024)
    left, right = obj(k, page), obj(k, page + 2048)
    assert (left.pointer, left.size) == (page, 1024)
    assert (right.pointer, right.size) == (page + 2048, 2048)
    assert kl.find(page + 1024) is None
    assert kl.find(page + 2047) is None
    for part in (left, right):
        assert (part.min_count, part.checksum, part.jiffies) == (2, 0, split_at)
        assert not part.flags & OBJECT_NO_SCAN
    root = static(k)
    k.store(root, page + 1024 + 16)     # into the freed hole: keeps nothing
    k.store(root + 8, page + 3000)      # two words into the right part
    k.store(root + 16, page + 2048)
    r = kl.scan()
    assert page in r.checksum_spared    # its checksum started again from 0 ...
    assert right.color == "gray"
    assert right.count == 2
    k.sleep(3)
    r = kl.scan()
    assert page in r.too_young          # ... and so did its age, at the split
    k.sleep(3)
    r = kl.scan()
    assert page in leaks(r)
    assert page + 2048 not in leaks(r)
    assert right.color == "gray"


# ------------------------------------------------------------------- architectures
def test_arm64_tagged_pointer_untagged() -> None:
    """arm64 clears the KASAN tag (top byte) before lookups; x86_64 does not."""
    for arch, counts in (("arm64", True), ("x86_64", False)):
        k = boot(arch=arch)
        p = k.kzalloc(64)
        tagged = (p & ((1 << 56) - 1)) | (0xF3 << 56)
        assert tagged != p
        k.store(static(k), tagged)
        k.sleep(6)
        r = k.kmemleak.scan()
        assert (p not in leaks(r)) is counts, arch
        assert (color(k, p) == "gray") is counts, arch


def test_i386_four_byte_words() -> None:
    """32-bit: words are 4 bytes at 4-byte alignment (not 8), little-endian."""
    k = boot(arch="i386")
    assert k.arch.word_size == 4
    root = static(k, 4)
    at4 = root if root % 8 == 4 else root + 4     # 4-aligned, not 8-aligned
    x, y, z = k.kzalloc(32), k.kzalloc(32), k.kzalloc(32)
    assert x < 1 << 32
    k.store(at4, x)
    k.memory.write(at4 + 6, y.to_bytes(4, "little"))     # misaligned: invisible
    k.sleep(6)
    r = k.kmemleak.scan()
    assert x not in leaks(r)
    assert y in leaks(r)
    assert z in leaks(r)
    assert r.grayed_by[x].address == at4


# ---------------------------------------------------------------------- properties
#: A heap: node kinds, edges (src, dst, byte offset into dst), root edges (dst, offset).
Heap = tuple[list[str], list[tuple[int, int, int]], list[tuple[int, int]]]
NODE_SIZE = 128
EDGE_SLOTS = 8             # words 0..7 of a node hold its edges; word 15 is spare
ROOT_SLOTS = 8


@st.composite
def heaps(draw: st.DrawFn, max_nodes: int = 7) -> Heap:
    n = draw(st.integers(1, max_nodes))
    kinds = draw(st.lists(st.sampled_from(["kzalloc", "kzalloc", "kzalloc", "vzalloc"]),
                          min_size=n, max_size=n))
    node = st.integers(0, n - 1)
    offset = st.integers(0, NODE_SIZE - 1)
    edges = draw(st.lists(st.tuples(node, node, offset), max_size=3 * n))
    roots = draw(st.lists(st.tuples(node, offset), max_size=3))
    return kinds, edges, roots


def build(k: Kernel, heap: Heap, order: list[int] | None = None) -> tuple[list[int], int]:
    """Allocate the nodes (in *order*), store the edges; return (addresses, root)."""
    kinds, edges, roots = heap
    ws = k.arch.word_size
    addrs = [0] * len(kinds)
    for i in order if order is not None else range(len(kinds)):
        addrs[i] = k.kzalloc(NODE_SIZE) if kinds[i] == "kzalloc" else k.vzalloc(NODE_SIZE)
    root = static(k, ROOT_SLOTS + 1)
    for slot, (dst, off) in enumerate(roots):
        k.store(root + slot * ws, addrs[dst] + off)
    used = [0] * len(kinds)
    for src, dst, off in edges:
        if used[src] < EDGE_SLOTS:
            k.store(addrs[src] + used[src] * ws, addrs[dst] + off)
            used[src] += 1
    return addrs, root


def reachable(heap: Heap) -> set[int]:
    """Nodes reachable from the roots through plain pointers (self-loops aside)."""
    kinds, edges, roots = heap
    out: dict[int, list[int]] = {}
    used = [0] * len(kinds)
    for src, dst, _ in edges:
        if used[src] < EDGE_SLOTS:
            used[src] += 1
            out.setdefault(src, []).append(dst)
    seen = {dst for dst, _ in roots}
    todo = list(seen)
    while todo:
        for dst in out.get(todo.pop(), []):
            if dst not in seen:
                seen.add(dst)
                todo.append(dst)
    return seen


def outcome(k: Kernel, addrs: list[int], nscans: int = 2) -> list[tuple[object, ...]]:
    """Per scan: the reported node indices, the spared ones, and per node (colour, count)."""
    index = {a: i for i, a in enumerate(addrs)}
    out: list[tuple[object, ...]] = []
    for r in scans(k, nscans):
        out.append((
            sorted(index[p] for p in leaks(r) if p in index),
            sorted(index[p] for p in r.checksum_spared if p in index),
            sorted(index[p] for p in ptrs(r.unreferenced) if p in index),
            [(obj(k, a).color, obj(k, a).count) for a in addrs],
        ))
    return out


# The autouse ``engine`` fixture only selects a constant: sharing it between examples is fine.
PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@PROPERTY
@given(heap=heaps(), data=st.data())
def test_property_order_independence(heap: Heap, data: st.DataObject) -> None:
    """Shuffling the creation order of the same pointer graph changes addresses and the
    gray-list order, not the reported sets, colours or counts."""
    order = data.draw(st.permutations(range(len(heap[0]))), label="creation order")
    k1, k2 = boot(), boot()
    a1, _ = build(k1, heap)
    a2, _ = build(k2, heap, order)
    k1.sleep(6)
    k2.sleep(6)
    assert outcome(k1, a1) == outcome(k2, a2)


@PROPERTY
@given(heap=heaps(), target=st.integers(0, 100), offset=st.integers(0, NODE_SIZE - 1),
       in_root=st.booleans(), where=st.integers(0, 100))
def test_property_monotonicity_extra_reference_never_adds_a_report(
        heap: Heap, target: int, offset: int, in_root: bool, where: int) -> None:
    """Adding one scanned word that points into an object never adds a report."""
    n = len(heap[0])
    target %= n
    k1, k2 = boot(), boot()
    a1, _ = build(k1, heap)
    a2, root2 = build(k2, heap)
    ws = k2.arch.word_size
    slot = root2 + ROOT_SLOTS * ws if in_root else a2[where % n] + (NODE_SIZE - ws)
    k2.store(slot, a2[target] + offset)
    k1.sleep(6)
    k2.sleep(6)
    r1, r2 = scans(k1, 2), scans(k2, 2)
    index1 = {a: i for i, a in enumerate(a1)}
    index2 = {a: i for i, a in enumerate(a2)}
    without = {index1[p] for p in reported_in(r1) if p in index1}
    with_extra = {index2[p] for p in reported_in(r2) if p in index2}
    assert with_extra <= without
    white1 = {i for i, a in enumerate(a1) if color(k1, a) == "white"}
    white2 = {i for i, a in enumerate(a2) if color(k2, a) == "white"}
    assert white2 <= white1


@PROPERTY
@given(heap=heaps())
def test_property_idempotence_no_mutation_same_report(heap: Heap) -> None:
    """Once checksums are settled, scanning again without any mutation changes
    nothing: same listing, same colours and counts, no new report."""
    k = boot()
    addrs, _ = build(k, heap)
    k.sleep(6)
    _, second, third = outcome(k, addrs, 3)
    assert second[2:] == third[2:]
    assert third[0] == []
    assert third[1] == []


@PROPERTY
@given(heap=heaps())
def test_property_reachable_from_static_never_reported(heap: Heap) -> None:
    """Nothing reachable through plain pointers from a kernel static is ever reported;
    and (min_count 1 or 2 with the vm_struct) everything else is, within two scans."""
    k = boot()
    addrs, _ = build(k, heap)
    live = reachable(heap)
    k.sleep(6)
    results = scans(k, 3)
    index = {a: i for i, a in enumerate(addrs)}
    reported = {index[p] for p in reported_in(results) if p in index}
    assert not reported & live
    assert reported == set(range(len(addrs))) - live
    for i, a in enumerate(addrs):
        assert color(k, a) == ("gray" if i in live else "white")
