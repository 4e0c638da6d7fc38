"""The control file ``/sys/kernel/debug/kmemleak``, the verbose parameter and boot options.

Every command of spec 7.2 is driven through ``k.write``/``k.read``, the way a
user drives the kernel with ``echo`` and ``cat``; the expected behaviour is
the spec's (sections 5.1, 5.8, 6, 7), not the code's.
"""

from __future__ import annotations

import errno
import re

import pytest

from kmemsim import Kernel

P = "/sys/kernel/debug/kmemleak"
VERBOSE = "/sys/module/kmemleak/parameters/verbose"
STAMP = re.compile(r"^\[\s*\d+\.\d{6}\] ")
SUMMARY = "kmemleak: {} new suspected memory leaks (see /sys/kernel/debug/kmemleak)"


def log(k: Kernel, clear: bool = True) -> list[str]:
    """The kernel log lines without their ``[seconds.micros]`` stamps (``dmesg -c``)."""
    return [STAMP.sub("", line) for line in k.dmesg(clear=clear).splitlines()]


def stamp_of(k: Kernel, text: str) -> float:
    """Seconds since boot at which the first log line containing *text* was printed."""
    for line in k.dmesg().splitlines():
        if text in line:
            return float(line[1:line.index("]")])
    raise AssertionError(f"{text!r} not in dmesg")


def headers(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("unreferenced object")]


def header(k: Kernel, ptr: int, size: int) -> str:
    return f"unreferenced object 0x{ptr:0{2 * k.arch.word_size}x} (size {size}):"


def scan(k: Kernel) -> None:
    k.write(P, "scan")


def write_errno(k: Kernel, text: str) -> int:
    with pytest.raises(OSError) as exc:
        k.write(P, text)
    return exc.value.errno


def quiet_kernel(**kwargs: object) -> Kernel:
    """A kernel whose scan thread is stopped, so only explicit scans run."""
    k = Kernel(**kwargs)  # type: ignore[arg-type]
    k.write(P, "scan=off")
    k.dmesg(clear=True)
    return k


# ---------------------------------------------------------------------- clear
def test_clear_enabled_turns_reported_leaks_into_permanent_gray_roots() -> None:
    k, control = quiet_kernel(), quiet_kernel()
    a, ca = k.kzalloc(64), control.kzalloc(64)
    for kk in (k, control):
        kk.sleep(6)
        scan(kk)  # all-zero (crc 0) and old enough: reported by the first scan
    assert headers(k.read(P)) == [header(k, a, 64)]
    assert k.kmemleak.kmemleak_found_leaks

    k.write(P, "clear")
    obj = k.kmemleak.find(a)
    assert obj is not None
    assert obj.min_count == 0  # __paint_it(KMEMLEAK_GREY)
    assert k.read(P) == ""
    assert not k.kmemleak.kmemleak_found_leaks

    # The cleared object is now a root: what it points to is never reported,
    # while the same pattern without the clear is.  This is how clear hides leaks.
    for kk, holder in ((k, a), (control, ca)):
        c = kk.kzalloc(64)
        kk.store(holder, c)
        kk.kzalloc(32)  # an ordinary leak, reported in both kernels
        kk.sleep(6)
        scan(kk)
        scan(kk)
    assert [h.split(" (size ")[1] for h in headers(k.read(P))] == ["32):"]
    assert [h.split(" (size ")[1] for h in headers(control.read(P))] == ["64):", "64):", "32):"]


def test_clear_resets_found_leaks_so_a_later_off_frees_the_metadata() -> None:
    k = quiet_kernel()
    k.kzalloc(64)
    k.sleep(6)
    scan(k)
    k.write(P, "clear")
    k.write(P, "off")
    lines = log(k)
    assert not any("Reclaim the memory" in line for line in lines)
    assert len(k.kmemleak) == 0


def test_clear_when_disabled_frees_the_kept_metadata() -> None:
    k = quiet_kernel()
    p = k.kzalloc(64)
    k.sleep(6)
    scan(k)
    log(k)
    k.write(P, "off")
    assert log(k) == [
        "kmemleak: Kernel memory leak detector disabled",
        'kmemleak: Kmemleak disabled without freeing internal data. Reclaim the memory '
        'with "echo clear > /sys/kernel/debug/kmemleak".',
    ]
    assert len(k.kmemleak) > 0
    assert headers(k.read(P)) == [header(k, p, 64)]  # still readable after disable
    k.write(P, "clear")  # accepted although disabled: reclaim
    assert len(k.kmemleak) == 0
    assert k.read(P) == ""


