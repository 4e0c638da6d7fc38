"""``/sys/kernel/debug/kmemleak``: the commands a write accepts and what a read lists.

Commands are matched by prefix in the kernel's order, only the first 63
bytes are looked at, and one write is one command (spec 7.2):

>>> from kmemsim import Kernel
>>> k = Kernel()
>>> k.write("/sys/kernel/debug/kmemleak", "stack=offline")   # prefix: stack=off
>>> k.kmemleak.kmemleak_stack_scan
False
>>> k.write("/sys/kernel/debug/kmemleak", "bogus")
Traceback (most recent call last):
...
OSError: [Errno 22] Invalid argument: '/sys/kernel/debug/kmemleak'
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from .report import record_lines

if TYPE_CHECKING:
    from .hooks import Kmemleak

PATH = "/sys/kernel/debug/kmemleak"
#: The write buffer is 64 bytes; one is the terminating NUL.
WRITE_BUF_SIZE = 64


def kstrtoul(text: str, bits: int) -> int:
    """``kstrtoul(s, 0, &v)``: ``0x`` hex, leading ``0`` octal, one trailing newline.

    A leading ``+`` is accepted, as ``kstrtoull`` does.  Raises ``ValueError``
    (the kernel's ``-EINVAL``) for bad syntax and ``OverflowError``
    (``-ERANGE``) for a value that does not fit in *bits*.

    >>> kstrtoul("0x10\\n", 64), kstrtoul("010", 64), kstrtoul("10", 64), kstrtoul("+7", 32)
    (16, 8, 10, 7)
    """
    s = text[1:] if text.startswith("+") else text
    s = s[:-1] if s.endswith("\n") else s
    if s.startswith(("0x", "0X")):
        base, digits = 16, s[2:]
    elif s.startswith("0") and len(s) > 1:
        base, digits = 8, s[1:]
    else:
        base, digits = 10, s
    if not digits or not all(c in "0123456789abcdefABCDEF"[: base + (6 if base == 16 else 0)]
                             for c in digits):
        raise ValueError(text)
    value = int(digits, base)
    if value >= 1 << bits:
        raise OverflowError(text)
    return value


def _fail(code: int) -> OSError:
    return OSError(code, os.strerror(code), PATH)


def kmemleak_write(kl: Kmemleak, text: str) -> None:
    """Carry out one write; raise :class:`OSError` with the kernel's errno on failure."""
    buf = text.encode("utf-8", "surrogateescape")[: WRITE_BUF_SIZE - 1]
    buf = buf.split(b"\0", 1)[0]  # strncpy_from_user stops at NUL
    cmd = buf.decode("latin-1")
    k = kl.k
    if cmd.startswith("clear"):
        if kl.kmemleak_enabled:
            kl.kmemleak_clear()
        else:
            kl.do_cleanup()
        return
    if not kl.kmemleak_enabled:
        raise _fail(errno.EPERM)
    if cmd.startswith("off"):
        kl.kmemleak_disable()
    elif cmd.startswith("stack=on"):
        kl.kmemleak_stack_scan = True
    elif cmd.startswith("stack=off"):
        kl.kmemleak_stack_scan = False
    elif cmd.startswith("scan=on"):
        kl.start_scan_thread()
    elif cmd.startswith("scan=off"):
        kl.stop_scan_thread()
    elif cmd.startswith("scan="):
        try:
            secs = kstrtoul(cmd[5:], 32)  # kstrtouint: its error is returned as is
        except OverflowError:
            raise _fail(errno.ERANGE) from None
        except ValueError:
            raise _fail(errno.EINVAL) from None
        msecs = (secs * 1000) & k.arch.word_mask  # unsigned long: wraps on 32-bit
        msecs = min(msecs, 0xFFFFFFFF)
        kl.stop_scan_thread()
        if msecs:
            from .hooks import msecs_to_jiffies

            kl.jiffies_scan_wait = msecs_to_jiffies(msecs, k.hz)
            kl.start_scan_thread()
    elif cmd.startswith("scan"):
        kl.scan()
    elif cmd.startswith("dump="):
        try:
            addr = kstrtoul(cmd[5:], 8 * k.arch.word_size)
        except (ValueError, OverflowError):  # dump_str_object_info: any failure is -EINVAL
            raise _fail(errno.EINVAL) from None
        found = False
        for tree in ("virtual", "phys", "percpu"):
            obj = kl.find(addr, tree=tree)
            if obj is not None:
                kl.dump_object_info(obj)
                found = True
        if not found:
            kl.info(f"Unknown object at 0x{addr:08x}")
            raise _fail(errno.EINVAL)
    else:
        raise _fail(errno.EINVAL)


def kmemleak_read(kl: Kmemleak) -> str:
    """Every reported object that is still unreferenced, in ``object_list`` order."""
    out: list[str] = []
    for obj in kl.reported_unreferenced():
        out.extend(record_lines(kl, obj))
    return "".join(line + "\n" for line in out)
