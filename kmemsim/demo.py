"""The article's story, step by step: the walkthrough behind ``kmemsim demo``.

Each step shows the command a learner would type on a real machine, what the
simulated machine prints, and a short note on why.  :func:`run_demo` writes
to any text stream, so notebooks and tests can capture it.

>>> import io
>>> out = io.StringIO()
>>> run_demo(out, narrate=False)
0
>>> out.getvalue().count("unreferenced object")
23
"""

from __future__ import annotations

import textwrap
from typing import TextIO

from .kernel import Kernel

KMEMLEAK = "/sys/kernel/debug/kmemleak"


class _Story:
    def __init__(self, out: TextIO, narrate: bool) -> None:
        self.out = out
        self.narrate = narrate
        self.step = 0

    def title(self, text: str) -> None:
        self.step += 1
        self.out.write(f"\n== Step {self.step}: {text} ==\n")

    def note(self, text: str) -> None:
        if self.narrate:
            for para in textwrap.dedent(text).strip().split("\n\n"):
                self.out.write(textwrap.fill(" ".join(para.split()), width=78,
                                             initial_indent="  # ", subsequent_indent="  # "))
                self.out.write("\n")

    def command(self, cmd: str) -> None:
        self.out.write(f"root@kmemsim:~# {cmd}\n")

    def show(self, text: str) -> None:
        self.out.write(text if text.endswith("\n") or not text else text + "\n")

    def dmesg_c(self, k: Kernel) -> None:
        """``dmesg -c``: what the kernel logged since the last read, then clear."""
        self.command("dmesg -c")
        self.show(k.dmesg(clear=True))


