"""The allocators, as the kernel's ``mm/`` minus kmemleak: slab, vmalloc, pages, per-CPU, memblock."""
