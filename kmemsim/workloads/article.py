"""The article's leak module (spec section 9.1) and a fixed version of it.

``init`` leaks eight kmalloc blocks (32, 32, 1024, 1024, 2048, 2048, 4096,
4096 bytes) and five ``vmalloc(64)`` blocks: the pointers live only in
locals and are dropped.  It also puts ten ``kzalloc``'d nodes of

.. code-block:: c

    struct memleak_node {
            long header[25];
            struct list_head list;
            char name[25];
    };

on a static ``LIST_HEAD`` in module data.  ``exit`` only calls ``list_del``
on each node, so after ``rmmod`` the ten nodes (``size 256`` on 64-bit,
``size 192`` on i386) are leaked too.  :class:`FixedArticleModule` frees
everything it allocates.

>>> from kmemsim import Kernel
>>> k = Kernel()
>>> k.modprobe("article_leak")
>>> "article_leak: allocated" in k.dmesg()
True
"""

from __future__ import annotations

from typing import ClassVar

from ..klib import Array, ListHead, Struct, char, list_add_tail, list_del, list_for_each_entry_safe
from ..klib import long as c_long
from ..module import Module

#: ``struct memleak_node``: 248 bytes on 64-bit, 136 on i386.
MEMLEAK_NODE = Struct("memleak_node", [
    ("header", Array(c_long, 25)),
    ("list", ListHead),
    ("name", Array(char, 25)),
])

KMALLOC_SIZES = (32, 32, 1024, 1024, 2048, 2048, 4096, 4096)
VMALLOC_COUNT = 5
NODE_COUNT = 10


class ArticleLeakModule(Module):
    """The leaking module of the article: 8 kmalloc + 5 vmalloc leaks, 10 nodes leaked at exit."""

    name = "article_leak"
    description = "kmalloc, vmalloc and list-node leaks from the kmemleak article"
    statics: ClassVar[dict[str, int]] = {"memleak_list": 16}

    def init(self) -> int:
        k = self.k
        head = self.static("memleak_list")
        k.store(head, head)  # static LIST_HEAD(memleak_list)
        k.store(head + k.arch.word_size, head)
        for size in KMALLOC_SIZES:
            k.kmalloc(size)  # the pointer is dropped: a leak
        for _ in range(VMALLOC_COUNT):
            k.vmalloc(64)  # a leak, held only by its vm_struct
        off = MEMLEAK_NODE.offsetof(k.arch, "list")
        name_off = MEMLEAK_NODE.offsetof(k.arch, "name")
        for i in range(NODE_COUNT):
            node = k.kzalloc(MEMLEAK_NODE.sizeof(k.arch))
            k.memory.write(node + name_off, f"memleak_node{i}".encode())
            list_add_tail(k, node + off, head)
        self.pr_info(f"{self.name}: allocated {len(KMALLOC_SIZES)} kmalloc blocks, "
                     f"{VMALLOC_COUNT} vmalloc blocks and {NODE_COUNT} list nodes")
        return 0

    def exit(self) -> None:
        k = self.k
        head = self.static("memleak_list")
        off = MEMLEAK_NODE.offsetof(k.arch, "list")
        for node in list_for_each_entry_safe(k, head, MEMLEAK_NODE, "list"):
            list_del(k, node + off)  # unlinked, never freed: the nodes leak at rmmod
        self.pr_info(f"{self.name}: exit")


class FixedArticleModule(Module):
    """The article's module with its leaks fixed: ``exit`` frees what ``init`` allocated."""

    name = "article_fixed"
    description = "the article's module, fixed: every block is freed"
    statics: ClassVar[dict[str, int]] = {"memleak_list": 16, "blocks": 8 * 8, "areas": 5 * 8}

    def init(self) -> int:
        k = self.k
        ws = k.arch.word_size
        head = self.static("memleak_list")
        k.store(head, head)
        k.store(head + ws, head)
        for i, size in enumerate(KMALLOC_SIZES):
            k.store(self.static("blocks") + i * ws, k.kmalloc(size))
        for i in range(VMALLOC_COUNT):
            k.store(self.static("areas") + i * ws, k.vmalloc(64))
        off = MEMLEAK_NODE.offsetof(k.arch, "list")
        for i in range(NODE_COUNT):
            node = k.kzalloc(MEMLEAK_NODE.sizeof(k.arch))
            k.memory.write(node + MEMLEAK_NODE.offsetof(k.arch, "name"),
                           f"memleak_node{i}".encode())
            list_add_tail(k, node + off, head)
        self.pr_info(f"{self.name}: allocated and kept every block")
        return 0

    def exit(self) -> None:
        k = self.k
        ws = k.arch.word_size
        head = self.static("memleak_list")
        off = MEMLEAK_NODE.offsetof(k.arch, "list")
        for node in list_for_each_entry_safe(k, head, MEMLEAK_NODE, "list"):
            list_del(k, node + off)
            k.kfree(node)
        for i in range(len(KMALLOC_SIZES)):
            k.kfree(k.memory.read_word(self.static("blocks") + i * ws))
        for i in range(VMALLOC_COUNT):
            k.vfree(k.memory.read_word(self.static("areas") + i * ws))
        self.pr_info(f"{self.name}: freed everything")