# ------------------------------------------------------------ prefix matching
def test_prefix_offset_means_off() -> None:
    k = quiet_kernel()
    k.write(P, "offset")
    assert not k.kmemleak.kmemleak_enabled
    assert "kmemleak: Kernel memory leak detector disabled" in log(k)


def test_prefix_scan_onion_means_scan_on() -> None:
    k = quiet_kernel()
    before = k.kmemleak.scans_done
    k.write(P, "scan=onion")
    assert k.kmemleak.scan_thread_running
    assert k.kmemleak.scans_done == before + 1  # a restarted thread scans at once
    assert "kmemleak: Automatic memory scanning thread started" in log(k)


def test_prefix_stack_on_x_means_stack_on() -> None:
    k = quiet_kernel()
    k.write(P, "stack=off")
    k.write(P, "stack=onX")
    assert k.kmemleak.kmemleak_stack_scan


def test_prefix_scanner_means_scan() -> None:
    k = quiet_kernel()
    before = k.kmemleak.scans_done
    k.write(P, "scanner")
    assert k.kmemleak.scans_done == before + 1
    assert not k.kmemleak.scan_thread_running  # a one-off scan, not the thread


@pytest.mark.parametrize("text", ["scan=abc", "scan=", "scan=\n", "scan=10s", "scan=0x",
                                  "scan=-1", "scan=09", "scan=1\n\n", "scan= 1"])
def test_scan_equals_garbage_is_einval_and_changes_nothing(text: str) -> None:
    k = Kernel()
    kl = k.kmemleak
    state = (kl.scan_thread_running, kl.next_scan_jiffies, kl.jiffies_scan_wait, kl.scans_done)
    k.dmesg(clear=True)
    assert write_errno(k, text) == errno.EINVAL
    assert (kl.scan_thread_running, kl.next_scan_jiffies, kl.jiffies_scan_wait,
            kl.scans_done) == state
    assert log(k) == []  # the thread was not even stopped


def test_scan_equals_overflow_returns_erange_and_changes_nothing() -> None:
    # kstrtouint's own error is returned: -ERANGE for a value above UINT_MAX.
    k = Kernel()
    kl = k.kmemleak
    state = (kl.scan_thread_running, kl.next_scan_jiffies, kl.jiffies_scan_wait)
    assert write_errno(k, "scan=4294967296") == errno.ERANGE
    assert (kl.scan_thread_running, kl.next_scan_jiffies, kl.jiffies_scan_wait) == state


def test_only_the_first_63_bytes_are_looked_at() -> None:
    k = quiet_kernel()
    # 64 bytes: the kernel copies 63, so the last digit is lost: octal 01 (not 017).
    text = "scan=" + "0" * 57 + "17"
    assert len(text) == 64
    k.write(P, text)
    assert k.kmemleak.jiffies_scan_wait == 1 * k.hz
    # A command starting at byte 63 is never seen: only the padding is, so EINVAL.
    assert write_errno(k, " " * 63 + "scan") == errno.EINVAL


def test_unknown_command_is_einval() -> None:
    k = quiet_kernel()
    for text in ("bogus", "Scan", " scan", "stack=", "stack=maybe", "dump", "\n", "sc"):
        assert write_errno(k, text) == errno.EINVAL, text
    assert k.kmemleak.kmemleak_enabled


# ------------------------------------------------------------------------ off
@pytest.mark.parametrize("text", ["scan", "scan=on", "scan=off", "scan=10", "scan=bad",
                                  "stack=on", "stack=off", "dump=0x1000", "off", "bogus"])
def test_after_off_every_write_but_clear_is_eperm(text: str) -> None:
    k = quiet_kernel()
    k.write(P, "off")
    assert write_errno(k, text) == errno.EPERM
    k.write(P, "clear")  # still accepted


def test_off_stops_the_scan_thread_and_tracking() -> None:
    k = Kernel()
    k.dmesg(clear=True)
    k.write(P, "off")
    assert log(k) == ["kmemleak: Kernel memory leak detector disabled",
                      "kmemleak: Automatic memory scanning thread ended"]
    p = k.kmalloc(64)
    assert k.kmemleak.find(p) is None
    k.sleep(3600)
    assert k.kmemleak.scans_done == 0


