"""``/proc``: ``meminfo``, ``slabinfo``, ``modules`` and the per-process files.

Every number comes from the allocators and from :mod:`kmemsim.oom`'s user
space, in the kernel's layouts (``fs/proc/meminfo.c`` of 6.16,
``mm/slab_common.c``, ``kernel/module/procfs.c``, ``fs/proc/array.c``):

* ``MemFree`` is the page allocator's free count; ``Slab``/``SUnreclaim``
  are the pages held by slabs, plus large kmallocs (which the kernel also
  counts as unreclaimable slab) and kmemleak's own metadata;
  ``KernelStack`` is ``THREAD_SIZE`` per live task; ``VmallocUsed`` the
  pages behind vmalloc areas (modules included); ``Percpu`` the first
  chunk's units; ``AnonPages``, ``Cached``, ``PageTables`` the processes
  and page cache of :mod:`kmemsim.oom`; ``MemAvailable`` follows
  ``si_mem_available``.
* ``/proc/slabinfo`` lists the caches newest first, as ``slab_caches`` is
  ordered, with SLUB's counting: free objects are only those on partial
  slabs, so objects free in the CPU slab count as active.

>>> from kmemsim import Kernel
>>> k = Kernel()
>>> print(k.read("/proc/meminfo").splitlines()[0])
MemTotal:         983040 kB
>>> before = meminfo(k)["SUnreclaim"]
>>> p = [k.kmalloc(4096) for _ in range(64)]
>>> meminfo(k)["SUnreclaim"] - before >= 64 * 4    # 4 KB each, and kmemleak's records
True
>>> k.read("/proc/slabinfo").splitlines()[0]
'slabinfo - version: 2.1'
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .layout import PAGE_SIZE
from .mm.percpu import PERCPU_UNIT_SIZE
from .oom import OOM_SCORE_ADJ_MAX, OOM_SCORE_ADJ_MIN, existing_userspace, slab_display_name

if TYPE_CHECKING:
    from .kernel import Kernel, Task
    from .mm.slab import KmemCache

_KB = PAGE_SIZE >> 10

#: The read-only files this module serves (besides ``/proc/PID/...``).
PROC_FILES = ("/proc/meminfo", "/proc/slabinfo", "/proc/modules", "/proc/uptime",
              "/proc/version")
_PID_FILE = re.compile(r"^/proc/(\d+)(?:/(comm|oom_score|oom_score_adj|status))?/?$")


@dataclass(frozen=True)
class MemCounters:
    """The kernel's page counters (``NR_*``), in pages unless the name says kB."""

    total: int
    free: int
    slab_unreclaimable: int
    kernel_stack_kb: int
    pagetables: int
    anon: int
    active_anon: int
    inactive_anon: int
    file: int
    active_file: int
    inactive_file: int
    buffers: int
    shmem: int
    mapped: int
    vmalloc: int
    percpu: int
    committed: int
    wmark_low: int
    totalreserve: int


def memory_counters(k: Kernel) -> MemCounters:
    """Gather the counters ``/proc/meminfo`` and the OOM report print, from their sources."""
    from .oom import userspace

    pa = k.page_allocator
    us = existing_userspace(k)
    slab_pages = sum(len(c.slabs) << c.order for c in k.slab.caches.values())
    large_pages = sum(1 << order for order, _ in k.slab.large.values())
    user_charged = us.charged_pages if us is not None else 0
    # The allocator's other charged pages are kmemleak's object pool overflow: in the
    # kernel those are kmemleak_object slab pages, unreclaimable.
    meta_pages = pa.charged_pages - user_charged
    anon = us.anon_pages if us is not None else 0
    shmem = us.shmem_pages if us is not None else 0
    cache = us.cache_pages if us is not None else 0
    buffers = us.buffers_pages if us is not None else 0
    file_lru = cache - shmem  # shmem lives on the anon LRU lists
    anon_lru = anon + shmem
    _, low, high = userspace(k).watermarks() if us is None else us.watermarks()
    committed = shmem + sum(2 * p.anon + p.file for p in us.processes.values()) if us else 0
    return MemCounters(
        total=pa.total_pages, free=pa.free_pages,
        slab_unreclaimable=slab_pages + large_pages + meta_pages,
        kernel_stack_kb=len(k.tasks) * k.arch.thread_size // 1024,
        pagetables=us.pagetable_pages if us is not None else 0,
        anon=anon, active_anon=anon_lru // 2, inactive_anon=anon_lru - anon_lru // 2,
        file=cache, active_file=file_lru // 2, inactive_file=file_lru - file_lru // 2,
        buffers=buffers, shmem=shmem, mapped=us.mapped_pages if us is not None else 0,
        vmalloc=k.vmalloc_allocator.used_pages,
        percpu=k.ncpus * PERCPU_UNIT_SIZE // PAGE_SIZE,
        committed=committed, wmark_low=low, totalreserve=high)


