"""User space and the OOM killer: the first step of the article.

Before kmemleak, the article's reader only sees symptoms: free memory keeps
falling, ``Slab`` (``SUnreclaim``) only grows, the OOM killer kills
processes and the memory does not come back.  This module models just
enough of user space to show that:

* **processes** with a resident size (anonymous, file-backed and shmem
  pages), page tables and an ``oom_score_adj``.  Their anonymous pages and
  page tables are taken from the page allocator with
  :meth:`PageAllocator.charge`, so they really are missing from ``MemFree``;
* the **page cache** (``Buffers``/``Cached``), reclaimable except for the
  pages mapped by live processes and shmem (there is no swap);
* **memory pressure**: before a kernel thread wakes up (the only code that
  runs while simulated time passes), the page allocator's view runs:
  below the low watermark kswapd reclaims page cache up to the high
  watermark; below the min watermark the next allocation fails and the
  **OOM killer** runs, choosing by ``oom_badness`` and printing the
  kernel's report to ``dmesg``;
* killing a process returns *its* memory, never what the kernel leaked:
  after every kill ``MemFree`` jumps up and starts falling again.

User processes keep touching their memory, so the allocation that finds
no memory left is, as on a real machine, usually a page fault of a user
process (the one with the most anonymous memory), not the leaking kernel
code: the OOM report does not name the culprit.  Its ``Unreclaimable slab
info`` table and ``/proc/meminfo`` do point at the kernel; kmemleak finds
the line.

A plain :class:`~kmemsim.Kernel` has no processes and no page cache until
:meth:`UserSpace.start` (``kmemsim shell`` starts them at boot).

>>> from kmemsim import Kernel
>>> from kmemsim.oom import userspace
>>> k = Kernel(cmdline="mem=128M")
>>> us = userspace(k); us.start()
>>> [p.comm for p in us.processes.values()][:3]
['systemd', 'systemd-journal', 'systemd-udevd']
>>> victim = us.out_of_memory()                 # the biggest badness: mysqld
>>> victim.comm, 812 in us.processes
('mysqld', False)
>>> "Out of memory: Killed process 812 (mysqld)" in k.dmesg()
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import KmemsimTypeError, KmemsimValueError, check_int
from .layout import PAGE_SIZE

if TYPE_CHECKING:
    from .kernel import Kernel, Task

#: ``OOM_SCORE_ADJ_MIN``/``MAX``: -1000 means "never kill this process".
OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000
#: ``GFP_KERNEL`` and ``GFP_HIGHUSER_MOVABLE | __GFP_COMP`` as ``%pGg`` prints them.
GFP_KERNEL = (0xCC0, "GFP_KERNEL")
GFP_USER_FAULT = (0x140CCA, "GFP_HIGHUSER_MOVABLE|__GFP_COMP")
#: ``vm.min_free_kbytes`` bounds (``init_per_zone_wmark_min``).
MIN_FREE_KBYTES_MIN, MIN_FREE_KBYTES_MAX = 128, 262144
#: ``vm.watermark_scale_factor`` (in 1/10000 of managed memory).
WATERMARK_SCALE_FACTOR = 10
#: ``vm.overcommit_ratio`` (percent of RAM in ``CommitLimit``).
OVERCOMMIT_RATIO = 50
SIGTERM, SIGKILL = 15, 9

#: The processes of a small server, as ``(pid, comm, uid, anon, file, oom_score_adj, memcg)``
#: with anonymous and mapped file memory in thousandths of ``MemTotal``.  pid 1 and the
#: shell (pid 1024) are the kernel's own tasks.  The shell is exempt from the OOM killer
#: (``oom_score_adj`` -1000), so the learner's session always goes on.
STANDARD_PROCESSES: tuple[tuple[int, str, int, int, int, int, str], ...] = (
    (1, "systemd", 0, 12, 10, 0, "/init.scope"),
    (312, "systemd-journal", 0, 15, 8, -250, "/system.slice/systemd-journald.service"),
    (340, "systemd-udevd", 0, 6, 4, -1000, "/system.slice/systemd-udevd.service"),
    (598, "cron", 0, 3, 2, 0, "/system.slice/cron.service"),
    (640, "sshd", 0, 5, 4, -1000, "/system.slice/ssh.service"),
    (812, "mysqld", 999, 300, 20, 0, "/system.slice/mysql.service"),
    (880, "nginx", 0, 10, 6, 0, "/system.slice/nginx.service"),
    (881, "nginx", 33, 15, 6, 0, "/system.slice/nginx.service"),
    (1010, "python3", 1000, 100, 12, 0, "/system.slice/webapp.service"),
    (1024, "bash", 0, 3, 2, OOM_SCORE_ADJ_MIN, "/user.slice/user-0.slice/session-1.scope"),
)
#: Page cache at boot, in thousandths of ``MemTotal`` (it includes the mapped file pages
#: above and shmem), and the ``Buffers`` and shmem (tmpfs) parts.
PAGE_CACHE_PERMILLE, BUFFERS_PERMILLE, SHMEM_PERMILLE = 200, 10, 8

#: The allocation path above the failing allocation, printed by name in the OOM report's
#: call trace: the simulator does not run these functions, so they have no address in
#: the kernel's symbol table.  ``(name, offset, size)``.
_OOM_PATH = (("dump_header", 0x43, 0x1B0), ("oom_kill_process", 0x10D, 0x1C0),
             ("out_of_memory", 0x265, 0x570),
             ("__alloc_pages_slowpath.constprop.0", 0xB39, 0xE30),
             ("__alloc_frozen_pages_noprof", 0x30E, 0x330), ("alloc_pages_mpol", 0x81, 0x190))
_USER_FAULT_PATH = {
    "x86_64": (("folio_alloc_mpol_noprof", 0x14, 0x40), ("vma_alloc_folio_noprof", 0x6A, 0xC0),
               ("do_anonymous_page", 0x2C4, 0x7B0), ("__handle_mm_fault", 0x8DE, 0xE20),
               ("handle_mm_fault", 0x173, 0x300), ("do_user_addr_fault", 0x1C6, 0x6A0),
               ("exc_page_fault", 0x7E, 0x180), ("asm_exc_page_fault", 0x26, 0x30)),
    "arm64": (("folio_alloc_mpol_noprof", 0x14, 0x40), ("vma_alloc_folio_noprof", 0x6A, 0xC0),
              ("do_anonymous_page", 0x2C4, 0x7B0), ("__handle_mm_fault", 0x8DE, 0xE20),
              ("handle_mm_fault", 0x173, 0x300), ("do_page_fault", 0x1A4, 0x600),
              ("do_translation_fault", 0x4C, 0x70), ("do_mem_abort", 0x48, 0xB0),
              ("el0_da", 0x44, 0xB8), ("el0t_64_sync_handler", 0xE4, 0x120),
              ("el0t_64_sync", 0x194, 0x198)),
    "i386": (("folio_alloc_mpol_noprof", 0x14, 0x40), ("vma_alloc_folio_noprof", 0x5E, 0xB0),
             ("do_anonymous_page", 0x2A1, 0x760), ("__handle_mm_fault", 0x84C, 0xD90),
             ("handle_mm_fault", 0x16A, 0x2F0), ("do_user_addr_fault", 0x1B3, 0x650),
             ("exc_page_fault", 0x6D, 0x170), ("handle_exception", 0x133, 0x133)),
}
_SLAB_PATH = (("allocate_slab", 0x28C, 0x3B0), ("___slab_alloc", 0x6A1, 0xB80))


@dataclass(eq=False)
class Process:
    """A user process: its task and its memory, in pages (``get_mm_counter``).

    ``rss`` is ``MM_ANONPAGES + MM_FILEPAGES + MM_SHMEMPAGES``; the anonymous
    pages and the page tables are charged to the page allocator, the file
    and shmem pages belong to the page cache.
    """

    task: Task
    uid: int
    anon: int
    file: int
    shmem: int
    pgtables_bytes: int
    total_vm: int
    oom_score_adj: int
    memcg: str = "/"

    @property
    def pid(self) -> int:
        return self.task.pid

    @property
    def comm(self) -> str:
        return self.task.comm

    @property
    def rss(self) -> int:
        return self.anon + self.file + self.shmem

    def __repr__(self) -> str:
        return (f"<Process {self.pid} {self.comm} rss={self.rss * PAGE_SIZE >> 10}kB "
                f"oom_score_adj={self.oom_score_adj}>")


def userspace(k: Kernel) -> UserSpace:
    """The user space of *k* (created empty on first use; :meth:`UserSpace.start` fills it)."""
    us = k._userspace
    if us is None:
        us = UserSpace(k)
        k._userspace = us
    if not isinstance(us, UserSpace):
        raise KmemsimTypeError("kernel._userspace is not a UserSpace")
    return us


def existing_userspace(k: Kernel) -> UserSpace | None:
    """The user space of *k* if anything created it, else ``None`` (nothing is created)."""
    us = k._userspace
    return us if isinstance(us, UserSpace) else None


def before_kthread_runs(k: Kernel, task: Task) -> bool:
    """The page allocator's turn before *task* allocates: reclaim, then OOM; ``False`` after a panic."""
    return userspace(k).balance(task)