# ---------------------------------------------------------------------- stack
def test_stack_off_makes_a_block_held_only_on_a_stack_a_leak() -> None:
    k = quiet_kernel()
    p = k.kmalloc(128)
    with k.stack_frame(2) as frame:
        k.store(frame.slot(1), p)  # the word stays on the stack after the frame returns
    k.sleep(6)
    scan(k)
    scan(k)
    assert k.read(P) == ""  # stack=on (the default): the stack word is a reference
    k.write(P, "stack=off")
    assert not k.kmemleak.kmemleak_stack_scan
    scan(k)
    # White for the first time: its checksum was never taken while it was gray, so
    # the checksum pass spares it once (spec 5.7); the next scan reports it.
    assert k.read(P) == ""
    scan(k)
    assert headers(k.read(P)) == [header(k, p, 128)]
    k.write(P, "stack=on")
    scan(k)
    # Referenced again: no longer listed, although the REPORTED flag stays.
    assert k.read(P) == ""
    obj = k.kmemleak.find(p)
    assert obj is not None
    assert k.kmemleak.record(obj).reported


# ----------------------------------------------------------------- scan thread
def test_first_thread_waits_60s_after_start_then_scans_every_600s() -> None:
    k = Kernel()
    started = stamp_of(k, "Automatic memory scanning thread started")
    kl = k.kmemleak
    k.sleep(started + 60 - k.uptime - 0.001)
    assert kl.scans_done == 0
    k.sleep(0.001)
    assert kl.scans_done == 1
    k.sleep(599.999)
    assert kl.scans_done == 1
    k.sleep(0.001)
    assert kl.scans_done == 2
    k.sleep(1200)
    assert kl.scans_done == 4


def test_scan_on_restarts_a_thread_that_scans_immediately() -> None:
    k = Kernel()
    k.write(P, "scan=off")
    assert not k.kmemleak.scan_thread_running
    assert log(k)[-1] == "kmemleak: Automatic memory scanning thread ended"
    k.write(P, "scan=on")
    assert k.kmemleak.scans_done == 1  # no 60 s wait for a later instance
    assert log(k) == ["kmemleak: Automatic memory scanning thread started"]
    k.sleep(599.999)
    assert k.kmemleak.scans_done == 1
    k.sleep(0.001)
    assert k.kmemleak.scans_done == 2


def test_scan_on_while_running_does_nothing() -> None:
    k = Kernel()
    k.dmesg(clear=True)
    k.write(P, "scan=on")
    assert k.kmemleak.scans_done == 0
    assert log(k) == []


def test_scan_off_stops_automatic_scans() -> None:
    k = Kernel()
    k.write(P, "scan=off")
    k.sleep(3600)
    assert k.kmemleak.scans_done == 0


@pytest.mark.parametrize("text", ["scan=30", "scan=0x1e", "scan=0X1E", "scan=036", "scan=30\n",
                                  "scan=+30"])
def test_scan_secs_sets_the_period_and_restarts_the_thread(text: str) -> None:
    k = Kernel()
    k.dmesg(clear=True)
    k.write(P, text)
    kl = k.kmemleak
    assert kl.jiffies_scan_wait == 30 * k.hz
    assert log(k) == ["kmemleak: Automatic memory scanning thread ended",
                      "kmemleak: Automatic memory scanning thread started"]
    assert kl.scans_done == 1  # the new thread scans at once
    k.sleep(29.999)
    assert kl.scans_done == 1
    k.sleep(0.001)
    assert kl.scans_done == 2


def test_scan_zero_only_stops_the_thread() -> None:
    k = Kernel()
    k.write(P, "scan=0")
    kl = k.kmemleak
    assert not kl.scan_thread_running
    assert kl.jiffies_scan_wait == 600 * k.hz  # the period is left alone
    k.sleep(3600)
    assert kl.scans_done == 0


def test_scan_secs_wraps_in_32_bit_unsigned_long() -> None:
    # secs * MSEC_PER_SEC is computed in unsigned long: 4294968 s is 704 ms on i386.
    k = Kernel(arch="i386")
    k.write(P, "scan=4294968")
    assert k.kmemleak.jiffies_scan_wait == 704 * k.hz // 1000


def test_scan_is_synchronous() -> None:
    k = quiet_kernel()
    p = k.kzalloc(16)
    k.sleep(6)
    k.write(P, "scan")
    assert k.kmemleak.scans_done == 1
    assert headers(k.read(P)) == [header(k, p, 16)]  # done by the time write returns
    assert log(k) == [SUMMARY.format(1)]


# ----------------------------------------------------------------------- dump
def dump_lines(k: Kernel, ptr: int, size: int, flags: int, checksum: int) -> list[str]:
    return [
        f"kmemleak: Object 0x{ptr:016x} (size {size}):",
        'kmemleak:   comm "bash", pid 1024, jiffies 4294668796',
        "kmemleak:   min_count = 1",
        "kmemleak:   count = 0",
        f"kmemleak:   flags = 0x{flags:x}",
        f"kmemleak:   checksum = {checksum}",
        "kmemleak:   backtrace:",
        " __kmalloc_cache_noprof+0x2f1/0x3a0",
    ]


