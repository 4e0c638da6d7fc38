"""Tests of kmemsim.klib: struct layouts per ABI and list.h on simulated memory."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmemsim.errors import KmemsimTypeError, KmemsimValueError, PageFault
from kmemsim.klib import (
    INIT_HLIST_HEAD,
    INIT_LIST_HEAD,
    Array,
    HlistHead,
    HlistNode,
    ListHead,
    Pointer,
    Scalar,
    Struct,
    char,
    container_of,
    hlist_add_head,
    hlist_del,
    hlist_del_init,
    hlist_empty,
    hlist_for_each,
    hlist_for_each_entry,
    hlist_for_each_entry_safe,
    hlist_unhashed,
    int_,
    list_add,
    list_add_tail,
    list_count_nodes,
    list_del,
    list_del_init,
    list_empty,
    list_first_entry,
    list_first_entry_or_null,
    list_for_each,
    list_for_each_entry,
    list_for_each_entry_reverse,
    list_for_each_entry_safe,
    list_for_each_prev,
    list_for_each_safe,
    list_is_first,
    list_is_head,
    list_is_last,
    list_is_singular,
    list_last_entry,
    list_move,
    list_move_tail,
    list_next_entry,
    list_prev_entry,
    list_replace,
    list_replace_init,
    long,
    long_long,
    pointer,
    s32,
    short,
    size_t,
    u8,
    u16,
    u32,
    u64,
    unsigned_long,
)
from kmemsim.layout import ARM64, I386, X86_64, Arch
from kmemsim.memory import AddressSpace

ARCHES = [X86_64, ARM64, I386]
ARCH_IDS = [a.name for a in ARCHES]

# The article's node: struct { long header[25]; struct list_head list; char name[25]; }
NODE = Struct("node", [("header", Array(long, 25)), ("list", ListHead), ("name", Array(char, 25))])


def make_kernel(arch: Arch) -> SimpleNamespace:
    """A fake kernel: one 64 KiB region in the direct map; store() writes and logs."""
    mem = AddressSpace(arch)
    base = arch.page_offset + 0x100000  # 0xffff888000100000 on x86_64, 0xc0100000 on i386
    mem.map(base, 0x10000, "test")
    stores: list[tuple[int, int]] = []

    def store(slot: int, target: int) -> None:
        stores.append((slot, target))
        mem.write_word(slot, target)

    return SimpleNamespace(arch=arch, memory=mem, store=store, stores=stores, base=base)


@pytest.fixture(params=ARCHES, ids=ARCH_IDS)
def k(request: pytest.FixtureRequest) -> SimpleNamespace:
    return make_kernel(request.param)


def nodes(k: SimpleNamespace, n: int) -> tuple[int, list[int]]:
    """A list head at base and *n* list_heads spaced 0x40 apart after it."""
    return k.base, [k.base + 0x40 * (i + 1) for i in range(n)]


def words(k: SimpleNamespace, entry: int) -> tuple[int, int]:
    """(next, prev) of the list_head at *entry*, read back from memory."""
    return k.memory.read_word(entry), k.memory.read_word(entry + k.arch.word_size)


# -- struct layouts -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch", "size", "list_off", "prev_off", "name_off"),
    [(X86_64, 248, 200, 208, 216), (ARM64, 248, 200, 208, 216), (I386, 136, 100, 104, 108)],
    ids=ARCH_IDS,
)
def test_article_node_layout(
    arch: Arch, size: int, list_off: int, prev_off: int, name_off: int
) -> None:
    assert NODE.sizeof(arch) == size
    assert NODE.offsetof(arch, "header") == 0
    assert NODE.offsetof(arch, "list") == list_off
    assert NODE.offsetof(arch, "list.next") == list_off
    assert NODE.offsetof(arch, "list.prev") == prev_off
    assert NODE.offsetof(arch, "name") == name_off
    assert NODE.alignof(arch) == arch.word_size
    # 25 bytes of name after name_off, then tail padding up to the word size.
    assert size - (name_off + 25) == (7 if arch.word_size == 8 else 3)


@pytest.mark.parametrize(
    ("ctype", "x86", "i386"),
    [
        (char, (1, 1), (1, 1)),
        (u8, (1, 1), (1, 1)),
        (short, (2, 2), (2, 2)),
        (u16, (2, 2), (2, 2)),
        (int_, (4, 4), (4, 4)),
        (u32, (4, 4), (4, 4)),
        (s32, (4, 4), (4, 4)),
        (long, (8, 8), (4, 4)),
        (unsigned_long, (8, 8), (4, 4)),
        (size_t, (8, 8), (4, 4)),
        (pointer, (8, 8), (4, 4)),
        (long_long, (8, 8), (8, 4)),
        (u64, (8, 8), (8, 4)),
    ],
    ids=lambda v: v.cname if isinstance(v, Scalar) else None,
)
def test_scalar_size_and_alignment(
    ctype: Scalar, x86: tuple[int, int], i386: tuple[int, int]
) -> None:
    assert (ctype.sizeof(X86_64), ctype.alignof(X86_64)) == x86
    assert (ctype.sizeof(ARM64), ctype.alignof(ARM64)) == x86
    assert (ctype.sizeof(I386), ctype.alignof(I386)) == i386


@pytest.mark.parametrize("ctype", [u64, long_long])
def test_i386_aligns_8_byte_scalars_to_4(ctype: Scalar) -> None:
    s = Struct("s", [("c", char), ("v", ctype)])
    assert (s.offsetof(I386, "v"), s.sizeof(I386), s.alignof(I386)) == (4, 12, 4)
    assert (s.offsetof(X86_64, "v"), s.sizeof(X86_64), s.alignof(X86_64)) == (8, 16, 8)


def test_holes_and_tail_padding() -> None:
    s = Struct("s", [("c", char), ("p", pointer), ("i", int_)])
    assert [m.offset for m in s.members(X86_64)] == [0, 8, 16]
    assert s.sizeof(X86_64) == 24
    assert [m.offset for m in s.members(I386)] == [0, 4, 8]
    assert s.sizeof(I386) == 12
    text = s.describe(X86_64)
    assert "/* XXX 7 bytes hole, try to pack */" in text
    assert "/* padding: 4 */" in text
    assert "/* size: 24, cachelines: 1, members: 3 */" in text
    text = s.describe(I386)
    assert "/* XXX 3 bytes hole, try to pack */" in text
    assert "padding" not in text


def test_describe_article_node() -> None:
    text = NODE.describe(X86_64)
    lines = text.splitlines()
    assert lines[0] == "struct node {"
    assert lines[-1] == "};"
    assert any("long" in ln and "header[25];" in ln and "/*     0   200 */" in ln for ln in lines)
    assert any("struct list_head" in ln and "list;" in ln and "/*   200    16 */" in ln
               for ln in lines)
    assert any("char" in ln and "name[25];" in ln and "/*   216    25 */" in ln for ln in lines)
    assert "/* size: 248, cachelines: 4, members: 3 */" in text
    assert "/* padding: 7 */" in text
    assert "hole" not in text
    assert "/* padding: 3 */" in NODE.describe(I386)


def test_nested_struct_and_array_of_structs() -> None:
    inner = Struct("inner", [("c", char), ("v", u64)])
    outer = Struct("outer", [("b", u8), ("in_", inner), ("heads", Array(ListHead, 3))])
    assert outer.offsetof(X86_64, "in_") == 8
    assert outer.offsetof(X86_64, "in_.v") == 16
    assert outer.offsetof(X86_64, "heads") == 24
    assert outer.offsetof(X86_64, "heads[2].prev") == 24 + 2 * 16 + 8
    assert outer.sizeof(X86_64) == 72
    assert outer.offsetof(I386, "in_") == 4
    assert outer.offsetof(I386, "in_.v") == 8
    assert outer.offsetof(I386, "heads[2].prev") == 16 + 2 * 8 + 4
    assert outer.sizeof(I386) == 40


def test_multidimensional_array_and_flexible_array() -> None:
    grid = Array(Array(short, 3), 2)
    assert grid.sizeof(X86_64) == 12
    assert grid.cname == "short[2][3]"
    s = Struct("s", [("len", u32), ("grid", grid), ("data", Array(u64, 0))])
    assert s.offsetof(X86_64, "grid[1][2]") == 4 + 3 * 2 + 2 * 2
    # A flexible array adds no size but still aligns the struct.
    assert s.offsetof(X86_64, "data") == 16
    assert s.sizeof(X86_64) == 16
    assert s.offsetof(X86_64, "data[5]") == 16 + 40
    assert s.offsetof(I386, "data") == 16
    assert s.sizeof(I386) == 16


def test_predefined_list_structs() -> None:
    for arch in ARCHES:
        ws = arch.word_size
        assert ListHead.sizeof(arch) == 2 * ws
        assert ListHead.offsetof(arch, "prev") == ws
        assert HlistNode.sizeof(arch) == 2 * ws
        assert HlistNode.offsetof(arch, "pprev") == ws
        assert HlistHead.sizeof(arch) == ws
    assert ListHead.cname == "struct list_head"
    assert HlistNode.fields[1][1].cname == "struct hlist_node * *"


def test_empty_struct() -> None:
    e = Struct("empty", [])
    assert (e.sizeof(X86_64), e.alignof(X86_64)) == (0, 1)


def test_type_equality_and_repr() -> None:
    assert Array(long, 3) == Array(long, 3)
    assert Array(long, 3) != Array(long, 4)
    assert hash(Struct("a", [("x", int_)])) == hash(Struct("a", [("x", int_)]))
    assert Pointer("void") == pointer
    assert pointer != unsigned_long
    assert repr(Array(char, 25)) == "Array(Scalar('char', 1), 25)"
    assert repr(long) == "Scalar('long', word)"
    assert repr(ListHead) == (
        "Struct('list_head', next: struct list_head *, prev: struct list_head *)"
    )
    assert repr(NODE.members(X86_64)[1]) == "<Member list @200+16>"
    with pytest.raises(AttributeError):
        long.extra = 1  # type: ignore[attr-defined]


# -- struct bad input -----------------------------------------------------------------
def test_unknown_member() -> None:
    with pytest.raises(KmemsimValueError, match="struct node has no member named 'lst'"):
        NODE.offsetof(X86_64, "lst")
    with pytest.raises(KmemsimValueError, match="struct list_head has no member named 'nxt'"):
        NODE.offsetof(X86_64, "list.nxt")


@pytest.mark.parametrize(
    ("path", "msg"),
    [
        ("header.x", "has no member 'x'"),
        ("list[0]", "subscripted a non-array"),
        ("header[25]", r"index 25 out of range for \[25\]"),
        ("list.", "malformed member path"),
        ("header[-1]", "malformed member path"),
        ("", "malformed member path"),
    ],
)
def test_bad_member_paths(path: str, msg: str) -> None:
    with pytest.raises(KmemsimValueError, match=msg):
        NODE.offsetof(X86_64, path)


def test_negative_array_length() -> None:
    with pytest.raises(KmemsimValueError, match="array length must be at least 0, got -1"):
        Array(long, -1)


def test_array_length_must_be_int() -> None:
    with pytest.raises(KmemsimTypeError, match="array length must be an int"):
        Array(long, 2.5)  # type: ignore[arg-type]
    with pytest.raises(KmemsimTypeError, match="array length must be an int"):
        Array(long, True)


def test_array_element_must_be_type() -> None:
    with pytest.raises(KmemsimTypeError, match="array element must be a C type, not int"):
        Array(8, 2)  # type: ignore[arg-type]


def test_non_type_member() -> None:
    with pytest.raises(KmemsimTypeError, match="member 'x' has type int, which is not a C type"):
        Struct("s", [("x", 4)])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("name", "fields", "exc", "msg"),
    [
        ("s", [("x", int_), ("x", char)], KmemsimValueError, "duplicate member 'x'"),
        ("s", [("1x", int_)], KmemsimValueError, "must be a C identifier"),
        ("s", [("x", int_, 3)], KmemsimTypeError, r"field 0 must be a \(name, ctype\) pair"),
        ("s", "x", KmemsimTypeError, "fields must be a list"),
        ("my struct", [], KmemsimValueError, "struct name must be a C identifier"),
    ],
)
def test_bad_struct_declarations(
    name: str, fields: object, exc: type[Exception], msg: str
) -> None:
    with pytest.raises(exc, match=msg):
        Struct(name, fields)  # type: ignore[arg-type]


def test_bad_scalar_and_arch() -> None:
    with pytest.raises(KmemsimValueError, match="size must be 1, 2, 4 or 8"):
        Scalar("u24", 3)
    with pytest.raises(KmemsimTypeError, match="arch must be an Arch"):
        NODE.sizeof("x86_64")  # type: ignore[arg-type]


# -- list.h -----------------------------------------------------------------------------
def test_init_list_head(k: SimpleNamespace) -> None:
    head, _ = nodes(k, 0)
    INIT_LIST_HEAD(k, head)
    assert words(k, head) == (head, head)
    assert list_empty(k, head)
    assert list(list_for_each(k, head)) == []


def test_list_add_links_in_kernel_order(k: SimpleNamespace) -> None:
    head, (a, b) = nodes(k, 2)
    ws = k.arch.word_size
    INIT_LIST_HEAD(k, head)
    list_add(k, a, head)
    k.stores.clear()
    list_add(k, b, head)
    # __list_add(new=b, prev=head, next=a): next->prev, new->next, new->prev, prev->next.
    assert k.stores == [(a + ws, b), (b, a), (b + ws, head), (head, b)]
    assert words(k, head) == (b, a)
    assert words(k, b) == (a, head)
    assert words(k, a) == (head, b)
    assert list(list_for_each(k, head)) == [b, a]


def test_list_add_tail_order(k: SimpleNamespace) -> None:
    head, (a, b, c) = nodes(k, 3)
    INIT_LIST_HEAD(k, head)
    for n in (a, b, c):
        list_add_tail(k, n, head)
    assert words(k, head) == (a, c)
    assert words(k, a) == (b, head)
    assert words(k, b) == (c, a)
    assert words(k, c) == (head, b)
    assert list(list_for_each(k, head)) == [a, b, c]
    assert list(list_for_each_prev(k, head)) == [c, b, a]
    assert list_count_nodes(k, head) == 3


@pytest.mark.parametrize(
    ("arch", "p1", "p2"),
    [
        (X86_64, 0xDEAD000000000100, 0xDEAD000000000122),
        (ARM64, 0xDEAD000000000100, 0xDEAD000000000122),
        (I386, 0x100, 0x122),
    ],
    ids=ARCH_IDS,
)
def test_list_del_poisons(arch: Arch, p1: int, p2: int) -> None:
    k = make_kernel(arch)
    head, (a, b, c) = nodes(k, 3)
    INIT_LIST_HEAD(k, head)
    for n in (a, b, c):
        list_add_tail(k, n, head)
    k.stores.clear()
    list_del(k, b)
    assert words(k, b) == (p1, p2)
    assert words(k, a) == (c, head)
    assert words(k, c) == (head, a)
    assert list(list_for_each(k, head)) == [a, c]
    # Only the relinking goes through store(): the poison is data, not a reference.
    assert k.stores == [(c + arch.word_size, a), (a, c)]


def test_double_list_del_faults_on_poison(k: SimpleNamespace) -> None:
    head, (a,) = nodes(k, 1)
    INIT_LIST_HEAD(k, head)
    list_add(k, a, head)
    list_del(k, a)
    with pytest.raises(PageFault):
        list_del(k, a)


def test_list_del_init_self_pointers(k: SimpleNamespace) -> None:
    head, (a, b) = nodes(k, 2)
    INIT_LIST_HEAD(k, head)
    list_add_tail(k, a, head)
    list_add_tail(k, b, head)
    list_del_init(k, a)
    assert words(k, a) == (a, a)
    assert list_empty(k, a)
    assert words(k, head) == (b, b)
    assert list(list_for_each(k, head)) == [b]
    list_del_init(k, a)  # deleting an empty self-linked entry is harmless
    assert words(k, a) == (a, a)


def test_move_replace_and_predicates(k: SimpleNamespace) -> None:
    head, (a, b, c, d) = nodes(k, 4)
    INIT_LIST_HEAD(k, head)
    list_add_tail(k, a, head)
    assert list_is_singular(k, head)
    assert list_is_first(k, a, head)
    assert list_is_last(k, a, head)
    list_add_tail(k, b, head)
    list_add_tail(k, c, head)
    assert not list_is_singular(k, head)
    assert list_is_head(k, head, head)
    assert not list_is_head(k, a, head)
    list_move_tail(k, a, head)
    assert list(list_for_each(k, head)) == [b, c, a]
    list_move(k, c, head)
    assert list(list_for_each(k, head)) == [c, b, a]
    list_replace(k, b, d)
    assert list(list_for_each(k, head)) == [c, d, a]
    assert list(list_for_each_prev(k, head)) == [a, d, c]
    list_replace_init(k, d, b)
    assert words(k, d) == (d, d)
    assert list(list_for_each(k, head)) == [c, b, a]


def test_iteration_with_entries(k: SimpleNamespace) -> None:
    off = NODE.offsetof(k.arch, "list")
    size = NODE.sizeof(k.arch)
    head = k.base
    objs = [k.base + 0x100 + i * size for i in range(4)]
    INIT_LIST_HEAD(k, head)
    for o in objs:
        list_add_tail(k, o + off, head)
    assert list(list_for_each_entry(k, head, NODE, "list")) == objs
    assert list(list_for_each_entry_reverse(k, head, NODE, "list")) == objs[::-1]
    assert list_first_entry(k, head, NODE, "list") == objs[0]
    assert list_last_entry(k, head, NODE, "list") == objs[-1]
    assert list_first_entry_or_null(k, head, NODE, "list") == objs[0]
    assert list_next_entry(k, objs[1], NODE, "list") == objs[2]
    assert list_prev_entry(k, objs[1], NODE, "list") == objs[0]
    # The entry after the last one is the head's container, as in the kernel.
    assert list_next_entry(k, objs[-1], NODE, "list") == head - off


def test_safe_iteration_allows_deleting_current(k: SimpleNamespace) -> None:
    off = NODE.offsetof(k.arch, "list")
    head = k.base
    objs = [k.base + 0x100 + i * NODE.sizeof(k.arch) for i in range(5)]
    INIT_LIST_HEAD(k, head)
    for o in objs:
        list_add_tail(k, o + off, head)
    seen = []
    for o in list_for_each_entry_safe(k, head, NODE, "list"):
        seen.append(o)
        if objs.index(o) % 2 == 0:
            list_del(k, o + off)
    assert seen == objs
    assert list(list_for_each_entry(k, head, NODE, "list")) == [objs[1], objs[3]]
    for pos in list_for_each_safe(k, head):
        list_del_init(k, pos)
    assert list_empty(k, head)
    assert list_first_entry_or_null(k, head, NODE, "list") is None


def test_unsafe_iteration_names_poisoned_entry(k: SimpleNamespace) -> None:
    head, (a, b) = nodes(k, 2)
    INIT_LIST_HEAD(k, head)
    list_add_tail(k, a, head)
    list_add_tail(k, b, head)
    it = list_for_each(k, head)
    assert next(it) == a
    list_del(k, a)
    with pytest.raises(KmemsimValueError, match=rf"{k.arch.fmt_addr(a)}->next is LIST_POISON1"):
        next(it)


def test_walk_bound_on_cyclic_list(k: SimpleNamespace) -> None:
    head, (a, b) = nodes(k, 2)
    INIT_LIST_HEAD(k, head)
    list_add_tail(k, a, head)
    list_add_tail(k, b, head)
    k.memory.write_word(b, a)  # corrupt: b->next = a, the walk never returns to head
    with pytest.raises(KmemsimValueError, match=k.arch.fmt_addr(head)):
        list(list_for_each(k, head, limit=1000))
    with pytest.raises(KmemsimValueError, match="corrupt or cyclic"):
        list_count_nodes(k, head, limit=50)


def test_uninitialised_head_is_reported(k: SimpleNamespace) -> None:
    head = k.base
    with pytest.raises(KmemsimValueError, match=rf"{k.arch.fmt_addr(head)}->next is NULL"):
        list(list_for_each(k, head))


def test_reverse_walk_names_poisoned_prev(k: SimpleNamespace) -> None:
    head, (a, b) = nodes(k, 2)
    INIT_LIST_HEAD(k, head)
    list_add_tail(k, a, head)
    list_add_tail(k, b, head)
    k.memory.write_word(b + k.arch.word_size, k.arch.list_poison2)  # a stale, half-deleted b
    with pytest.raises(KmemsimValueError, match=rf"{k.arch.fmt_addr(b)}->prev is LIST_POISON2"):
        list(list_for_each_prev(k, head))


@pytest.mark.parametrize("arch", ARCHES, ids=ARCH_IDS)
def test_container_of(arch: Arch) -> None:
    obj = arch.page_offset + 0x1000
    assert container_of(obj + NODE.offsetof(arch, "list"), NODE, "list", arch) == obj
    assert container_of(obj + NODE.offsetof(arch, "list.prev"), NODE, "list.prev", arch) == obj
    assert container_of(obj + NODE.offsetof(arch, "name"), NODE, "name", arch) == obj
    # container_of(NULL) wraps like C pointer arithmetic.
    assert container_of(0, NODE, "list", arch) == arch.word_mask + 1 - NODE.offsetof(arch, "list")
    with pytest.raises(KmemsimValueError, match="no member named 'lst'"):
        container_of(obj, NODE, "lst", arch)
    with pytest.raises(KmemsimValueError, match="ptr must be at least 0"):
        container_of(-1, NODE, "list", arch)


# -- hlist ------------------------------------------------------------------------------
def test_hlist(k: SimpleNamespace) -> None:
    ws = k.arch.word_size
    head, (a, b, c) = nodes(k, 3)
    INIT_HLIST_HEAD(k, head)
    assert hlist_empty(k, head)
    for n in (a, b, c):
        hlist_add_head(k, n, head)
    assert list(hlist_for_each(k, head)) == [c, b, a]
    # pprev points at the previous next field (or at head->first).
    assert k.memory.read_word(c + ws) == head
    assert k.memory.read_word(b + ws) == c
    hlist_del(k, b)
    assert words(k, b) == (k.arch.list_poison1, k.arch.list_poison2)
    assert list(hlist_for_each(k, head)) == [c, a]
    assert k.memory.read_word(a + ws) == c
    hlist_del_init(k, c)
    assert hlist_unhashed(k, c)
    assert words(k, c) == (0, 0)
    assert k.memory.read_word(head) == a
    assert k.memory.read_word(a + ws) == head
    hlist_del_init(k, c)  # unhashed: a no-op
    assert list(hlist_for_each(k, head)) == [a]


def test_hlist_entries_and_safe_deletion(k: SimpleNamespace) -> None:
    obj = Struct("obj", [("key", u32), ("node", HlistNode)])
    off = obj.offsetof(k.arch, "node")
    head = k.base
    objs = [k.base + 0x40 * (i + 1) for i in range(3)]
    INIT_HLIST_HEAD(k, head)
    for o in objs:
        hlist_add_head(k, o + off, head)
    assert list(hlist_for_each_entry(k, head, obj, "node")) == objs[::-1]
    it = hlist_for_each(k, head)
    first = next(it)
    hlist_del(k, first)
    with pytest.raises(KmemsimValueError, match=rf"{k.arch.fmt_addr(first)}->next is poison"):
        next(it)
    for o in hlist_for_each_entry_safe(k, head, obj, "node"):
        hlist_del(k, o + off)
    assert hlist_empty(k, head)


# -- property: list.h agrees with a Python list -----------------------------------------
_OPS = st.lists(
    st.tuples(st.sampled_from(["add", "add_tail", "del", "del_init", "move", "move_tail"]),
              st.integers(0, 7)),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(arch=st.sampled_from(ARCHES), ops=_OPS)
def test_list_ops_match_python_model(arch: Arch, ops: list[tuple[str, int]]) -> None:
    k = make_kernel(arch)
    head, entries = nodes(k, 8)
    INIT_LIST_HEAD(k, head)
    model: list[int] = []
    for op, i in ops:
        n = entries[i]
        on_list = n in model
        if op == "add" and not on_list:
            list_add(k, n, head)
            model.insert(0, n)
        elif op == "add_tail" and not on_list:
            list_add_tail(k, n, head)
            model.append(n)
        elif op == "del" and on_list:
            list_del(k, n)
            model.remove(n)
            assert words(k, n) == (arch.list_poison1, arch.list_poison2)
        elif op == "del_init" and on_list:
            list_del_init(k, n)
            model.remove(n)
            assert words(k, n) == (n, n)
        elif op == "move" and on_list:
            list_move(k, n, head)
            model.remove(n)
            model.insert(0, n)
        elif op == "move_tail" and on_list:
            list_move_tail(k, n, head)
            model.remove(n)
            model.append(n)
        assert list(list_for_each(k, head)) == model
        assert list(list_for_each_prev(k, head)) == model[::-1]
    assert list_empty(k, head) == (not model)
    # Every link is consistent: x->next->prev == x all the way round.
    for x in [head, *model]:
        nxt = k.memory.read_word(x)
        assert k.memory.read_word(nxt + arch.word_size) == x
