"""vmalloc: virtually contiguous areas with ``vmap_area``/``vm_struct`` and guard pages.

``__vmalloc_node_range`` does what the kernel does, in the kernel's order:

1. a ``struct vmap_area`` from the ``vmap_area`` cache, registered with a
   scan area from ``rb_node`` onwards (so ``va_start``/``va_end`` never count
   as references to the block);
2. a free virtual range with one guard page after it (unmapped: touching
   it oopses);
3. a ``struct vm_struct`` (kmalloc) whose ``addr`` field points at the block;
4. the ``pages`` array (kmalloc) and the physical pages, whose stale bytes
   show through unless the caller asked for zeroed memory (and at ``vfree``
   what was written through the mapping stays in those pages);
5. ``kmemleak_vmalloc``: the block with ``min_count`` 2 (the ``vm_struct``
   holds one reference) and ``excess_ref`` on the ``vm_struct``.

>>> from kmemsim import Kernel
>>> k = Kernel()
>>> p = k.vmalloc(64)
>>> obj = k.kmemleak.find(p)
>>> obj.size, obj.min_count, p % 4096
(4096, 2, 0)
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import check_int
from ..klib.list import list_add_tail, list_del
from ..layout import PAGE_SIZE
from .slab import KmemCache

if TYPE_CHECKING:
    from ..kernel import Kernel

VM_ALLOC = 0x00000002


def vm_struct_layout(ws: int) -> dict[str, int]:
    """Field offsets of ``struct vm_struct`` (next, addr, size, flags, pages, ...)."""
    names = ["next", "addr", "size", "flags", "pages", "nr_pages", "phys_addr", "caller"]
    return {n: i * ws for i, n in enumerate(names)} | {"sizeof": len(names) * ws}


def vmap_area_layout(ws: int) -> dict[str, int]:
    """``struct vmap_area``: va_start, va_end, rb_node (3 words), list (2), vm, flags."""
    return {"va_start": 0, "va_end": ws, "rb_node": 2 * ws, "list": 5 * ws,
            "vm": 7 * ws, "flags": 8 * ws, "sizeof": 9 * ws}


@dataclass(slots=True)
class VmArea:
    """The simulator's view of one live vmalloc area."""

    addr: int
    size: int
    """Usable size (page aligned, guard page excluded)."""
    vm_struct: int
    vmap_area: int
    pages_array: int
    pfns: list[int]
    space: str