def test_dump_finds_an_object_by_alias_and_logs_7_6_format() -> None:
    k = quiet_kernel(cmdline="slub_debug=P")
    p = k.kmalloc(32)
    k.write(P, f"dump=0x{p + 20:x}")  # an interior address finds the object
    assert log(k) == dump_lines(k, p, 32, 0x1, 0)
    k.sleep(6)
    scan(k)
    scan(k)
    log(k)
    k.write(P, f"dump={p}\n")  # decimal, with echo's newline
    # REPORTED is now set; the checksum is printed in decimal (0x362c6625 in records).
    assert log(k) == dump_lines(k, p, 32, 0x3, 908879397)
    assert "backtrace (crc 362c6625):" in k.read(P)
    k.write(P, f"dump=0{p:o}")  # leading 0: octal
    assert log(k) == dump_lines(k, p, 32, 0x3, 908879397)
    assert headers(k.read(P)) == [header(k, p, 32)]  # the dump went to the log only


def test_dump_searches_the_percpu_tree_too() -> None:
    k = quiet_kernel()
    cookie = k.alloc_percpu(16)
    k.write(P, f"dump=0x{cookie:x}")
    lines = log(k)
    assert lines[0] == f"kmemleak: Object (percpu) 0x{cookie:08x} (size 16):"
    assert lines[4] == "kmemleak:   flags = 0x21"  # ALLOCATED | PERCPU


def test_dump_of_an_unknown_address_is_einval_and_logged() -> None:
    k = quiet_kernel()
    assert write_errno(k, "dump=0x1234") == errno.EINVAL
    assert log(k) == ["kmemleak: Unknown object at 0x00001234"]
    assert write_errno(k, "dump=xyz") == errno.EINVAL  # a parse error logs nothing
    assert log(k) == []


# ----------------------------------------------------------------------- read
def test_read_lists_reported_unreferenced_objects_in_allocation_order_without_scanning() -> None:
    k = quiet_kernel()
    a = k.kzalloc(32)
    b = k.kzalloc(64)
    c = k.kzalloc(32)  # same slab as a: its address is below b's or above both
    assert sorted([a, b, c]) != [a, b, c]
    k.sleep(1)
    scan(k)
    assert k.read(P) == ""  # white but too young: not reported
    k.sleep(5)
    assert k.read(P) == ""  # old enough now, but a read does not scan
    assert k.kmemleak.scans_done == 1
    scan(k)
    assert headers(k.read(P)) == [header(k, a, 32), header(k, b, 64), header(k, c, 32)]
    assert k.kmemleak.scans_done == 2

    holder = k.define_static("holder", 8)
    k.store(holder, b)
    assert len(headers(k.read(P))) == 3  # colours change only when a scan runs
    scan(k)
    assert headers(k.read(P)) == [header(k, a, 32), header(k, c, 32)]
    assert log(k) == [SUMMARY.format(3)]  # b is not reported twice, nor un-reported
    k.kfree(c)
    assert headers(k.read(P)) == [header(k, a, 32)]  # freed: gone at once


# -------------------------------------------------------------------- verbose
def test_verbose_prints_each_new_record_to_the_log_with_the_prefix() -> None:
    k = quiet_kernel(cmdline="slub_debug=P")
    assert k.read(VERBOSE) == "N\n"
    k.write(VERBOSE, "1")
    assert k.read(VERBOSE) == "Y\n"
    k.kzalloc(8)
    k.kmalloc(32)
    k.sleep(6)
    scan(k)
    first = k.read(P).splitlines()
    assert log(k) == [f"kmemleak: {line}" for line in first] + [SUMMARY.format(1)]
    assert "kmemleak:     00 00 00 00 00 00 00 00" + " " * 26 + "........" in \
        [f"kmemleak: {line}" for line in first]
    scan(k)
    second = k.read(P).splitlines()[len(first):]  # only the new record is printed
    assert log(k) == [f"kmemleak: {line}" for line in second] + [SUMMARY.format(1)]
    scan(k)
    assert log(k) == []  # nothing new: no record, no summary


def test_verbose_off_prints_only_the_summary() -> None:
    k = quiet_kernel()
    k.kzalloc(8)
    k.sleep(6)
    scan(k)
    assert log(k) == [SUMMARY.format(1)]