def mem_available(c: MemCounters) -> int:
    """``si_mem_available`` in pages: free less reserves, plus the cache reclaim could drop."""
    available = c.free - c.totalreserve
    pagecache = c.active_file + c.inactive_file
    pagecache -= min(pagecache // 2, c.wmark_low)
    return max(0, available + pagecache)  # no reclaimable slab: SReclaimable is 0


def _arch_features(arch: str) -> dict[str, bool]:
    """The Kconfig choices that decide which optional ``meminfo`` lines a distro kernel shows."""
    return {"highmem": arch == "i386", "memory_failure": arch != "i386",
            "thp": arch != "i386", "unaccepted": arch == "x86_64",
            "directmap": arch in ("x86_64", "i386")}


def meminfo(k: Kernel) -> dict[str, int]:
    """``/proc/meminfo`` as ``{field: value}`` (kB, except the ``HugePages_*`` counts).

    >>> from kmemsim import Kernel
    >>> m = meminfo(Kernel())
    >>> m["Slab"] == m["SReclaimable"] + m["SUnreclaim"], m["Percpu"]
    (True, 128)
    """
    c = memory_counters(k)
    feat = _arch_features(k.arch.name)
    cached = c.file - c.buffers  # NR_FILE_PAGES - swapcache - buffers
    m: dict[str, int] = {
        "MemTotal": c.total * _KB, "MemFree": c.free * _KB,
        "MemAvailable": mem_available(c) * _KB, "Buffers": c.buffers * _KB,
        "Cached": cached * _KB, "SwapCached": 0,
        "Active": (c.active_anon + c.active_file) * _KB,
        "Inactive": (c.inactive_anon + c.inactive_file) * _KB,
        "Active(anon)": c.active_anon * _KB, "Inactive(anon)": c.inactive_anon * _KB,
        "Active(file)": c.active_file * _KB, "Inactive(file)": c.inactive_file * _KB,
        "Unevictable": 0, "Mlocked": 0,
    }
    if feat["highmem"]:  # lowmem only: kmemsim does not model HIGHMEM pages
        m |= {"HighTotal": 0, "HighFree": 0, "LowTotal": c.total * _KB,
              "LowFree": c.free * _KB}
    m |= {
        "SwapTotal": 0, "SwapFree": 0, "Zswap": 0, "Zswapped": 0, "Dirty": 0, "Writeback": 0,
        "AnonPages": c.anon * _KB, "Mapped": c.mapped * _KB, "Shmem": c.shmem * _KB,
        "KReclaimable": 0, "Slab": c.slab_unreclaimable * _KB, "SReclaimable": 0,
        "SUnreclaim": c.slab_unreclaimable * _KB, "KernelStack": c.kernel_stack_kb,
        "PageTables": c.pagetables * _KB, "SecPageTables": 0, "NFS_Unstable": 0, "Bounce": 0,
        "WritebackTmp": 0, "CommitLimit": c.total * 50 // 100 * _KB,
        "Committed_AS": c.committed * _KB,
        "VmallocTotal": (k.arch.vmalloc_end - k.arch.vmalloc_start) >> 10,
        "VmallocUsed": c.vmalloc * _KB, "VmallocChunk": 0, "Percpu": c.percpu * _KB,
    }
    if feat["memory_failure"]:
        m["HardwareCorrupted"] = 0
    if feat["thp"]:
        m |= {"AnonHugePages": 0, "ShmemHugePages": 0, "ShmemPmdMapped": 0,
              "FileHugePages": 0, "FilePmdMapped": 0}
    m |= {"CmaTotal": 0, "CmaFree": 0}
    if feat["unaccepted"]:
        m["Unaccepted"] = 0
    m |= {"Balloon": 0, "HugePages_Total": 0, "HugePages_Free": 0, "HugePages_Rsvd": 0,
          "HugePages_Surp": 0, "Hugepagesize": 4096 if k.arch.name == "i386" else 2048,
          "Hugetlb": 0}
    if feat["directmap"]:
        ram_kb = min(k.ram_bytes, k.arch.lowmem_limit) >> 10
        small = 6144  # the first 2 MiB and the kernel image's split large pages
        if k.arch.name == "x86_64":
            gb = max(0, ram_kb - (1 << 20)) >> 20 << 20
            m |= {"DirectMap4k": small, "DirectMap2M": ram_kb - small - gb, "DirectMap1G": gb}
        else:
            m |= {"DirectMap4k": small, "DirectMap4M": ram_kb - small}
    return m


_NO_KB = {"HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp"}


def format_meminfo(values: dict[str, int]) -> str:
    """Lay out ``meminfo`` values as the kernel does: ``%-16s%8lu kB`` per line.

    >>> print(format_meminfo({"MemTotal": 8029292, "HugePages_Total": 0}), end="")
    MemTotal:        8029292 kB
    HugePages_Total:       0
    """
    out = []
    for name, value in values.items():
        label = f"{name}:"
        if name == "HardwareCorrupted":
            out.append(f"{label} {value:5d} kB\n")
        elif name in _NO_KB:
            out.append(f"{label:<16}{value:8d}\n")
        else:
            out.append(f"{label:<16}{value:8d} kB\n")
    return "".join(out)


def slab_caches_newest_first(k: Kernel) -> list[KmemCache]:
    """The caches in ``slab_caches`` order: ``create_cache`` adds at the head."""
    return list(reversed(k.slab.caches.values()))


def slabinfo_counts(cache: KmemCache) -> tuple[int, int]:
    """``(active_objs, num_objs)`` as SLUB's ``get_slabinfo`` counts them."""
    num_objs = cache.total_objects
    nr_free = sum(s.nfree for s in cache.partial)  # count_partial(n, count_free)
    return num_objs - nr_free, num_objs


def slabinfo(k: Kernel) -> str:
    """``/proc/slabinfo`` (version 2.1; SLUB has no tunables and no shared objects).

    >>> from kmemsim import Kernel
    >>> k = Kernel(); p = k.kmalloc(1000)
    >>> print(next(l for l in slabinfo(k).splitlines() if l.startswith("kmalloc-1k ")))
    kmalloc-1k            16     16   1024   16    4 : tunables    0    0    0 : slabdata      1      1      0
    """
    out = ["slabinfo - version: 2.1\n",
           "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
           " : tunables <limit> <batchcount> <sharedfactor>"
           " : slabdata <active_slabs> <num_slabs> <sharedavail>\n"]
    for c in slab_caches_newest_first(k):
        active, num = slabinfo_counts(c)
        nslabs = len(c.slabs)
        out.append(f"{slab_display_name(c.name):<17s} {active:6d} {num:6d} {c.size:6d} "
                   f"{c.objects_per_slab:4d} {1 << c.order:4d} : tunables {0:4d} {0:4d} {0:4d}"
                   f" : slabdata {nslabs:6d} {nslabs:6d} {0:6d}\n")
    return "".join(out)


def proc_modules(k: Kernel) -> str:
    """``/proc/modules``: name, size, use count, dependencies, state, address."""
    fmt = "016x" if k.arch.word_size == 8 else "08x"
    return "".join(f"{name} {size} 0 - Live 0x{k.modules[name].text:{fmt}}\n"
                   for name, size in k.lsmod())


def _task(k: Kernel, pid: int) -> Task | None:
    return next((t for t in k.tasks if t.pid == pid and t.alive), None)


def _pid_file(k: Kernel, task: Task, name: str | None, path: str) -> str:
    us = existing_userspace(k)
    proc = us.processes.get(task.pid) if us is not None else None
    if name is None:
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if name == "comm":
        return task.comm + "\n"
    if name == "oom_score_adj":
        return f"{proc.oom_score_adj if proc else 0}\n"
    if name == "oom_score":
        return f"{us.oom_score(proc) if us is not None and proc else 0}\n"
    lines = [f"Name:\t{task.comm}", "State:\tS (sleeping)", f"Tgid:\t{task.pid}",
             f"Pid:\t{task.pid}", f"PPid:\t{0 if task.pid <= 2 else 1 if proc else 2}"]
    uid = proc.uid if proc else 0
    lines += [f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}", f"Gid:\t{uid}\t{uid}\t{uid}\t{uid}"]
    if proc is not None:
        kb = _KB
        lines += [f"VmSize:\t{proc.total_vm * kb:8d} kB", f"VmRSS:\t{proc.rss * kb:8d} kB",
                  f"RssAnon:\t{proc.anon * kb:8d} kB", f"RssFile:\t{proc.file * kb:8d} kB",
                  f"RssShmem:\t{proc.shmem * kb:8d} kB",
                  f"VmPTE:\t{proc.pgtables_bytes >> 10:8d} kB", f"VmSwap:\t{0:8d} kB"]
    lines.append("Threads:\t1")
    return "\n".join(lines) + "\n"


def proc_read(k: Kernel, path: str) -> str:
    """Read a ``/proc`` file; ``FileNotFoundError`` or ``IsADirectoryError`` otherwise."""
    if path == "/proc/meminfo":
        return format_meminfo(meminfo(k))
    if path == "/proc/slabinfo":
        return slabinfo(k)
    if path == "/proc/modules":
        return proc_modules(k)
    if path == "/proc/uptime":
        up = (k.jiffies - k.INITIAL_JIFFIES) * 100 // k.hz
        idle = up * k.ncpus  # an idle machine: every CPU idle all the time
        return f"{up // 100}.{up % 100:02d} {idle // 100}.{idle % 100:02d}\n"
    if path == "/proc/version":
        return f"Linux version 6.16.0-kmemsim ({k.arch.name}) #1 SMP PREEMPT_DYNAMIC\n"
    if path.rstrip("/") == "/proc":
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    m = _PID_FILE.match(path)
    if m is not None:
        task = _task(k, int(m.group(1)))
        if task is not None:
            return _pid_file(k, task, m.group(2), path)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)


