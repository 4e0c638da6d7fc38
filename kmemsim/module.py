"""Loadable kernel modules written in Python.

A module is a subclass of :class:`Module` with ``init`` and ``exit``
methods, loaded with :meth:`Kernel.insmod` or :meth:`Kernel.modprobe`.  Its
static variables live in the module's data (a gray root for kmemleak while
the module is loaded), its functions get symbols in the module's text, and
every allocation made from its code records a backtrace through them.

>>> from kmemsim import Kernel, Module
>>> class Hello(Module):
...     name = "hello"
...     statics = {"buf": 8}
...     def init(self) -> int:
...         self.k.store(self.static("buf"), self.k.kmalloc(64))
...         self.pr_info("hello: loaded")
...         return 0
>>> k = Kernel()
>>> k.insmod(Hello)
>>> k.dmesg().splitlines()[-1].endswith("hello: loaded")
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from .errors import KmemsimValueError

if TYPE_CHECKING:
    from .kernel import Kernel


class Module:
    """Base class of simulated kernel modules.

    Class attributes:

    * ``name``: the module name (``lsmod``, ``[name]`` in backtraces);
      defaults to the class name in lower case;
    * ``statics``: ``{variable: size in bytes}``, the module's static data,
      zero-initialised like ``.bss``;
    * ``description``: one line for ``modinfo``-like listings.
    """

    name: ClassVar[str] = ""
    statics: ClassVar[dict[str, int]] = {}
    description: ClassVar[str] = ""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self._static_addrs: dict[str, int] = {}
        self.core_layout_text = 0
        self.core_layout_data = 0

    @classmethod
    def module_name(cls) -> str:
        return cls.name or cls.__name__.lower()

    def init(self) -> int:
        """``module_init``: return 0 on success or a negative errno."""
        return 0

    def exit(self) -> None:
        """``module_exit``: runs at ``rmmod``."""

    def static(self, name: str) -> int:
        """Address of the static variable *name* in module data."""
        try:
            return self._static_addrs[name]
        except KeyError:
            raise KmemsimValueError(
                f"module {self.module_name()} has no static {name!r}; "
                f"declare it in {type(self).__name__}.statics"
            ) from None

    def pr_info(self, text: str) -> None:
        """``pr_info``: one line in the kernel log."""
        self.k.printk(text)
