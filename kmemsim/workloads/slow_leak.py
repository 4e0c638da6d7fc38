"""A slow leak: a polling kernel thread that loses a few KB every second.

The module starts a kernel thread, ``slow_leak``, that wakes up every
``interval_ms`` and builds ``count`` status records of ``size`` bytes with
``kmalloc``.  It means to hand them to a consumer, but the hand-over was
never written: each pointer lives in a local and is dropped.  ``Slab``
grows steadily, ``MemFree`` falls, and nothing in the module's data points
to the records, so kmemleak reports each one with the thread's backtrace::

    unreferenced object 0xffff888005c4a000 (size 4096):
      comm "slow_leak", pid 1107, jiffies 4294690796
      ...
      backtrace (crc ...):
        __kmalloc_cache_noprof+0x2f1/0x3a0
        leak_thread+0x59/0xc0 [slow_leak]
        kthread+0xe1/0x120
        ret_from_fork+0x34/0x40
        ret_from_fork_asm+0x1a/0x20

Module parameters (``modprobe slow_leak size=4096 count=4``, or
:func:`with_parameters`): ``size`` (bytes per record, default 1024),
``count`` (records per wake-up, default 4) and ``interval_ms`` (default
1000): 4 KB a second by default.  ``rmmod`` stops the thread; what it
leaked stays leaked.

>>> from kmemsim import Kernel
>>> k = Kernel()
>>> k.modprobe("slow_leak")
>>> k.sleep(10)
>>> len(k.slab.caches["kmalloc-1024"].allocated)
40
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from ..kernel import Kernel, Task
from ..module import Module


class SlowLeakModule(Module):
    """A kernel thread that kmallocs ``count`` x ``size`` bytes every ``interval_ms`` and loses them."""

    name = "slow_leak"
    description = "a polling kernel thread that leaks a few KB every second"
    #: Module parameters and their descriptions (``modinfo -p``).
    parameters: ClassVar[dict[str, str]] = {
        "size": "bytes per status record (default 1024)",
        "count": "records built per wake-up (default 4)",
        "interval_ms": "milliseconds between wake-ups (default 1000)",
    }
    size: int = 1024
    count: int = 4
    interval_ms: int = 1000

    def __init__(self, k: Kernel) -> None:
        super().__init__(k)
        self.thread: Task | None = None
        self.records = 0

    def init(self) -> int:
        if self.size <= 0 or self.count <= 0 or self.interval_ms <= 0:
            return -22  # -EINVAL: module_init refuses nonsense parameters
        self.thread = self.k.kthread_run(self.leak_thread(), "slow_leak")
        self.pr_info(f"slow_leak: polling every {self.interval_ms} ms, "
                     f"{self.count} status records of {self.size} bytes each")
        return 0

    def leak_thread(self) -> Iterator[float]:
        """The thread's body: build records, forget to hand them over, sleep."""
        k = self.k
        while True:  # until kthread_stop
            for _ in range(self.count):
                rec = k.kmalloc(self.size)
                if rec:
                    self.records += 1
                    k.memory.write(rec, f"SLOWLEAK rec {self.records:08d}".encode())
                # consumer_submit(rec) was never written: the pointer dies here.
            yield self.interval_ms / 1000  # msleep_interruptible(interval_ms)

    def exit(self) -> None:
        if self.thread is not None:
            self.k.kthread_stop(self.thread)
            self.thread = None
        self.pr_info(f"slow_leak: stopped after {self.records} records")


def with_parameters(module: type[Module], k: Kernel, params: dict[str, str]
                    ) -> tuple[Module, list[str], str | None]:
    """An instance of *module* for *k* with ``name=value`` parameters applied.

    Returns ``(instance, ignored, bad)``: parameters the module does not
    declare are ignored (the kernel logs ``unknown parameter ... ignored``);
    *bad* names a parameter whose value is not an integer (the kernel
    refuses the module with ``-EINVAL``).

    >>> from kmemsim import Kernel
    >>> m, ignored, bad = with_parameters(SlowLeakModule, Kernel(), {"size": "4096", "x": "1"})
    >>> m.size, ignored, bad
    (4096, ['x'], None)
    """
    inst = module(k)
    declared: dict[str, str] = getattr(module, "parameters", {})
    ignored: list[str] = []
    for key, value in params.items():
        if key not in declared:
            ignored.append(key)
            continue
        try:
            setattr(inst, key, int(value, 0))
        except ValueError:
            return inst, ignored, key
    return inst, ignored, None