def test_verbose_boot_parameter() -> None:
    k = quiet_kernel(cmdline="kmemleak.verbose=1")
    assert k.read(VERBOSE) == "Y\n"
    k.kzalloc(8)
    k.sleep(6)
    scan(k)
    assert log(k)[0].startswith("kmemleak: unreferenced object 0x")


def test_verbose_rejects_other_values() -> None:
    k = Kernel()
    with pytest.raises(OSError) as exc:
        k.write(VERBOSE, "2")
    assert exc.value.errno == errno.EINVAL


def test_verbose_is_a_bool_parameter() -> None:
    k = Kernel()
    assert k.read(VERBOSE) == "N\n"
    k.write(VERBOSE, "Y")
    assert k.read(VERBOSE) == "Y\n"


def test_summary_line_has_a_fixed_plural_and_is_absent_for_zero() -> None:
    k = quiet_kernel()
    k.kzalloc(8)
    k.sleep(6)
    scan(k)
    assert log(k) == ["kmemleak: 1 new suspected memory leaks (see /sys/kernel/debug/kmemleak)"]
    scan(k)
    assert log(k) == []
    for _ in range(3):
        k.kzalloc(8)
    k.sleep(6)
    scan(k)
    assert log(k) == ["kmemleak: 3 new suspected memory leaks (see /sys/kernel/debug/kmemleak)"]


# ----------------------------------------------------------------------- boot
def test_boot_kmemleak_off() -> None:
    k = Kernel(cmdline="kmemleak=off")
    lines = log(k)
    assert "kmemleak: Kernel memory leak detector disabled" in lines
    assert not any("initialized" in line or "thread started" in line for line in lines)
    assert not k.kmemleak.kmemleak_enabled
    assert len(k.kmemleak) == 0  # the cleanup work freed the early objects
    k.kmalloc(64)
    k.sleep(3600)
    assert k.kmemleak.scans_done == 0
    assert k.read(P) == ""  # the file exists (late init created it)
    assert write_errno(k, "scan") == errno.EPERM


def test_boot_default_off_config() -> None:
    k = Kernel(config={"CONFIG_DEBUG_KMEMLEAK_DEFAULT_OFF": True})
    lines = log(k)
    assert "kmemleak: Kernel memory leak detector disabled" in lines
    assert not any("initialized" in line for line in lines)
    assert not k.kmemleak.kmemleak_enabled
    assert write_errno(k, "scan") == errno.EPERM


def test_boot_default_off_config_overridden_by_kmemleak_on() -> None:
    k = Kernel(cmdline="kmemleak=on", config={"CONFIG_DEBUG_KMEMLEAK_DEFAULT_OFF": True})
    lines = log(k)
    assert "kmemleak: Kernel memory leak detector disabled" not in lines
    assert "kmemleak: Automatic memory scanning thread started" in lines
    assert k.kmemleak.kmemleak_enabled
    p = k.kzalloc(8)
    k.sleep(6)
    scan(k)
    assert headers(k.read(P)) == [header(k, p, 8)]


def test_boot_without_auto_scan_has_no_automatic_scans() -> None:
    k = Kernel(config={"CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN": False})
    lines = log(k)
    assert not any("thread started" in line for line in lines)
    assert any(line.startswith("kmemleak: Kernel memory leak detector initialized") for line in lines)
    k.sleep(3600)
    assert k.kmemleak.scans_done == 0
    # first_run is IS_ENABLED(AUTO_SCAN): the first thread, started by hand, scans at once.
    k.write(P, "scan=on")
    assert k.kmemleak.scans_done == 1
    k.sleep(600)
    assert k.kmemleak.scans_done == 2


def test_boot_lines() -> None:
    k = Kernel()
    lines = [line for line in log(k) if line.startswith("kmemleak: ")]
    m = re.fullmatch(r"kmemleak: Kernel memory leak detector initialized "
                     r"\(mem pool available: (\d+)\)", lines[0])
    assert m is not None
    # Real boot logs print the thread's line just after the initcall's.
    assert lines == [lines[0], "kmemleak: Automatic memory scanning thread started"]
    # N is what the early boot allocations left of CONFIG_DEBUG_KMEMLEAK_MEM_POOL_SIZE.
    n = int(m.group(1))
    small = Kernel(config={"CONFIG_DEBUG_KMEMLEAK_MEM_POOL_SIZE": 200})
    m2 = re.search(r"mem pool available: (\d+)\)", small.dmesg())
    assert m2 is not None
    assert 0 < int(m2.group(1)) < 200
    assert 16000 - n == 200 - int(m2.group(1))
