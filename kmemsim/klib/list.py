"""``include/linux/list.h`` on simulated memory.

Every function takes a kernel-like object *k* first (see :class:`KernelLike`):
list heads live in ``k.memory`` and are addressed by their simulated address.
Each pointer the list code links (``next``, ``prev``, ``pprev``, ``first``)
is written with ``k.store(slot, target)``, so that the simulator can record it
as a reference the program means; ``LIST_POISON1/2`` are data, not references,
and are written with ``k.memory.write_word``.

As in a kernel built without ``CONFIG_DEBUG_LIST``, deleting an entry twice
dereferences the poison and faults.  Iterators are more careful than the
kernel's macros: they raise :class:`~kmemsim.errors.KmemsimValueError` on a
poisoned, NULL or endless list instead of faulting or spinning forever.

>>> from types import SimpleNamespace
>>> from kmemsim.layout import X86_64
>>> from kmemsim.memory import AddressSpace
>>> mem = AddressSpace(X86_64)
>>> _ = mem.map(0xffff888000100000, 4096, "demo")
>>> k = SimpleNamespace(arch=X86_64, memory=mem,
...                     store=lambda slot, target: mem.write_word(slot, target))
>>> head, a, b = 0xffff888000100000, 0xffff888000100040, 0xffff888000100080
>>> INIT_LIST_HEAD(k, head)
>>> list_add_tail(k, a, head); list_add_tail(k, b, head)
>>> [hex(p) for p in list_for_each(k, head)]
['0xffff888000100040', '0xffff888000100080']
>>> list_del(k, a)
>>> hex(mem.read_word(a))
'0xdead000000000100'
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Protocol

from ..errors import KmemsimValueError, check_int
from ..layout import X86_64, Arch
from .struct import Struct

__all__ = [
    "INIT_HLIST_HEAD",
    "INIT_HLIST_NODE",
    "INIT_LIST_HEAD",
    "LIST_WALK_LIMIT",
    "KernelLike",
    "MemoryLike",
    "container_of",
    "hlist_add_head",
    "hlist_del",
    "hlist_del_init",
    "hlist_empty",
    "hlist_for_each",
    "hlist_for_each_entry",
    "hlist_for_each_entry_safe",
    "hlist_unhashed",
    "list_add",
    "list_add_tail",
    "list_count_nodes",
    "list_del",
    "list_del_init",
    "list_empty",
    "list_first_entry",
    "list_first_entry_or_null",
    "list_for_each",
    "list_for_each_entry",
    "list_for_each_entry_reverse",
    "list_for_each_entry_safe",
    "list_for_each_prev",
    "list_for_each_safe",
    "list_is_first",
    "list_is_head",
    "list_is_last",
    "list_is_singular",
    "list_last_entry",
    "list_move",
    "list_move_tail",
    "list_next_entry",
    "list_prev_entry",
    "list_replace",
    "list_replace_init",
]

LIST_WALK_LIMIT = 1 << 20
"""Default bound on iterator steps: a longer walk is taken to be a corrupt (cyclic) list."""


class MemoryLike(Protocol):
    """What the list code needs of memory: word reads and data writes."""

    def read_word(self, addr: int) -> int: ...

    def write_word(self, addr: int, value: int) -> None: ...


class KernelLike(Protocol):
    """What the list code needs of a kernel: an arch, memory, and pointer stores."""

    @property
    def arch(self) -> Arch: ...

    @property
    def memory(self) -> MemoryLike: ...

    def store(self, slot: int, target: int) -> None: ...


def _demo_kernel(arch: Arch = X86_64) -> SimpleNamespace:
    """A scratch kernel for the doctests: one page mapped at the start of the direct map."""
    from ..memory import AddressSpace

    mem = AddressSpace(arch)
    mem.map(arch.page_offset + 0x100000, 4096, "demo")
    return SimpleNamespace(
        arch=arch, memory=mem, store=lambda slot, target: mem.write_word(slot, target)
    )


# struct list_head { next; prev; } and struct hlist_node { next; pprev; } put
# their second pointer one word in; struct hlist_head { first; } has one.
def _prev(k: KernelLike, entry: int) -> int:
    return entry + k.arch.word_size


# -- container_of -----------------------------------------------------------------
def container_of(ptr: int, struct: Struct, member: str, arch: Arch) -> int:
    """``container_of(ptr, struct, member)``: the struct whose *member* is at *ptr*.

    >>> from kmemsim.klib.struct import Struct, Array, ListHead, long
    >>> node = Struct("node", [("header", Array(long, 25)), ("list", ListHead)])
    >>> hex(container_of(0xffff888000100108, node, "list", X86_64))
    '0xffff888000100040'
    """
    check_int("ptr", ptr, minimum=0)
    # Wrap like C pointer arithmetic: container_of(NULL, ...) is a huge address, not < 0.
    return (ptr - struct.offsetof(arch, member)) & arch.word_mask


# -- initialisation and insertion -------------------------------------------------
def INIT_LIST_HEAD(k: KernelLike, list: int) -> None:
    """``INIT_LIST_HEAD(list)``: an empty list points at itself both ways.

    >>> k = _demo_kernel(); h = 0xffff888000100000
    >>> INIT_LIST_HEAD(k, h)
    >>> k.memory.read_word(h) == k.memory.read_word(h + 8) == h
    True
    """
    k.store(list, list)
    k.store(_prev(k, list), list)


def __list_add(k: KernelLike, new: int, prev: int, next: int) -> None:
    """``__list_add``: insert *new* between the known consecutive *prev* and *next*.

    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_LIST_HEAD(k, h); __list_add(k, a, h, h)
    >>> k.memory.read_word(h) == a
    True
    """
    # The kernel's order: publishing prev->next last is what RCU readers rely on.
    k.store(_prev(k, next), new)
    k.store(new, next)
    k.store(_prev(k, new), prev)
    k.store(prev, new)


def list_add(k: KernelLike, new: int, head: int) -> None:
    """``list_add(new, head)``: insert *new* right after *head* (stack order).

    >>> k = _demo_kernel(); h, a, b = 0xffff888000100000, 0xffff888000100040, 0xffff888000100080
    >>> INIT_LIST_HEAD(k, h); list_add(k, a, h); list_add(k, b, h)
    >>> [hex(p) for p in list_for_each(k, h)]
    ['0xffff888000100080', '0xffff888000100040']
    """
    __list_add(k, new, head, k.memory.read_word(head))


def list_add_tail(k: KernelLike, new: int, head: int) -> None:
    """``list_add_tail(new, head)``: insert *new* just before *head* (queue order).

    >>> k = _demo_kernel(); h, a, b = 0xffff888000100000, 0xffff888000100040, 0xffff888000100080
    >>> INIT_LIST_HEAD(k, h); list_add_tail(k, a, h); list_add_tail(k, b, h)
    >>> [hex(p) for p in list_for_each(k, h)]
    ['0xffff888000100040', '0xffff888000100080']
    """
    __list_add(k, new, k.memory.read_word(_prev(k, head)), head)


# -- deletion ---------------------------------------------------------------------
def __list_del(k: KernelLike, prev: int, next: int) -> None:
    """``__list_del(prev, next)``: make *prev* and *next* point to each other.

    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_LIST_HEAD(k, h); list_add(k, a, h); __list_del(k, h, h)
    >>> list_empty(k, h)
    True
    """
    k.store(_prev(k, next), prev)
    k.store(prev, next)


def __list_del_entry(k: KernelLike, entry: int) -> None:
    """``__list_del_entry(entry)``: unlink *entry*, leaving its own pointers stale.

    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_LIST_HEAD(k, h); list_add(k, a, h); __list_del_entry(k, a)
    >>> list_empty(k, h), k.memory.read_word(a) == h
    (True, True)
    """
    mem = k.memory
    __list_del(k, mem.read_word(_prev(k, entry)), mem.read_word(entry))


def list_del(k: KernelLike, entry: int) -> None:
    """``list_del(entry)``: unlink *entry* and poison its pointers.

    ``next`` becomes ``LIST_POISON1`` and ``prev`` ``LIST_POISON2``, so a
    use after deletion faults at a recognisable address.

    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_LIST_HEAD(k, h); list_add(k, a, h); list_del(k, a)
    >>> hex(k.memory.read_word(a)), hex(k.memory.read_word(a + 8)), list_empty(k, h)
    ('0xdead000000000100', '0xdead000000000122', True)
    """
    __list_del_entry(k, entry)
    k.memory.write_word(entry, k.arch.list_poison1)
    k.memory.write_word(_prev(k, entry), k.arch.list_poison2)


def list_del_init(k: KernelLike, entry: int) -> None:
    """``list_del_init(entry)``: unlink *entry* and make it an empty list of its own.

    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_LIST_HEAD(k, h); list_add(k, a, h); list_del_init(k, a)
    >>> list_empty(k, a), list_empty(k, h)
    (True, True)
    """
    __list_del_entry(k, entry)
    INIT_LIST_HEAD(k, entry)


def list_replace(k: KernelLike, old: int, new: int) -> None:
    """``list_replace(old, new)``: put *new* where *old* was; *old* is left stale.

    >>> k = _demo_kernel(); h, a, b = 0xffff888000100000, 0xffff888000100040, 0xffff888000100080
    >>> INIT_LIST_HEAD(k, h); list_add(k, a, h); list_replace(k, a, b)
    >>> [hex(p) for p in list_for_each(k, h)]
    ['0xffff888000100080']
    """
    mem = k.memory
    nxt = mem.read_word(old)
    k.store(new, nxt)
    k.store(_prev(k, nxt), new)
    prv = mem.read_word(_prev(k, old))
    k.store(_prev(k, new), prv)
    k.store(prv, new)


def list_replace_init(k: KernelLike, old: int, new: int) -> None:
    """``list_replace_init(old, new)``: :func:`list_replace`, then reinitialise *old*.

    >>> k = _demo_kernel(); h, a, b = 0xffff888000100000, 0xffff888000100040, 0xffff888000100080
    >>> INIT_LIST_HEAD(k, h); list_add(k, a, h); list_replace_init(k, a, b)
    >>> list_empty(k, a), list_is_first(k, b, h)
    (True, True)
    """
    list_replace(k, old, new)
    INIT_LIST_HEAD(k, old)


def list_move(k: KernelLike, list: int, head: int) -> None:
    """``list_move(list, head)``: delete *list* from its list, add it after *head*.

    >>> k = _demo_kernel(); h, a, b = 0xffff888000100000, 0xffff888000100040, 0xffff888000100080
    >>> INIT_LIST_HEAD(k, h); list_add_tail(k, a, h); list_add_tail(k, b, h)
    >>> list_move(k, b, h); [hex(p) for p in list_for_each(k, h)]
    ['0xffff888000100080', '0xffff888000100040']
    """
    __list_del_entry(k, list)
    list_add(k, list, head)


def list_move_tail(k: KernelLike, list: int, head: int) -> None:
    """``list_move_tail(list, head)``: delete *list* from its list, add it before *head*.

    >>> k = _demo_kernel(); h, a, b = 0xffff888000100000, 0xffff888000100040, 0xffff888000100080
    >>> INIT_LIST_HEAD(k, h); list_add_tail(k, a, h); list_add_tail(k, b, h)
    >>> list_move_tail(k, a, h); [hex(p) for p in list_for_each(k, h)]
    ['0xffff888000100080', '0xffff888000100040']
    """
    __list_del_entry(k, list)
    list_add_tail(k, list, head)


# -- predicates -------------------------------------------------------------------
def list_empty(k: KernelLike, head: int) -> bool:
    """``list_empty(head)``: true when ``head->next`` points back at *head*.

    >>> k = _demo_kernel(); h = 0xffff888000100000
    >>> INIT_LIST_HEAD(k, h); list_empty(k, h)
    True
    """
    return k.memory.read_word(head) == head


def list_is_head(k: KernelLike, list: int, head: int) -> bool:
    """``list_is_head(list, head)``: is *list* the head itself?  (*k* is unused: kept for
    a uniform calling convention.)

    >>> list_is_head(_demo_kernel(), 0xffff888000100000, 0xffff888000100000)
    True
    """
    return list == head


def list_is_first(k: KernelLike, list: int, head: int) -> bool:
    """``list_is_first(list, head)``: is *list* the first entry of *head*?

    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_LIST_HEAD(k, h); list_add(k, a, h); list_is_first(k, a, h)
    True
    """
    return k.memory.read_word(_prev(k, list)) == head


def list_is_last(k: KernelLike, list: int, head: int) -> bool:
    """``list_is_last(list, head)``: is *list* the last entry of *head*?

    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_LIST_HEAD(k, h); list_add(k, a, h); list_is_last(k, a, h)
    True
    """
    return k.memory.read_word(list) == head


def list_is_singular(k: KernelLike, head: int) -> bool:
    """``list_is_singular(head)``: does the list hold exactly one entry?

    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_LIST_HEAD(k, h); list_add(k, a, h); list_is_singular(k, h)
    True
    """
    mem = k.memory
    return not list_empty(k, head) and mem.read_word(head) == mem.read_word(_prev(k, head))


# -- iteration --------------------------------------------------------------------
def _step(k: KernelLike, pos: int, off: int, what: str) -> int:
    """Read ``pos->next`` (or ``->prev`` at *off*), refusing poison and NULL."""
    nxt = k.memory.read_word(pos + off)
    arch = k.arch
    field = "prev" if off else "next"
    if nxt in (arch.list_poison1, arch.list_poison2):
        name = "LIST_POISON1" if nxt == arch.list_poison1 else "LIST_POISON2"
        raise KmemsimValueError(
            f"{what}: {arch.fmt_addr(pos)}->{field} is {name} ({arch.fmt_addr(nxt)}): "
            "the entry was list_del()ed (delete while iterating needs the _safe variant)"
        )
    if nxt == 0:
        raise KmemsimValueError(
            f"{what}: {arch.fmt_addr(pos)}->{field} is NULL: list head never initialised?"
        )
    return nxt


def _walk(
    k: KernelLike, head: int, *, reverse: bool, safe: bool, limit: int, what: str
) -> Iterator[int]:
    check_int("limit", limit, minimum=0)
    off = k.arch.word_size if reverse else 0
    pos = _step(k, head, off, what)
    steps = 0
    while pos != head:
        steps += 1
        if steps > limit:
            raise KmemsimValueError(
                f"{what}: list at {k.arch.fmt_addr(head)} did not come back to its head "
                f"after {limit} entries (corrupt or cyclic list)"
            )
        if safe:
            # Read the successor before the caller may delete pos.
            nxt = _step(k, pos, off, what)
            yield pos
        else:
            yield pos
            nxt = _step(k, pos, off, what)
        pos = nxt


def list_for_each(k: KernelLike, head: int, limit: int = LIST_WALK_LIMIT) -> Iterator[int]:
    """``list_for_each(pos, head)``: yield each entry's ``list_head`` address, in order.

    Raises :class:`~kmemsim.errors.KmemsimValueError` naming the address when a
    ``next`` is poisoned or NULL, or after *limit* entries.

    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_LIST_HEAD(k, h); list_add(k, a, h)
    >>> for pos in list_for_each(k, h):
    ...     list_del(k, pos)
    Traceback (most recent call last):
    ...
    kmemsim.errors.KmemsimValueError: list_for_each: ffff888000100040->next is LIST_POISON1 \