def proc_write(k: Kernel, path: str, text: str) -> None:
    """Write a ``/proc`` file: only ``/proc/PID/oom_score_adj`` accepts writes.

    Read-only files fail as procfs fails a write without a handler (``EIO``);
    a bad ``oom_score_adj`` is ``EINVAL``; unknown paths are ``ENOENT``.

    >>> from kmemsim import Kernel
    >>> from kmemsim.oom import userspace
    >>> k = Kernel(); userspace(k).start()
    >>> proc_write(k, "/proc/812/oom_score_adj", "-500\\n"); k.read("/proc/812/oom_score_adj")
    '-500\\n'
    """
    m = _PID_FILE.match(path)
    task = _task(k, int(m.group(1))) if m is not None else None
    if m is not None and task is not None and m.group(2) == "oom_score_adj":
        us = existing_userspace(k)
        proc = us.processes.get(task.pid) if us is not None else None
        try:
            value = int(text.strip(), 0)
        except ValueError:
            value = OOM_SCORE_ADJ_MAX + 1
        if proc is None or not OOM_SCORE_ADJ_MIN <= value <= OOM_SCORE_ADJ_MAX:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
        proc.oom_score_adj = value
        return
    if path in PROC_FILES or (m is not None and task is not None and m.group(2)):
        raise OSError(errno.EIO, os.strerror(errno.EIO), path)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