def run_demo(out: TextIO, *, arch: str = "x86_64", hz: int = 1000, narrate: bool = True,
             report_format: str = "newest", seed: int = 0) -> int:
    """Walk the article's path on a simulated kernel, writing to *out*; return 0.

    The kernel boots with ``slub_debug=P``, loads the article's leak module
    as ``modprobe`` would, scans the way maintainers advise (scan, wait,
    scan again), reads the records, unloads the module and finds the list
    nodes it leaked, then shows a false positive made by a computed pointer.
    """
    s = _Story(out, narrate)
    k = Kernel(arch=arch, hz=hz, cmdline="slub_debug=P", seed=seed, report_format=report_format)
    mod = "article_leak"

    s.title(f"boot a {arch} kernel built with CONFIG_DEBUG_KMEMLEAK=y")
    s.note("""The kernel was built with CONFIG_DEBUG_KMEMLEAK and boots with slub_debug=P,
        so freed and fresh slab objects are filled with the poison byte 0x6b (last byte
        0xa5). kmemleak tracks every allocation from the start and starts its scanning
        thread, which first scans 60 seconds after it starts and then every 10 minutes.""")
    s.command("dmesg -c | grep -e kmemleak -e 'Command line'")
    s.show("".join(line for line in k.dmesg(clear=True).splitlines(keepends=True)
                   if "kmemleak" in line or "Command line" in line))

    s.title("load the leaking module")
    s.command(f"modprobe {mod}")
    k.modprobe(mod)
    s.dmesg_c(k)
    s.note("""Its init function kmallocs blocks of 32, 1024, 2048 and 4096 bytes (two of
        each) and vmallocs five 64-byte areas, and forgets every pointer: thirteen leaks.
        It also puts ten kzalloc'ed nodes on a static list in module data: those stay
        reachable while the module is loaded.""")

    s.title("scan, wait, scan again")
    s.note("""kmemleak never reports an object younger than 5 seconds at the start of a
        scan (its pointer may still sit in a CPU register), so we wait first.""")
    s.command("sleep 10")
    k.sleep(10)
    s.command(f"echo scan > {KMEMLEAK}")
    k.write(KMEMLEAK, "scan\n")
    s.dmesg_c(k)
    s.note("""Only the five vmalloc areas are reported by the first scan. Each object's
        stored checksum starts at 0, and a scan spares a white object whose CRC32 differs
        from the stored one, because it might have been modified while the scan ran. The
        vmalloc pages are all zeros, so their CRC is 0 and they are reported at once; the
        poisoned kmalloc blocks (6b 6b ... a5) have a non-zero CRC and are spared this
        time. That is why maintainers advise: scan, wait, scan again, then read.""")
    s.command("sleep 5")
    k.sleep(5)
    s.command(f"echo scan > {KMEMLEAK}")
    k.write(KMEMLEAK, "scan\n")
    s.dmesg_c(k)

    s.title("read the records")
    s.command(f"cat {KMEMLEAK}")
    first = k.read(KMEMLEAK)
    s.show(first)
    s.note("""Eight kmalloc blocks (32, 32, 1024, 1024, 2048, 2048, 4096, 4096) and five
        vmalloc areas of 4096 bytes, in allocation order. The 32-byte records show the
        whole object: the poison 6b and the final a5. A vmalloc area is held by its
        vm_struct, but it needs two references (min_count 2), so that one is not enough.
        The second line of each backtrace is the module function that allocated.""")
    frame = next(line.strip() for line in first.splitlines() if f"[{mod}]" in line)
    s.command(f"addr2line -e {mod}.ko {frame.split()[0]}")
    loc = k.addr2line(frame.split()[0])
    s.show(f"{loc}\n" if loc else "??:0\n")

    s.title("unload the module, scan twice")
    s.command(f"rmmod {mod}")
    k.rmmod(mod)
    s.note("""Its exit function only list_del()s the nodes: each node's next and prev
        become LIST_POISON1 and LIST_POISON2, and then the module's data, which held the
        list head, is freed. Nothing points to the nodes any more.""")
    s.command("sleep 5")
    k.sleep(5)
    s.command(f"echo scan > {KMEMLEAK}")
    k.write(KMEMLEAK, "scan\n")
    s.dmesg_c(k)
    s.note("""Nothing new: the nodes were gray until now, so their checksum was never
        refreshed; list_del changed their contents, so this scan counts them as modified
        and spares them once. One scan is not enough.""")
    s.command("sleep 5")
    k.sleep(5)
    s.command(f"echo scan > {KMEMLEAK}")
    k.write(KMEMLEAK, "scan\n")
    s.dmesg_c(k)
    new = k.kmemleak.last_scan.new_leaks if k.kmemleak.last_scan else ()
    s.command(f"cat {KMEMLEAK}")
    records = k.read(KMEMLEAK).split("unreferenced object")[1:]
    fresh = {f" 0x{r.pointer:08x} " for r in new}
    s.show(f"... the {len(records) - len(new)} records read before (their module frames now"
           " print as bare addresses), then the new ones:\n")
    s.show("".join("unreferenced object" + r for r in records if r[:r.index("(")] in fresh))
    s.note("""Ten list nodes of size 256 (kzalloc(248) rounds up to kmalloc-256). The
        module is gone, so its frames print as bare addresses; addr2line on the module
        file still maps them to the line that allocated.""")

    s.title("a false positive: a computed pointer")
    secret = k.define_static("demo_handle", k.arch.word_size)
    p = k.kmalloc(128)
    key = 0x5A5A5A5A5A5A5A5A & k.arch.word_mask
    k.memory.write_word(secret, p ^ key)
    s.note(f"""A kernel static keeps the address of a 128-byte block XOR-ed with a key, as
        hardened freelists and some handles do. The program can always recover the block
        from it, but the word in memory (0x{(p ^ key):x}) points nowhere, so kmemleak,
        which only recognises plain pointers, reports the block.""")
    s.command(f"sleep 10; echo scan > {KMEMLEAK}; sleep 5; echo scan > {KMEMLEAK}")
    k.sleep(10)
    k.write(KMEMLEAK, "scan\n")
    k.sleep(5)
    k.write(KMEMLEAK, "scan\n")
    s.dmesg_c(k)
    s.note("""The fix in real code is kmemleak_not_leak() on the block, or keeping a
        plain pointer somewhere kmemleak scans.""")
    return 0
