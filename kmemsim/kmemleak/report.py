"""Report records in every format era, the hex dump, and ``dump_object_info``.

One source of each format (rule 3): the debugfs read, the verbose kernel
log and the ``dump=`` command all print through this module.

>>> hex_dump_lines(b"\\x6b" * 15 + b"\\xa5")
['    6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b a5  kkkkkkkkkkkkkkk.']
>>> hex_dump_lines(bytes(8))[0]
'    00 00 00 00 00 00 00 00                          ........'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .object import OBJECT_PERCPU, OBJECT_PHYS, KmemleakObject

if TYPE_CHECKING:
    from .hooks import Kmemleak

HEX_PREFIX = "    "
HEX_ROW_SIZE = 16
HEX_GROUP_SIZE = 1
HEX_ASCII = 1
HEX_MAX_LINES = 2

#: The format eras a record can be printed in (spec 7.4).
REPORT_FORMATS = ("newest", "6.6", "4.15")


def hex_dump_lines(data: bytes, prefix: str = HEX_PREFIX) -> list[str]:
    """``hex_dump_to_buffer`` rows of 16 bytes, ASCII column at offset 49.

    >>> len(hex_dump_lines(bytes(32)))
    2
    """
    lines = []
    for off in range(0, len(data), HEX_ROW_SIZE):
        row = data[off:off + HEX_ROW_SIZE]
        hexpart = " ".join(f"{b:02x}" for b in row)
        ascii_part = "".join(chr(b) if 0x20 <= b <= 0x7E else "." for b in row)
        lines.append(f"{prefix}{hexpart.ljust(3 * HEX_ROW_SIZE + 1)}{ascii_part}")
    return lines


def object_type_str(obj: KmemleakObject) -> str:
    """``__object_type_str``: ``""``, ``" (percpu)"`` or ``" (phys)"``."""
    if obj.flags & OBJECT_PHYS:
        return " (phys)"
    if obj.flags & OBJECT_PERCPU:
        return " (percpu)"
    return ""


def jiffies_to_msecs(j: int, hz: int) -> int:
    return j * 1000 // hz


def record_lines(kl: Kmemleak, obj: KmemleakObject, era: str | None = None) -> list[str]:
    """The lines of one ``unreferenced object`` record (no ``kmemleak: `` prefix).

    Eras: ``"newest"`` (``%pS`` frames and the crc), ``"6.6"`` (``[<%pK>] %pS``),
    ``"4.15"`` (``(age S.mmms)`` and hashed ``[<%p>]`` frames).
    """
    k = kl.k
    era = era or kl.config.report_format
    ws = k.arch.word_size
    lines = [f"unreferenced object{object_type_str(obj)} 0x{obj.pointer:08x} (size {obj.size}):"]
    task = f'  comm "{obj.comm}", pid {obj.pid}, jiffies {obj.jiffies}'
    if era == "4.15":
        age = jiffies_to_msecs((k.jiffies - obj.jiffies) & k.arch.word_mask, k.hz)
        task += f" (age {age // 1000}.{age % 1000:03d}s)"
    lines.append(task)
    if not obj.flags & OBJECT_PHYS:
        n = min(obj.size, HEX_MAX_LINES * HEX_ROW_SIZE)
        addr = k.arch.untag(obj.pointer)
        cpu = ""
        if obj.flags & OBJECT_PERCPU:
            addr = obj.pointer + k.per_cpu_offset(0)
            cpu = " on cpu 0"
        lines.append(f"  hex dump (first {n} bytes{cpu}):")
        lines.extend(hex_dump_lines(k.memory.read(addr, n)))
    if era == "4.15":
        lines.append("  backtrace:")
        for ret in obj.trace:
            lines.append(f"    [<{k.hash_pointer(ret):0{2 * ws}x}>] {k.symbolize(ret)}")
    else:
        lines.append(f"  backtrace (crc {obj.checksum:x}):")
        for ret in obj.trace:
            if era == "6.6":
                shown = {0: k.hash_pointer(ret), 1: ret}.get(kl.config.kptr_restrict, 0)
                lines.append(f"    [<{shown:0{2 * ws}x}>] {k.symbolize(ret)}")
            else:
                lines.append(f"    {k.symbolize(ret)}")
    return lines


def dump_object_info_lines(obj: KmemleakObject, symbolize: Callable[[int], str]) -> list[str]:
    """``dump_object_info``: the checksum is decimal here, hex in records."""
    lines = [
        f"kmemleak: Object{object_type_str(obj)} 0x{obj.pointer:08x} (size {obj.size}):",
        f'kmemleak:   comm "{obj.comm}", pid {obj.pid}, jiffies {obj.jiffies}',
        f"kmemleak:   min_count = {obj.min_count}",
        f"kmemleak:   count = {obj.count}",
        f"kmemleak:   flags = 0x{obj.flags:x}",
        f"kmemleak:   checksum = {obj.checksum}",
        "kmemleak:   backtrace:",
    ]
    lines.extend(f" {symbolize(ret)}" for ret in obj.trace)
    return lines