(dead000000000100): the entry was list_del()ed (delete while iterating needs the _safe variant)
    """
    return _walk(k, head, reverse=False, safe=False, limit=limit, what="list_for_each")


def list_for_each_safe(k: KernelLike, head: int, limit: int = LIST_WALK_LIMIT) -> Iterator[int]:
    """``list_for_each_safe(pos, n, head)``: like :func:`list_for_each`, but the
    current entry may be deleted by the loop body.

    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_LIST_HEAD(k, h); list_add(k, a, h)
    >>> for pos in list_for_each_safe(k, h):
    ...     list_del(k, pos)
    >>> list_empty(k, h)
    True
    """
    return _walk(k, head, reverse=False, safe=True, limit=limit, what="list_for_each_safe")


def list_for_each_prev(k: KernelLike, head: int, limit: int = LIST_WALK_LIMIT) -> Iterator[int]:
    """``list_for_each_prev(pos, head)``: yield the ``list_head`` addresses backwards.

    >>> k = _demo_kernel(); h, a, b = 0xffff888000100000, 0xffff888000100040, 0xffff888000100080
    >>> INIT_LIST_HEAD(k, h); list_add_tail(k, a, h); list_add_tail(k, b, h)
    >>> [hex(p) for p in list_for_each_prev(k, h)]
    ['0xffff888000100080', '0xffff888000100040']
    """
    return _walk(k, head, reverse=True, safe=False, limit=limit, what="list_for_each_prev")


def list_for_each_entry(
    k: KernelLike, head: int, struct: Struct, member: str, limit: int = LIST_WALK_LIMIT
) -> Iterator[int]:
    """``list_for_each_entry(pos, head, member)``: yield each containing struct's address.

    >>> from kmemsim.klib.struct import Struct, ListHead, long
    >>> node = Struct("node", [("key", long), ("list", ListHead)])
    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_LIST_HEAD(k, h); list_add(k, a + 8, h)
    >>> [hex(p) for p in list_for_each_entry(k, h, node, "list")]
    ['0xffff888000100040']
    """
    off = struct.offsetof(k.arch, member)
    for pos in _walk(k, head, reverse=False, safe=False, limit=limit,
                     what="list_for_each_entry"):
        yield pos - off


def list_for_each_entry_safe(
    k: KernelLike, head: int, struct: Struct, member: str, limit: int = LIST_WALK_LIMIT
) -> Iterator[int]:
    """``list_for_each_entry_safe(pos, n, head, member)``: the current entry may be deleted.

    >>> from kmemsim.klib.struct import Struct, ListHead, long
    >>> node = Struct("node", [("key", long), ("list", ListHead)])
    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_LIST_HEAD(k, h); list_add(k, a + 8, h)
    >>> for n in list_for_each_entry_safe(k, h, node, "list"):
    ...     list_del(k, n + node.offsetof(k.arch, "list"))
    >>> list_empty(k, h)
    True
    """
    off = struct.offsetof(k.arch, member)
    for pos in _walk(k, head, reverse=False, safe=True, limit=limit,
                     what="list_for_each_entry_safe"):
        yield pos - off


def list_for_each_entry_reverse(
    k: KernelLike, head: int, struct: Struct, member: str, limit: int = LIST_WALK_LIMIT
) -> Iterator[int]:
    """``list_for_each_entry_reverse(pos, head, member)``: containers, last to first.

    >>> from kmemsim.klib.struct import Struct, ListHead, long
    >>> node = Struct("node", [("key", long), ("list", ListHead)])
    >>> k = _demo_kernel(); h, a, b = 0xffff888000100000, 0xffff888000100040, 0xffff888000100080
    >>> INIT_LIST_HEAD(k, h); list_add_tail(k, a + 8, h); list_add_tail(k, b + 8, h)
    >>> [hex(p) for p in list_for_each_entry_reverse(k, h, node, "list")]
    ['0xffff888000100080', '0xffff888000100040']
    """
    off = struct.offsetof(k.arch, member)
    for pos in _walk(k, head, reverse=True, safe=False, limit=limit,
                     what="list_for_each_entry_reverse"):
        yield pos - off


def list_count_nodes(k: KernelLike, head: int, limit: int = LIST_WALK_LIMIT) -> int:
    """``list_count_nodes(head)``: the number of entries.

    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_LIST_HEAD(k, h); list_add(k, a, h); list_count_nodes(k, h)
    1
    """
    return sum(1 for _ in list_for_each(k, head, limit))


def list_first_entry(k: KernelLike, head: int, struct: Struct, member: str) -> int:
    """``list_first_entry(head, type, member)``; like the kernel, the list must not be empty.

    >>> from kmemsim.klib.struct import Struct, ListHead, long
    >>> node = Struct("node", [("key", long), ("list", ListHead)])
    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_LIST_HEAD(k, h); list_add(k, a + 8, h)
    >>> hex(list_first_entry(k, h, node, "list"))
    '0xffff888000100040'
    """
    return container_of(k.memory.read_word(head), struct, member, k.arch)


def list_last_entry(k: KernelLike, head: int, struct: Struct, member: str) -> int:
    """``list_last_entry(head, type, member)``; the list must not be empty.

    >>> from kmemsim.klib.struct import Struct, ListHead, long
    >>> node = Struct("node", [("key", long), ("list", ListHead)])
    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_LIST_HEAD(k, h); list_add(k, a + 8, h)
    >>> hex(list_last_entry(k, h, node, "list"))
    '0xffff888000100040'
    """
    return container_of(k.memory.read_word(_prev(k, head)), struct, member, k.arch)


def list_first_entry_or_null(
    k: KernelLike, head: int, struct: Struct, member: str
) -> int | None:
    """``list_first_entry_or_null(head, type, member)``: ``None`` for an empty list.

    >>> from kmemsim.klib.struct import Struct, ListHead, long
    >>> node = Struct("node", [("key", long), ("list", ListHead)])
    >>> k = _demo_kernel(); h = 0xffff888000100000
    >>> INIT_LIST_HEAD(k, h); list_first_entry_or_null(k, h, node, "list") is None
    True
    """
    if list_empty(k, head):
        return None
    return list_first_entry(k, head, struct, member)


def list_next_entry(k: KernelLike, pos: int, struct: Struct, member: str) -> int:
    """``list_next_entry(pos, member)``: the container after container *pos*.

    As in the kernel, the "next entry" of the last one is the head's container_of.

    >>> from kmemsim.klib.struct import Struct, ListHead, long
    >>> node = Struct("node", [("key", long), ("list", ListHead)])
    >>> k = _demo_kernel(); h, a, b = 0xffff888000100000, 0xffff888000100040, 0xffff888000100080
    >>> INIT_LIST_HEAD(k, h); list_add_tail(k, a + 8, h); list_add_tail(k, b + 8, h)
    >>> hex(list_next_entry(k, a, node, "list"))
    '0xffff888000100080'
    """
    off = struct.offsetof(k.arch, member)
    return container_of(k.memory.read_word(pos + off), struct, member, k.arch)


def list_prev_entry(k: KernelLike, pos: int, struct: Struct, member: str) -> int:
    """``list_prev_entry(pos, member)``: the container before container *pos*.

    >>> from kmemsim.klib.struct import Struct, ListHead, long
    >>> node = Struct("node", [("key", long), ("list", ListHead)])
    >>> k = _demo_kernel(); h, a, b = 0xffff888000100000, 0xffff888000100040, 0xffff888000100080
    >>> INIT_LIST_HEAD(k, h); list_add_tail(k, a + 8, h); list_add_tail(k, b + 8, h)
    >>> hex(list_prev_entry(k, b, node, "list"))
    '0xffff888000100040'
    """
    off = struct.offsetof(k.arch, member)
    return container_of(k.memory.read_word(_prev(k, pos + off)), struct, member, k.arch)


# -- hlist: singly linked lists with a one-word head (hash tables) ---------------
# NULL pointers are stored through k.store too, so a recorder keyed by slot
# sees the old reference overwritten.
def INIT_HLIST_HEAD(k: KernelLike, head: int) -> None:
    """``INIT_HLIST_HEAD(head)``: ``head->first = NULL``.

    >>> k = _demo_kernel(); h = 0xffff888000100000
    >>> INIT_HLIST_HEAD(k, h); hlist_empty(k, h)
    True
    """
    k.store(head, 0)


def INIT_HLIST_NODE(k: KernelLike, n: int) -> None:
    """``INIT_HLIST_NODE(n)``: ``next = pprev = NULL`` (unhashed).

    >>> k = _demo_kernel(); n = 0xffff888000100040
    >>> INIT_HLIST_NODE(k, n); hlist_unhashed(k, n)
    True
    """
    k.store(n, 0)
    k.store(_prev(k, n), 0)


def hlist_unhashed(k: KernelLike, n: int) -> bool:
    """``hlist_unhashed(n)``: true when *n* is on no list (``pprev`` is NULL).

    >>> k = _demo_kernel(); h, n = 0xffff888000100000, 0xffff888000100040
    >>> INIT_HLIST_HEAD(k, h); hlist_add_head(k, n, h); hlist_unhashed(k, n)
    False
    """
    return k.memory.read_word(_prev(k, n)) == 0


def hlist_empty(k: KernelLike, head: int) -> bool:
    """``hlist_empty(head)``: true when ``head->first`` is NULL.

    >>> k = _demo_kernel(); h, n = 0xffff888000100000, 0xffff888000100040
    >>> INIT_HLIST_HEAD(k, h); hlist_add_head(k, n, h); hlist_empty(k, h)
    False
    """
    return k.memory.read_word(head) == 0


def hlist_add_head(k: KernelLike, n: int, head: int) -> None:
    """``hlist_add_head(n, h)``: insert *n* at the front of the hash chain *head*.

    >>> k = _demo_kernel(); h, a, b = 0xffff888000100000, 0xffff888000100040, 0xffff888000100080
    >>> INIT_HLIST_HEAD(k, h); hlist_add_head(k, a, h); hlist_add_head(k, b, h)
    >>> [hex(p) for p in hlist_for_each(k, h)]
    ['0xffff888000100080', '0xffff888000100040']
    """
    first = k.memory.read_word(head)
    k.store(n, first)
    if first:
        # &n->next is n itself: next is the first member.
        k.store(_prev(k, first), n)
    k.store(head, n)
    k.store(_prev(k, n), head)


def __hlist_del(k: KernelLike, n: int) -> None:
    """``__hlist_del(n)``: unlink *n*; ``*pprev`` (the previous next or ``first``) skips it.

    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_HLIST_HEAD(k, h); hlist_add_head(k, a, h); __hlist_del(k, a); hlist_empty(k, h)
    True
    """
    mem = k.memory
    nxt = mem.read_word(n)
    pprev = mem.read_word(_prev(k, n))
    k.store(pprev, nxt)
    if nxt:
        k.store(_prev(k, nxt), pprev)


def hlist_del(k: KernelLike, n: int) -> None:
    """``hlist_del(n)``: unlink *n* and poison ``next``/``pprev``.

    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_HLIST_HEAD(k, h); hlist_add_head(k, a, h); hlist_del(k, a)
    >>> hex(k.memory.read_word(a + 8))
    '0xdead000000000122'
    """
    __hlist_del(k, n)
    k.memory.write_word(n, k.arch.list_poison1)
    k.memory.write_word(_prev(k, n), k.arch.list_poison2)


def hlist_del_init(k: KernelLike, n: int) -> None:
    """``hlist_del_init(n)``: unlink *n* if hashed, and leave it unhashed.

    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_HLIST_HEAD(k, h); hlist_add_head(k, a, h); hlist_del_init(k, a)
    >>> hlist_unhashed(k, a), hlist_empty(k, h)
    (True, True)
    """
    if not hlist_unhashed(k, n):
        __hlist_del(k, n)
        INIT_HLIST_NODE(k, n)


def _hwalk(k: KernelLike, head: int, *, safe: bool, limit: int, what: str) -> Iterator[int]:
    check_int("limit", limit, minimum=0)
    arch = k.arch
    poison = (arch.list_poison1, arch.list_poison2)
    pos = k.memory.read_word(head)
    prev = head
    steps = 0
    while pos:
        if pos in poison:
            raise KmemsimValueError(
                f"{what}: {arch.fmt_addr(prev)}->next is poison ({arch.fmt_addr(pos)}): "
                "the entry was hlist_del()ed (delete while iterating needs the _safe variant)"
            )
        steps += 1
        if steps > limit:
            raise KmemsimValueError(
                f"{what}: hlist at {arch.fmt_addr(head)} did not end after {limit} entries "
                "(corrupt or cyclic list)"
            )
        if safe:
            nxt = k.memory.read_word(pos)
            yield pos
        else:
            yield pos
            nxt = k.memory.read_word(pos)
        prev, pos = pos, nxt


def hlist_for_each(k: KernelLike, head: int, limit: int = LIST_WALK_LIMIT) -> Iterator[int]:
    """``hlist_for_each(pos, head)``: yield each ``hlist_node`` address, first to last.

    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_HLIST_HEAD(k, h); hlist_add_head(k, a, h)
    >>> [hex(p) for p in hlist_for_each(k, h)]
    ['0xffff888000100040']
    """
    return _hwalk(k, head, safe=False, limit=limit, what="hlist_for_each")


def hlist_for_each_entry(
    k: KernelLike, head: int, struct: Struct, member: str, limit: int = LIST_WALK_LIMIT
) -> Iterator[int]:
    """``hlist_for_each_entry(pos, head, member)``: yield each containing struct's address.

    >>> from kmemsim.klib.struct import Struct, HlistNode, long
    >>> obj = Struct("obj", [("key", long), ("node", HlistNode)])
    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_HLIST_HEAD(k, h); hlist_add_head(k, a + 8, h)
    >>> [hex(p) for p in hlist_for_each_entry(k, h, obj, "node")]
    ['0xffff888000100040']
    """
    off = struct.offsetof(k.arch, member)
    for pos in _hwalk(k, head, safe=False, limit=limit, what="hlist_for_each_entry"):
        yield pos - off


def hlist_for_each_entry_safe(
    k: KernelLike, head: int, struct: Struct, member: str, limit: int = LIST_WALK_LIMIT
) -> Iterator[int]:
    """``hlist_for_each_entry_safe(pos, n, head, member)``: the current entry may be deleted.

    >>> from kmemsim.klib.struct import Struct, HlistNode, long
    >>> obj = Struct("obj", [("key", long), ("node", HlistNode)])
    >>> k = _demo_kernel(); h, a = 0xffff888000100000, 0xffff888000100040
    >>> INIT_HLIST_HEAD(k, h); hlist_add_head(k, a + 8, h)
    >>> for o in hlist_for_each_entry_safe(k, h, obj, "node"):
    ...     hlist_del(k, o + 8)
    >>> hlist_empty(k, h)
    True
    """
    off = struct.offsetof(k.arch, member)
    for pos in _hwalk(k, head, safe=True, limit=limit, what="hlist_for_each_entry_safe"):
        yield pos - off
