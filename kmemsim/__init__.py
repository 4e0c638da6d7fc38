"""kmemsim: a simulator of the Linux kernel's memory leak detector, kmemleak.

kmemsim boots a simulated kernel address space with real allocators (SLUB
with kmalloc size classes and poisoning, vmalloc with guard pages, pages,
per-CPU areas, memblock), runs kmemleak's scan the way ``mm/kmemleak.c``
does, and prints the records the kernel prints.

A tour:

>>> from kmemsim import Kernel
>>> k = Kernel(cmdline="slub_debug=P")          # x86_64, HZ=1000, kmemleak on
>>> k.modprobe("article_leak")                  # the article's leaking module
>>> k.sleep(10)                                 # leaks must be 5 s old
>>> k.write("/sys/kernel/debug/kmemleak", "scan\\n")
>>> k.sleep(5)
>>> k.write("/sys/kernel/debug/kmemleak", "scan\\n")
>>> report = k.read("/sys/kernel/debug/kmemleak")
>>> report.count("unreferenced object")         # 8 kmalloc + 5 vmalloc blocks
13
>>> print(report.splitlines()[0][:36])
unreferenced object 0xffff8880040...
"""

from .errors import (
    KernelOops,
    KmemsimError,
    KmemsimFormatError,
    KmemsimTypeError,
    KmemsimValueError,
    PageFault,
)
from .kernel import Kernel, KernelConfig, StackFrame, Task
from .kmemleak import ObjectRecord, ScanResult
from .module import Module

__version__ = "0.2.0"

__all__ = [
    "Kernel",
    "KernelConfig",
    "KernelOops",
    "KmemsimError",
    "KmemsimFormatError",
    "KmemsimTypeError",
    "KmemsimValueError",
    "Module",
    "ObjectRecord",
    "PageFault",
    "ScanResult",
    "StackFrame",
    "Task",
    "__version__",
]
