"""``explain(k, addr)``: why is this object reported, or not?

The answer sets kmemleak's side (the chain of words from a root region
through gray objects that grayed it, or the fact that too few scanned words
point into it; its count against ``min_count``, its age, its checksum)
beside the truth's side (who really refers to it, the path from a real
root) and ends with the verdict.

>>> from kmemsim import Kernel
>>> from kmemsim.truth import explain
>>> k = Kernel()
>>> t = k.spawn("worker")
>>> p = k.kzalloc(64)
>>> with k.task_context(t), k.stack_frame(2) as f:
...     k.store(f.slot(0), p)                   # a local, then the function returns
>>> k.sleep(6); _ = k.kmemleak.scan()
>>> e = explain(k, p)
>>> e.verdict.kind, e.verdict.cause
('false negative', 'stale stack slot')
>>> "stack of worker" in str(e)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import KmemsimValueError, check_int
from ..kmemleak.object import OBJECT_REPORTED, KmemleakObject
from .judge import Verdict, _Judge
from .model import Edge

if TYPE_CHECKING:
    from ..kernel import Kernel


@dataclass(frozen=True)
class Explanation:
    """The answer to "why is this (not) reported?", as data and as text (``str()``)."""

    pointer: int
    verdict: Verdict
    kmemleak_lines: tuple[str, ...]
    truth_lines: tuple[str, ...]
    header: str

    def __str__(self) -> str:
        out = [self.header, "", "kmemleak's side:"]
        out += [f"  {line}" for line in self.kmemleak_lines]
        out += ["", "The truth:"]
        out += [f"  {line}" for line in self.truth_lines]
        out += ["", f"Verdict: {self.verdict.kind}: {self.verdict.cause}.",
                f"  {self.verdict.detail}"]
        return "\n".join(out)


def _edge_text(j: _Judge, edge: Edge) -> str:
    region, off = j.region(edge.slot)
    enc = edge.encoding.label
    return f"{region}+0x{off:x} holds it ({enc}, stored at jiffies {edge.jiffies})"


def _gray_chain(j: _Judge, obj: KmemleakObject) -> list[str]:
    """Follow the words that grayed each holder back to a root region."""
    scan = j.scan
    assert scan is not None
    lines: list[str] = []
    seen: set[int] = set()
    cur: int | None = obj.pointer
    while cur is not None and cur not in seen:
        seen.add(cur)
        g = scan.grayed_by.get(cur)
        if g is None:
            holder = j.kl.find(cur)
            if holder is not None and holder.min_count == 0:
                region, _ = j.region(cur)
                lines.append(f"0x{cur:x} ({region}) is a permanent root: min_count 0, "
                             "always gray")
            break
        region, off = j.region(g.address)
        lines.append(f"0x{g.value:x} at {region}+0x{off:x} (address 0x{g.address:x}) "
                     f"points into 0x{cur:x}")
        if g.holder is None:
            lines.append(f"{g.root or region} is a direct root: the scan reads it first")
            break
        cur = g.holder
    return lines


def explain(k: Kernel, addr: int) -> Explanation:
    """Explain kmemleak's decision about the object containing *addr*, and judge it."""
    check_int("addr", addr, minimum=0)
    kl = k.kmemleak
    obj = kl.find(addr) or kl.find(addr, tree="percpu")
    if obj is None:
        raise KmemsimValueError(f"no tracked object contains 0x{addr:x}")
    j = _Judge(k)
    block = j.block_of(obj)
    reachable = j.reachable(obj, block)
    reported = bool(obj.flags & OBJECT_REPORTED) and kl.unreferenced_object(obj)
    verdict = j.verdict(obj, block, reachable, reported)
    age_ms = ((kl.jiffies_last_scan - obj.jiffies) & k.arch.word_mask) * 1000 // k.hz
    header = (f"Object 0x{obj.pointer:x} (size {obj.size}), allocated by \"{obj.comm}\" "
              f"pid {obj.pid} at jiffies {obj.jiffies}")
    if obj.trace:
        header += f"\n  allocated from: {k.symbolize(obj.trace[0])}" + "".join(
            f" <- {k.symbolize(a)}" for a in obj.trace[1:3])
    km: list[str] = []
    scan = kl.last_scan
    if scan is None:
        km.append("no scan has run yet")
    else:
        km.append(f"last scan at jiffies {scan.jiffies}; the object was {age_ms / 1000:.3f} s "
                  f"old at its start (minimum age {kl.jiffies_min_age * 1000 // k.hz} ms)")
        km.append(f"colour {obj.color}: count {obj.count} of min_count {obj.min_count}"
                  + ("; listed in /sys/kernel/debug/kmemleak" if reported else "; not listed"))
        if obj.min_count == -1:
            km.append("black (kmemleak_ignore): never scanned, never reported")
        elif obj.min_count == 0:
            km.append("min_count 0: a permanent root (kmemleak_not_leak, `clear`, or a section)")
        elif obj.pointer in scan.grayed_by:
            km.append("grayed during the scan by this chain of words:")
            km += [f"  {line}" for line in _gray_chain(j, obj)]
        elif obj.pointer in scan.checksum_spared:
            km.append("white, but its checksum changed since the previous scan: the checksum "
                      "pass grayed it for this scan only")
        else:
            km.append(f"white: the scan found {obj.count} word(s) pointing into it in scanned "
                      f"memory, fewer than min_count {obj.min_count}")
        km.append(f"stored checksum (crc32 of its contents at the last white scan): "
                  f"0x{obj.checksum:x}")
    tr: list[str] = []
    if block is None:
        tr.append("a root region of the kernel (not an allocation)" if reachable else
                  "kmemleak tracks it but the program never allocated it through kmemsim")
    else:
        refs = k.truth.referrers(block.base)
        if reachable:
            path = j.truth.path_to_root(block.base, j.parents)
            if path:
                tr.append("reachable; a shortest path from a real root:")
                tr += [f"  {_edge_text(j, e)} -> 0x{e.target_base:x}" for e in path]
            else:
                tr.append(f"reachable: a {block.kind} block that is itself a root")
        else:
            tr.append("unreachable: no live reference from a real root leads to it")
            if refs:
                tr.append("references from other unreachable objects:")
                tr += [f"  {_edge_text(j, e)}" for e in refs]
            last = [h for h in k.truth.history.values() if h.edge.target_base == block.base]
            if last:
                h = max(last, key=lambda h: h.jiffies)
                region, off = j.region(h.edge.slot)
                tr.append(f"its last reference ended at jiffies {h.jiffies} ({h.reason}): "
                          f"{region}+0x{off:x}")
        for r in verdict.referrers:
            tr.append(f"kmemleak missed {_edge_text(j, r.edge)}: {r.detail}")
    return Explanation(obj.pointer, verdict, tuple(km), tuple(tr), header)