class VmallocAllocator:
    """Virtual ranges in the vmalloc space and the module space (execmem)."""

    def __init__(self, k: Kernel, vmap_area_cache: KmemCache, list_head: int) -> None:
        self.k = k
        self.areas: dict[int, VmArea] = {}
        self._busy: dict[str, list[tuple[int, int]]] = {"vmalloc": [], "module": []}
        self.vmap_area_cache = vmap_area_cache
        self.vmap_area_list = list_head
        a = k.arch
        # module_load_offset: KASLR places modules 1..1024 pages into their area.
        self.module_load_offset = k.rng.randint(1, 1024) * PAGE_SIZE
        self.bounds = {"vmalloc": (a.vmalloc_start, a.vmalloc_end),
                       "module": (a.modules_vaddr + self.module_load_offset, a.modules_end)}
        self.used_pages = 0

    def _find_range(self, space: str, span: int) -> int:
        lo, hi = self.bounds[space]
        # i386 shares one space between modules and vmalloc: check both lists.
        busy = sorted(self._busy["vmalloc"] + self._busy["module"])
        cur = lo
        for start, end in busy:
            if end <= cur:
                continue
            if start - cur >= span:
                break
            cur = max(cur, end)
        return cur if cur + span <= hi else 0

    def vmalloc(self, size: int, *, zero: bool, space: str = "vmalloc",
                entry: tuple[str, ...] = ("vmalloc_noprof",)) -> int:
        """``__vmalloc_node_range``; returns the block address, or 0 (NULL)."""
        check_int("size", size, minimum=0)
        k = self.k
        ws = k.arch.word_size
        real_size = size
        size = k.arch.page_align(size)
        if size == 0:
            return 0
        nr_pages = size // PAGE_SIZE
        pa = k.page_allocator
        if nr_pages > pa.total_pages:
            self._vmalloc_error(f"size {real_size}, exceeds total pages")
            return 0
        if nr_pages > pa.free_pages:
            # The page loop below would fail on the way; fail before mapping anything
            # (what is printed and what is left allocated are the same).
            k.warn_alloc("vmalloc", 0)
            return 0
        frames = ("__vmalloc_node_range_noprof", "__vmalloc_node_noprof", *entry)
        with k.kernel_frames(*frames):
            span = size + PAGE_SIZE  # the guard page
            addr = self._find_range(space, span)
            if not addr:
                k.warn(f"vmap allocation for size {span} failed: use vmalloc=<size> to increase size")
                return 0
            with k.kernel_frames("alloc_vmap_area"):
                va = k.slab.slab_alloc(self.vmap_area_cache, self.vmap_area_cache.object_size,
                                       zero=True)
            if not va:
                return 0
            lay = vmap_area_layout(ws)
            k.kmemleak.kmemleak_scan_area(va + lay["rb_node"], -1)
            k.memory.write_word(va + lay["va_start"], addr)
            k.memory.write_word(va + lay["va_end"], addr + span)
            with k.kernel_frames("__get_vm_area_node"):
                vm = k.slab.kmalloc(vm_struct_layout(ws)["sizeof"], zero=True)
            if not vm:
                k.slab.slab_free(self.vmap_area_cache, va, "vfree")
                return 0
            with k.kernel_frames("__vmalloc_area_node"):
                pages_array = k.slab.kmalloc(nr_pages * ws, zero=True)
            if not pages_array:
                self._vmalloc_error(f"size {real_size}, failed to allocated page array "
                                    f"size {nr_pages * ws}")
                k.slab.kfree(vm)
                k.slab.slab_free(self.vmap_area_cache, va, "vfree")
                return 0
            pfns: list[int] = []
            for i in range(nr_pages):
                pfn = k.page_allocator.alloc(0)
                if not pfn:
                    for p in pfns:
                        k.page_allocator.free(p, 0)
                    k.slab.kfree(pages_array)
                    k.slab.kfree(vm)
                    k.slab.slab_free(self.vmap_area_cache, va, "vfree")
                    k.warn_alloc("vmalloc", 0)
                    return 0
                pfns.append(pfn)
                k.memory.write_word(pages_array + i * ws, k.page_allocator.struct_page(pfn))
            vl = vm_struct_layout(ws)
            k.memory.write_word(vm + vl["addr"], addr)
            k.memory.write_word(vm + vl["size"], span)
            k.memory.write_word(vm + vl["flags"], VM_ALLOC)
            k.store(vm + vl["pages"], pages_array)
            k.memory.write_word(vm + vl["nr_pages"], nr_pages)
            k.store(va + lay["vm"], vm)
            # va->list on the busy list, a static list_head in kernel data
            list_add_tail(k, va + lay["list"], self.vmap_area_list)
            # The pages' own bytes show through the new mapping.
            if zero or k.page_allocator.init_on_alloc:
                data = bytearray(size)
            else:
                data = bytearray(b"".join(k.memory.read(k.page_allocator.pfn_to_virt(p), PAGE_SIZE)
                                          for p in pfns))
            k.memory.map(addr, size, f"vmalloc {addr:#x}", "module" if space == "module"
                         else "vmalloc", data)
            bisect.insort(self._busy[space], (addr, addr + span))
            self.areas[addr] = VmArea(addr, size, vm, va, pages_array, pfns, space)
            self.used_pages += nr_pages
            k.kmemleak.kmemleak_vmalloc(vm, addr, size)
            k.truth.on_alloc(addr, size, "vmalloc" if space == "vmalloc" else "module")
        return addr

    def _vmalloc_error(self, what: str) -> None:
        """``warn_alloc(gfp, NULL, "vmalloc error: ...")`` (the kernel's own typo kept)."""
        self.k.warn(f"{self.k.current.comm}: vmalloc error: {what}, "
                    "mode:0xcc0(GFP_KERNEL), nodemask=(null)")

    def vfree(self, addr: int) -> None:
        """``vfree``: kmemleak first, then unmap, pages, ``vm_struct``, ``vmap_area``."""
        # Named "ptr" as in Kernel.vfree, whose argument this is.
        check_int("ptr", addr, minimum=0, maximum=self.k.arch.word_mask)
        k = self.k
        if addr == 0:
            return
        k.kmemleak.kmemleak_free(addr)
        area = self.areas.pop(addr, None)
        if area is None:
            # WARN(1, KERN_ERR "Trying to vfree() nonexistent vm area (%p)\n", addr):
            # %p prints the pointer hashed, zero-padded to a word, without 0x.
            k.warn("------------[ cut here ]------------")
            k.warn(f"Trying to vfree() nonexistent vm area "
                   f"({k.hash_pointer(addr):0{2 * k.arch.word_size}x})")
            k.warn(f"WARNING: CPU: 0 PID: {k.current.pid} at mm/vmalloc.c:3387 "
                   f"vfree+0x10b/0x1e0")
            return
        k.truth.on_free(addr)
        region = k.memory.unmap(addr)
        # The mapping and the pages are one memory in the kernel: what was written
        # through the mapping is what the freed pages hold (stale bytes for the next user).
        for i, pfn in enumerate(area.pfns):
            k.memory.write(k.page_allocator.pfn_to_virt(pfn),
                           region.data[i * PAGE_SIZE:(i + 1) * PAGE_SIZE])
        self._busy[area.space].remove((addr, addr + area.size + PAGE_SIZE))
        for pfn in area.pfns:
            k.page_allocator.free(pfn, 0)
        self.used_pages -= len(area.pfns)
        list_del(k, area.vmap_area + vmap_area_layout(k.arch.word_size)["list"])
        k.slab.kfree(area.pages_array)
        k.slab.kfree(area.vm_struct)
        k.slab.slab_free(self.vmap_area_cache, area.vmap_area, "vfree")