class UserSpace:
    """Processes, the page cache, watermarks and the OOM killer of one kernel."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.processes: dict[int, Process] = {}
        self.cache_pages = 0
        """Page cache (``NR_FILE_PAGES``), including ``buffers_pages`` and ``shmem_pages``."""
        self.buffers_pages = 0
        self.shmem_pages = 0
        self.charged_pages = 0
        """Pages this module took with :meth:`PageAllocator.charge` (the rest of the
        allocator's charged pages are kmemleak's metadata)."""
        self.panicked = False
        self.oom_kills = 0
        self.started = False

    # -- set up ------------------------------------------------------------------
    def _charge(self, pages: int) -> None:
        if not self.k.page_allocator.charge(pages):
            raise KmemsimValueError(f"out of memory: cannot take {pages} pages for user space")
        self.charged_pages += pages

    def _uncharge(self, pages: int) -> None:
        self.k.page_allocator.uncharge(pages)
        self.charged_pages -= pages

    def start(self) -> None:
        """Boot user space: :data:`STANDARD_PROCESSES` and the page cache, sized to RAM.

        Idempotent.  The shell calls it at boot.
        """
        if self.started:
            return
        self.started = True
        total = self.k.page_allocator.total_pages
        self.buffers_pages = total * BUFFERS_PERMILLE // 1000
        self.shmem_pages = total * SHMEM_PERMILLE // 1000
        self._add_cache(total * PAGE_CACHE_PERMILLE // 1000)
        for pid, comm, uid, anon, file, adj, memcg in STANDARD_PROCESSES:
            self.spawn_process(comm, anon_kb=total * anon // 1000 * PAGE_SIZE >> 10,
                               file_kb=total * file // 1000 * PAGE_SIZE >> 10, uid=uid,
                               oom_score_adj=adj, pid=pid, memcg=memcg)

    def _add_cache(self, pages: int) -> None:
        self._charge(pages)
        self.cache_pages += pages

    def spawn_process(self, comm: str, *, anon_kb: int, file_kb: int = 0, uid: int = 0,
                      oom_score_adj: int = 0, pid: int | None = None, memcg: str = "/"
                      ) -> Process:
        """Start a process with *anon_kb* of anonymous and *file_kb* of mapped file memory.

        An existing task with that *pid* (``systemd``, the shell) gets the
        memory instead of a new task.  Raises :class:`KmemsimValueError` when
        there is not enough free memory.

        >>> from kmemsim import Kernel
        >>> us = userspace(Kernel())
        >>> p = us.spawn_process("stress", anon_kb=4096)
        >>> p.anon, p.pgtables_bytes // 4096, us.k.page_allocator.charged_pages >= 1030
        (1024, 6, True)
        """
        check_int("anon_kb", anon_kb, minimum=0)
        check_int("file_kb", file_kb, minimum=0)
        check_int("oom_score_adj", oom_score_adj, minimum=OOM_SCORE_ADJ_MIN,
                  maximum=OOM_SCORE_ADJ_MAX)
        if pid in self.processes:
            raise KmemsimValueError(f"pid {pid} already has a process")
        anon = anon_kb * 1024 // PAGE_SIZE
        file = file_kb * 1024 // PAGE_SIZE
        # One PTE page per 512 mapped pages, plus the upper levels of a small tree.
        pgtables = 4 + (anon + file + 511) // 512
        self._charge(anon + pgtables)
        unmapped = max(0, self.cache_pages - self.mapped_pages - self.shmem_pages)
        if file > unmapped:  # mapping files reads them into the page cache
            self._add_cache(file - unmapped)
        task = next((t for t in self.k.tasks if t.pid == pid), None)
        if task is None:
            task = self.k.spawn(comm, pid=pid)
        proc = Process(task, uid, anon, file, 0, pgtables * PAGE_SIZE,
                       4 * (anon + file) + 4096, oom_score_adj, memcg)
        self.processes[task.pid] = proc
        return proc

    # -- counters ----------------------------------------------------------------
    @property
    def anon_pages(self) -> int:
        return sum(p.anon for p in self.processes.values())

    @property
    def mapped_pages(self) -> int:
        return sum(p.file for p in self.processes.values())

    @property
    def pagetable_pages(self) -> int:
        return sum(p.pgtables_bytes // PAGE_SIZE for p in self.processes.values())

    def watermarks(self) -> tuple[int, int, int]:
        """``(min, low, high)`` watermarks in pages, as ``__setup_per_zone_wmarks`` sets them.

        >>> from kmemsim import Kernel
        >>> userspace(Kernel(cmdline="mem=128M")).watermarks()
        (256, 320, 384)
        """
        total = self.k.page_allocator.total_pages
        min_free_kbytes = math.isqrt(total * (PAGE_SIZE >> 10) * 16)
        min_free_kbytes = max(MIN_FREE_KBYTES_MIN, min(min_free_kbytes, MIN_FREE_KBYTES_MAX))
        wmin = min_free_kbytes // (PAGE_SIZE >> 10)
        step = max(wmin // 4, total * WATERMARK_SCALE_FACTOR // 10000)
        return wmin, wmin + step, wmin + 2 * step

    def reclaimable_cache(self) -> int:
        """Page cache that reclaim can drop: not mapped by a live process, not shmem."""
        return max(0, self.cache_pages - self.mapped_pages - self.shmem_pages
                   - self.buffers_pages // 2)

    def reclaim(self, pages: int) -> int:
        """Drop up to *pages* clean page-cache pages (kswapd); return how many."""
        n = max(0, min(pages, self.reclaimable_cache()))
        if n:
            buffers = min(self.buffers_pages // 2, n // 10)
            self.buffers_pages -= buffers
            self.cache_pages -= n
            self._uncharge(n)
        return n

    # -- pressure and the OOM killer --------------------------------------------
    def balance(self, current: Task) -> bool:
        """Memory pressure before *current* allocates: reclaim, then OOM kills.

        Returns ``False`` once the machine has panicked (no killable process).
        """
        if self.panicked:
            return False
        wmin, low, high = self.watermarks()
        pa = self.k.page_allocator
        if pa.free_pages < low:
            self.reclaim(high - pa.free_pages)
        while pa.free_pages < wmin:
            if self.out_of_memory(current) is None:
                return False
        return True

    def totalpages(self) -> int:
        """``oc->totalpages`` of a global OOM: ``totalram_pages() + total_swap_pages``."""
        return self.k.page_allocator.total_pages

    def oom_badness(self, proc: Process, totalpages: int | None = None) -> int | None:
        """``oom_badness``: rss + swap + page tables, plus ``oom_score_adj * totalpages/1000``.

        ``None`` (the kernel's ``LONG_MIN``) for init and for ``oom_score_adj`` -1000.

        >>> from kmemsim import Kernel
        >>> us = userspace(Kernel(cmdline="mem=128M")); us.start()
        >>> us.oom_badness(us.processes[812]) > us.oom_badness(us.processes[1010]) > 0
        True
        >>> us.oom_badness(us.processes[1]), us.oom_badness(us.processes[640])
        (None, None)
        """
        if proc.pid == 1 or proc.oom_score_adj == OOM_SCORE_ADJ_MIN:
            return None
        total = self.totalpages() if totalpages is None else totalpages
        points = proc.rss + proc.pgtables_bytes // PAGE_SIZE  # no swap: swapents are 0
        return points + proc.oom_score_adj * (total // 1000)

    def oom_score(self, proc: Process) -> int:
        """``/proc/PID/oom_score``: the badness scaled to 0..2000 (times 2/3, as since 5.9)."""
        total = self.totalpages()
        badness = self.oom_badness(proc, total)
        if badness is None:
            return 0
        return (1000 + badness * 1000 // total) * 2 // 3

    def select_bad_process(self) -> Process | None:
        """The process with the highest badness; on a tie the later one in pid order."""
        chosen: Process | None = None
        chosen_points = 0
        for proc in sorted(self.processes.values(), key=lambda p: p.pid):
            points = self.oom_badness(proc)
            if points is None:
                continue
            if chosen is None or points >= chosen_points:
                chosen, chosen_points = proc, points
        return chosen

    def out_of_memory(self, current: Task | None = None, order: int = 0) -> Process | None:
        """``out_of_memory``: print the report, kill the chosen process, return it.

        The allocation that failed is a page fault of the user process with
        the most anonymous memory if there is one (user processes keep
        touching memory), else *current*'s ``kmalloc``.  With nothing to
        kill the kernel prints its last lines and panics (``None``).
        """
        k = self.k
        faulting = max((p for p in self.processes.values() if p.anon), default=None,
                       key=lambda p: (p.anon, p.pid))
        if faulting is not None:
            invoker, gfp, adj = faulting.task, GFP_USER_FAULT, faulting.oom_score_adj
            uid = faulting.uid
        else:
            invoker = current if current is not None else k.current
            gfp, adj, uid = GFP_KERNEL, 0, 0
        victim = self.select_bad_process()
        self._dump_header(invoker, uid, gfp, adj, order, user_fault=faulting is not None)
        if victim is None:
            k.printk("Out of memory and no killable processes...")
            k.printk("Kernel panic - not syncing: System is deadlocked on memory")
            self.panicked = True
            return None
        k.printk("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,"
                 f"global_oom,task_memcg={victim.memcg},task={victim.comm},pid={victim.pid},"
                 f"uid={victim.uid}")
        kb = PAGE_SIZE >> 10
        k.printk(f"Out of memory: Killed process {victim.pid} ({victim.comm}) "
                 f"total-vm:{victim.total_vm * kb}kB, anon-rss:{victim.anon * kb}kB, "
                 f"file-rss:{victim.file * kb}kB, shmem-rss:{victim.shmem * kb}kB, "
                 f"UID:{victim.uid} pgtables:{victim.pgtables_bytes >> 10}kB "
                 f"oom_score_adj:{victim.oom_score_adj}")
        self._exit(victim)
        k.printk(f"oom_reaper: reaped process {victim.pid} ({victim.comm}), now anon-rss:0kB, "
                 "file-rss:0kB, shmem-rss:0kB")
        self.oom_kills += 1
        return victim

    def _dump_header(self, invoker: Task, uid: int, gfp: tuple[int, str], adj: int,
                     order: int, *, user_fault: bool) -> None:
        k = self.k
        k.printk(f"{invoker.comm} invoked oom-killer: gfp_mask={gfp[0]:#x}({gfp[1]}), "
                 f"order={order}, oom_score_adj={adj}")
        k.printk(f"CPU: 0 UID: {uid} PID: {invoker.pid} Comm: {invoker.comm} "
                 "Not tainted 6.16.0-kmemsim #1")
        k.printk("Hardware name: kmemsim simulated machine")
        k.printk("Call Trace:")
        k.printk(" <TASK>")
        k.printk(f" {k.symbols.symbolize(k.symbols.return_address('dump_stack_lvl'))}")
        frames = list(_OOM_PATH)
        if user_fault:
            frames += _USER_FAULT_PATH[k.arch.name]
        else:
            frames += _SLAB_PATH
        for name, off, size in frames:
            k.printk(f" {name}+{off:#x}/{size:#x}")
        if not user_fault:
            with k.task_context(invoker), k.kernel_frames("__kmalloc_cache_noprof"):
                for addr in k.save_stack_trace():
                    k.printk(f" {k.symbolize(addr)}")
        k.printk(" </TASK>")
        self._show_mem()
        if self._should_dump_unreclaim_slab():
            self._dump_unreclaimable_slab()
        k.printk("Tasks state (memory values in pages):")
        k.printk("[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem "
                 "pgtables_bytes swapents oom_score_adj name")
        for p in sorted(self.processes.values(), key=lambda p: p.pid):
            if p.pid == 1:
                continue  # oom_unkillable_task: init is not listed
            k.printk(f"[{p.pid:7d}] {p.uid:5d} {p.pid:5d} {p.total_vm:8d} {p.rss:8d} "
                     f"{p.anon:8d} {p.file:8d} {p.shmem:9d} {p.pgtables_bytes:8d} "
                     f"{0:8d}         {p.oom_score_adj:5d} {p.comm}")

    def _show_mem(self) -> None:
        """``__show_mem``: the global counters and the summary lines (no per-zone lines)."""
        from .procfs import memory_counters

        c = memory_counters(self.k)
        k = self.k
        k.printk("Mem-Info:")
        k.printk(f"active_anon:{c.active_anon} inactive_anon:{c.inactive_anon} isolated_anon:0")
        k.printk(f" active_file:{c.active_file} inactive_file:{c.inactive_file} isolated_file:0")
        k.printk(" unevictable:0 dirty:0 writeback:0")
        k.printk(f" slab_reclaimable:0 slab_unreclaimable:{c.slab_unreclaimable}")
        k.printk(f" mapped:{c.mapped} shmem:{c.shmem} pagetables:{c.pagetables}")
        k.printk(" sec_pagetables:0 bounce:0")
        k.printk(" kernel_misc_reclaimable:0")
        k.printk(f" free:{c.free} free_pcp:0 free_cma:0")
        k.printk(f"{self.cache_pages} total pagecache pages")
        k.printk("0 pages in swap cache")
        k.printk("Free swap  = 0kB")
        k.printk("Total swap = 0kB")
        ram = self.k.ram_bytes // PAGE_SIZE
        k.printk(f"{ram} pages RAM")
        k.printk("0 pages HighMem/MovableOnly")
        k.printk(f"{ram - self.k.page_allocator.total_pages} pages reserved")
        k.printk("0 pages hwpoisoned")

    def _should_dump_unreclaim_slab(self) -> bool:
        """Unreclaimable slab larger than all user memory on the LRU lists."""
        from .procfs import memory_counters

        c = memory_counters(self.k)
        nr_lru = c.active_anon + c.inactive_anon + c.active_file + c.inactive_file
        return c.slab_unreclaimable > nr_lru

    def _dump_unreclaimable_slab(self) -> None:
        from .procfs import slab_caches_newest_first, slabinfo_counts

        k = self.k
        k.printk("Unreclaimable slab info:")
        k.printk("Name                      Used          Total")
        for cache in slab_caches_newest_first(k):
            active, total = slabinfo_counts(cache)
            if total:
                k.printk(f"{slab_display_name(cache.name):<17s} "
                         f"{active * cache.size // 1024:10d}KB {total * cache.size // 1024:10d}KB")

    # -- signals -----------------------------------------------------------------
    def _exit(self, proc: Process) -> None:
        """The process exits: its anonymous pages and page tables go back; its file pages
        stay in the page cache, unmapped."""
        self._uncharge(proc.anon + proc.pgtables_bytes // PAGE_SIZE)
        del self.processes[proc.pid]
        if proc.task in self.k.tasks:
            self.k.exit_task(proc.task)

    def kill(self, pid: int, sig: int = SIGTERM) -> None:
        """``kill(pid, sig)`` from the shell: the process exits (init ignores it).

        Raises ``ProcessLookupError`` for no such process.
        """
        proc = self.processes.get(pid)
        if proc is None:
            if any(t.pid == pid for t in self.k.tasks):
                return  # a kernel thread: signals are ignored
            raise ProcessLookupError(pid)
        if pid == 1:
            return  # init has no handler for SIGTERM/SIGKILL: they are not delivered
        if sig in (SIGTERM, SIGKILL):  # none of these processes handles SIGTERM
            self._exit(proc)


def slab_display_name(name: str) -> str:
    """The name ``/proc/slabinfo`` shows: the kernel calls kmalloc caches ``kmalloc-1k``...

    >>> [slab_display_name(n) for n in ("kmalloc-1024", "kmalloc-96", "dentry")]
    ['kmalloc-1k', 'kmalloc-96', 'dentry']
    """
    if name.startswith("kmalloc-") and name[8:].isdigit():
        size = int(name[8:])
        if size >= 1024 and size % 1024 == 0:
            return f"kmalloc-{size // 1024}k"
    return name
