"""The teaching shell, driven as a user would: scripted (``-c``, stdin) and at a real terminal.

Outputs are compared with the real tools' formats: kmod's ``lsmod`` and error
lines, procps ``free``, ``/proc/meminfo`` (``fs/proc/meminfo.c``),
``/proc/slabinfo`` 2.1 (``mm/slab_common.c``), the OOM killer's report
(``mm/oom_kill.c``) and bash's own error wording.
"""

from __future__ import annotations

import io
import os
import re
import select
import sys
import time
from pathlib import Path

import pytest

from kmemsim import Kernel
from kmemsim.cli import main
from kmemsim.oom import userspace
from kmemsim.procfs import meminfo
from kmemsim.shell import PROMPT, Shell, parse, tokenize
from kmemsim.workloads import slow_leak

KMEMLEAK = "/sys/kernel/debug/kmemleak"


def shell_c(capsys: pytest.CaptureFixture[str], cmds: str, *extra: str
            ) -> tuple[int, str, str]:
    status = main(["shell", *extra, "-c", cmds])
    cap = capsys.readouterr()
    return status, cap.out, cap.err


def kmalloc_line() -> int:
    """The line of slow_leak.py whose kmalloc leaks."""
    src = Path(slow_leak.__file__).read_text().splitlines()
    return next(i for i, line in enumerate(src, start=1) if "rec = k.kmalloc(" in line)


# ------------------------------------------------------------------- scripted mode
def test_scripted_c_runs_commands_without_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = shell_c(capsys, "lsmod; modprobe article_leak; lsmod")
    assert status == 0
    assert err == ""
    assert PROMPT not in out
    lines = out.splitlines()
    assert lines[0] == lines[1] == "Module                  Size  Used by"
    # kmod: "%-19s %8ld  %d"
    assert re.fullmatch(r"article_leak {8}[ \d]{8}  0", lines[2]), lines[2]


def test_scripted_stdin(monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("echo one\nfoo\necho two\nexit 4\necho no\n"))
    assert main(["shell"]) == 4
    cap = capsys.readouterr()
    assert cap.out == "one\ntwo\n"
    assert cap.err == "bash: foo: command not found\n"


def test_echo_mode_makes_a_transcript(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = shell_c(capsys, "# a note\necho hi", "--echo")
    assert out == f"# a note\n{PROMPT}echo hi\nhi\n"


def test_tokenizer_and_parser() -> None:
    assert tokenize("echo \"a;b\" 'c|d'>x") == [("word", "echo"), ("word", "a;b"),
                                                 ("word", "c|d"), ("op", ">"), ("word", "x")]
    prog = parse("dmesg | grep x > /dev/null; false || echo y && echo z")
    assert [c for c, _ in prog] == [None, ";", "||", "&&"]
    assert prog[0][1][1].redirects == [(">", "/dev/null")]


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize(("cmd", "message", "status"), [
    ("foo", "bash: foo: command not found", 127),
    ("cat /x", "cat: /x: No such file or directory", 1),
    ("cat /proc", "cat: /proc: Is a directory", 1),
    ("echo bogus > " + KMEMLEAK, "bash: echo: write error: Invalid argument", 1),
    ("echo x > /proc/meminfo", "bash: echo: write error: Input/output error", 1),
    ("echo x > /proc/cmdline", "bash: /proc/cmdline: Permission denied", 1),
    ("echo x > /nope/file", "bash: /nope/file: No such file or directory", 1),
    ("echo 5000 > /proc/812/oom_score_adj", "bash: echo: write error: Invalid argument", 1),
    ("rmmod foo", "rmmod: ERROR: Module foo is not currently loaded", 1),
    ("modprobe foo", "modprobe: FATAL: Module foo not found in directory "
                     "/lib/modules/6.16.0-kmemsim", 1),
    ("insmod /none.py", "insmod: ERROR: could not load module /none.py: No such file or "
                        "directory", 1),
    ("sleep", "sleep: missing operand", 1),
    ("sleep abc", "sleep: invalid time interval 'abc'", 1),
    ("echo hi |", "bash: syntax error near unexpected token `newline'", 2),
    ("; echo", "bash: syntax error near unexpected token `;'", 2),
    ("kill 4242", "bash: kill: (4242) - No such process", 1),
    ("addr2line -e nothing.ko 0x10", "addr2line: 'nothing.ko': No such file", 1),
    ("explain 0x1234", "explain: no tracked object contains 0x1234", 1),
])
def test_errors_use_the_real_wording_and_the_session_goes_on(
        capsys: pytest.CaptureFixture[str], cmd: str, message: str, status: int) -> None:
    _st, out, err = shell_c(capsys, f"{cmd}\necho still here")
    assert err.splitlines()[0] == message
    assert out.endswith("still here\n")
    sh = Shell(start_userspace=True)
    sh.run(cmd)
    assert sh.status == status


def test_refused_debugfs_write_when_kmemleak_is_off(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = shell_c(capsys, f"echo off > {KMEMLEAK}; echo scan > {KMEMLEAK}")
    assert err == "bash: echo: write error: Operation not permitted\n"


def test_insmod_python_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "hello.py"
    good.write_text("from kmemsim import Module\n\n"
                    "class Hello(Module):\n"
                    "    name = 'hello'\n"
                    "    def init(self) -> int:\n"
                    "        self.k.kmalloc(64)\n"
                    "        self.pr_info('hello: loaded')\n"
                    "        return 0\n")
    bad = tmp_path / "bad.py"
    bad.write_text("this is not python\n")
    failing = tmp_path / "failing.py"
    failing.write_text("from kmemsim import Module\n\nclass F(Module):\n"
                       "    def init(self) -> int:\n        return -12\n")
    _status, out, err = shell_c(capsys, f"insmod {good}; lsmod; dmesg | tail -n 1; "
                                       f"insmod {good}; insmod {bad}; insmod {failing}")
    assert "hello               " in out
    assert out.endswith("hello: loaded\n")
    assert err.splitlines() == [
        f"insmod: ERROR: could not insert module {good}: File exists",
        f"insmod: ERROR: could not insert module {bad}: Invalid module format",
        f"insmod: ERROR: could not insert module {failing}: Cannot allocate memory",
    ]


def test_module_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, err = shell_c(capsys, "modprobe slow_leak size=abc; modprobe slow_leak bogus=1 "
                                  "count=2; dmesg | grep slow_leak")
    assert err == "modprobe: ERROR: could not insert 'slow_leak': Invalid argument\n"
    assert "slow_leak: `abc' invalid for parameter `size'" in out
    assert "slow_leak: unknown parameter 'bogus' ignored" in out
    assert "2 status records of 1024 bytes each" in out


# ------------------------------------------------------------------- /proc files
MEMINFO_LINE = re.compile(r"^([A-Za-z0-9_()]+):( +)(\d+)( kB)?$")


def test_meminfo_layout_and_fields() -> None:
    k = Kernel(cmdline="mem=256M")
    userspace(k).start()
    text = k.read("/proc/meminfo")
    names = []
    for line in text.splitlines():
        m = MEMINFO_LINE.match(line)
        assert m, line
        names.append(m.group(1))
        if m.group(1) != "HardwareCorrupted" and len(m.group(3)) <= 8:
            assert len(line.removesuffix(" kB")) == 24, line  # "%-16s%8lu"
    assert names[:6] == ["MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached",
                         "SwapCached"]
    for field in ("Slab", "SReclaimable", "SUnreclaim", "KernelStack", "PageTables",
                  "VmallocTotal", "VmallocUsed", "VmallocChunk", "Percpu", "AnonPages",
                  "Committed_AS", "HugePages_Total", "Hugepagesize", "DirectMap4k"):
        assert field in names
    assert names.index("SUnreclaim") < names.index("KernelStack") < names.index("Percpu")
    assert "VmallocTotal:   34359738367 kB" in text
    assert "HugePages_Total:       0\n" in text


def test_meminfo_is_consistent_with_the_allocators() -> None:
    k = Kernel()
    m = meminfo(k)
    pa = k.page_allocator
    assert m["MemTotal"] == pa.total_pages * 4
    assert m["MemFree"] == pa.free_pages * 4
    assert m["KernelStack"] == len(k.tasks) * k.arch.thread_size // 1024
    assert m["Percpu"] == k.ncpus * 64
    charged = pa.charged_pages  # kmemleak's own metadata: kmemleak_object slab pages
    ptrs = [k.kmalloc(2048) for _ in range(160)]
    after = meminfo(k)
    slab = k.slab.caches["kmalloc-2048"]
    assert after["SUnreclaim"] - m["SUnreclaim"] == (
        (len(slab.slabs) << slab.order) + pa.charged_pages - charged) * 4
    assert after["Slab"] == after["SUnreclaim"]
    assert after["MemFree"] < m["MemFree"]
    v = k.vmalloc(5 * 4096)
    assert meminfo(k)["VmallocUsed"] == m["VmallocUsed"] + 20
    for p in ptrs:
        k.kfree(p)
    k.vfree(v)
    assert meminfo(k)["SUnreclaim"] <= after["SUnreclaim"]


def test_meminfo_per_arch_lines() -> None:
    i386 = meminfo(Kernel(arch="i386"))
    assert "HighTotal" in i386
    assert "DirectMap4M" in i386
    assert "AnonHugePages" not in i386
    assert i386["Hugepagesize"] == 4096
    arm = meminfo(Kernel(arch="arm64"))
    assert "DirectMap4k" not in arm
    assert "HighTotal" not in arm


def test_slab_grows_and_memfree_falls_with_the_slow_leak(
        capsys: pytest.CaptureFixture[str]) -> None:
    grep = "grep -E '^(MemFree|Slab):' /proc/meminfo"
    _, out, _ = shell_c(capsys, f"{grep}; modprobe slow_leak; sleep 100; {grep}; "
                                f"sleep 100; {grep}")
    values = [int(x) for x in re.findall(r"(\d+) kB", out)]
    free = values[0::2]
    slab = values[1::2]
    assert free[0] > free[1] > free[2]
    assert slab[0] < slab[1] < slab[2]
    assert slab[2] - slab[1] >= 100 * 4  # 4 KB a second


SLABINFO_LINE = re.compile(r"^(\S+) +(\d+) +(\d+) +(\d+) +(\d+) +(\d+) : tunables +0 +0 +0 "
                           r": slabdata +(\d+) +(\d+) +0$")


def test_slabinfo_format() -> None:
    k = Kernel()
    p = k.kmalloc(1000)
    lines = k.read("/proc/slabinfo").splitlines()
    assert lines[0] == "slabinfo - version: 2.1"
    assert lines[1] == ("# name            <active_objs> <num_objs> <objsize> <objperslab> "
                        "<pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : "
                        "slabdata <active_slabs> <num_slabs> <sharedavail>")
    rows = {}
    for line in lines[2:]:
        m = SLABINFO_LINE.match(line)
        assert m, line
        assert len(line.split(" : ")[0]) == 17 + 1 + 6 + 1 + 6 + 1 + 6 + 1 + 4 + 1 + 4
        rows[m.group(1)] = [int(x) for x in m.groups()[1:]]
    active, num, objsize, perslab, pages, aslabs, nslabs = rows["kmalloc-1k"]
    cache = k.slab.cache_of(p)
    assert cache is not None
    assert (objsize, perslab, pages) == (cache.size, cache.objects_per_slab, 1 << cache.order)
    assert num == nslabs * perslab
    assert aslabs == nslabs == 1
    assert 1 <= active <= num
    assert lines[-1].startswith("kmem_cache ")  # slab_caches: newest first


def test_proc_pid_files_and_oom_score_adj(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = shell_c(capsys, "cat /proc/812/comm /proc/812/oom_score_adj; "
                                "grep VmRSS /proc/812/status; "
                                "echo -500 > /proc/812/oom_score_adj; cat /proc/812/oom_score_adj")
    lines = out.splitlines()
    assert lines[:2] == ["mysqld", "0"]
    assert re.fullmatch(r"VmRSS:\t +\d+ kB", lines[2])
    assert lines[3] == "-500"


# ------------------------------------------------------------------- the tools
def test_free_layout(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = shell_c(capsys, "free; free -m", "--cmdline", "mem=256M")
    lines = out.splitlines()
    header = "               total        used        free      shared  buff/cache   available"
    assert lines[0] == lines[3] == header
    k_row = lines[1].split()
    m_row = lines[4].split()
    assert k_row[0] == "Mem:"
    assert lines[1].startswith("Mem:     ")
    total, used, free, shared, cache, avail = map(int, k_row[1:])
    assert used == total - avail  # procps 4: used = MemTotal - MemAvailable
    assert [int(x) for x in m_row[1:]] == [v * 1024 // 1048576
                                           for v in (total, used, free, shared, cache, avail)]
    assert lines[2] == "Swap:              0           0           0"


def test_dmesg_clear_and_sleep_runs_the_scan_thread(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = shell_c(capsys, "dmesg -c > /dev/null; dmesg; modprobe article_leak; sleep 61; "
                                "dmesg -c; dmesg")
    assert out.splitlines()[0].endswith("allocated 8 kmalloc blocks, 5 vmalloc blocks and 10 "
                                        "list nodes")
    assert re.search(r"kmemleak: \d+ new suspected memory leaks", out)
    assert out.endswith("(see /sys/kernel/debug/kmemleak)\n")


def test_kmemleak_addr2line_and_explain(capsys: pytest.CaptureFixture[str]) -> None:
    sh = Shell()
    sh.run(f"modprobe article_leak; sleep 10; echo scan > {KMEMLEAK}; sleep 5; "
           f"echo scan > {KMEMLEAK}")
    report = sh.run(f"cat {KMEMLEAK}")
    assert report.startswith("unreferenced object 0x")
    frame = re.search(r"(article_leak_init\+0x[0-9a-f]+/0x[0-9a-f]+) \[article_leak\]", report)
    assert frame is not None
    addr = sh.k.symbols  # noqa: F841 - symbols exist; the address form is tested below
    out = sh.run(f"addr2line -f -e article_leak.ko {frame.group(1)}")
    name, loc = out.splitlines()
    assert name == "article_leak_init"
    assert re.fullmatch(r".*article\.py:\d+", loc)
    ptr = report.split()[2]
    assert "Verdict: true positive" in sh.run(f"explain {ptr}")
    assert sh.run("addr2line -e article_leak.ko 0x10") == "??:0\n"


def test_text_tools(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = shell_c(capsys, "grep -c kB /proc/meminfo; head -n 2 /proc/meminfo | wc -l; "
                                "grep -i memtotal /proc/meminfo | grep -o '[0-9]*'; "
                                "tail -n 1 /proc/slabinfo | grep -v kmem_cache || echo none; "
                                "echo 0x10 | xargs echo addr; date")
    lines = out.splitlines()
    assert int(lines[0]) > 40
    assert lines[1] == "2"
    assert lines[2] == "983040"
    assert lines[3] == "none"
    assert lines[4] == "addr 0x10"
    assert lines[5] == "Wed Jan  1 00:00:01 UTC 2025"


def test_watch_samples_as_time_passes(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = shell_c(capsys, "watch -n 60 --count 3 'grep MemFree /proc/meminfo'")
    assert status == 0
    titles = [line for line in out.splitlines() if line.startswith("Every")]
    assert [re.findall(r"\d\d:\d\d:\d\d", t)[0] for t in titles] == [
        "00:00:01", "00:01:01", "00:02:01"]
    assert titles[0].startswith("Every 60.0s: grep MemFree /proc/meminfo")
    assert out.count("MemFree:") == 3
    _, _, err = shell_c(capsys, "watch free")
    assert "--count" in err


# ------------------------------------------------------------------- OOM
OOM_INVOKED = re.compile(r"\] (\S+) invoked oom-killer: gfp_mask=0x[0-9a-f]+\(\S+\), order=0, "
                         r"oom_score_adj=-?\d+$")
OOM_KILLED = re.compile(r"\] Out of memory: Killed process (\d+) \((\S+)\) total-vm:\d+kB, "
                        r"anon-rss:\d+kB, file-rss:\d+kB, shmem-rss:\d+kB, UID:\d+ "
                        r"pgtables:\d+kB oom_score_adj:-?\d+$")


def test_oom_killer_report_and_choice() -> None:
    sh = Shell(Kernel(cmdline="mem=128M"))
    sh.run("modprobe slow_leak size=4096 count=8; sleep 900")
    log = sh.k.dmesg().splitlines()
    invoked = [m for line in log if (m := OOM_INVOKED.search(line))]
    killed = [m for line in log if (m := OOM_KILLED.search(line))]
    assert len(invoked) == len(killed) == 1
    assert killed[0].group(2) == "mysqld"
    assert killed[0].group(1) == "812"
    i = next(n for n, line in enumerate(log) if "Tasks state" in line)
    assert log[i + 1].endswith("[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file "
                               "rss_shmem pgtables_bytes swapents oom_score_adj name")
    row = re.compile(r"\] \[ *\d+\] +\d+ +\d+ +\d+ +\d+ +\d+ +\d+ +\d+ +\d+ +\d+ +-?\d+ \S+$")
    assert row.search(log[i + 2])
    assert any("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,"
               "global_oom,task_memcg=/system.slice/mysql.service,task=mysqld,pid=812,uid=999"
               in line for line in log)
    assert any(line.endswith("oom_reaper: reaped process 812 (mysqld), now anon-rss:0kB, "
                             "file-rss:0kB, shmem-rss:0kB") for line in log)
    assert "cat: /proc/812/status: No such file or directory" in sh.run("cat /proc/812/status")


def test_oom_score_adj_protects_a_process() -> None:
    sh = Shell(Kernel(cmdline="mem=128M"))
    sh.run("echo -1000 > /proc/812/oom_score_adj; modprobe slow_leak size=4096 count=8; "
           "sleep 900")
    assert "Killed process 1010 (python3)" in sh.k.dmesg()
    assert 812 in userspace(sh.k).processes


def test_killing_processes_does_not_return_kernel_leaked_memory() -> None:
    sh = Shell(Kernel(cmdline="mem=128M"))
    sh.run("modprobe slow_leak size=4096 count=8; sleep 300; rmmod slow_leak")
    before = meminfo(sh.k)
    proc = userspace(sh.k).processes[1010]
    sh.run("kill 1010; kill -9 881")
    after = meminfo(sh.k)
    assert after["SUnreclaim"] == before["SUnreclaim"]  # the leak stays
    assert after["MemFree"] - before["MemFree"] >= (proc.anon + 1) * 4
    assert after["AnonPages"] < before["AnonPages"]


def test_oom_without_killable_processes_panics() -> None:
    k = Kernel(cmdline="mem=128M")  # no user space: only the kernel thread allocates
    module, _, _ = slow_leak.with_parameters(slow_leak.SlowLeakModule, k,
                                             {"size": "4096", "count": "256"})
    k.insmod(module)
    k.sleep(120)
    log = k.dmesg()
    assert "slow_leak invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0" in log
    assert "Out of memory and no killable processes..." in log
    assert log.rstrip().endswith("Kernel panic - not syncing: System is deadlocked on memory")


# ------------------------------------------------------------------- the lesson
def test_lesson(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shell", "--lesson"]) == 0
    out = capsys.readouterr().out
    assert f"{PROMPT}modprobe slow_leak size=4096 count=8\n" in out
    assert out.count("Every 120.0s:") == 11
    assert "mysqld invoked oom-killer" in out
    assert "Killed process 812 (mysqld)" in out
    assert "kmalloc-4k " in out
    assert "unreferenced object 0x" in out
    assert "leak_thread+0x" in out
    assert "[slow_leak]" in out
    assert re.search(rf"^leak_thread\n.*slow_leak\.py:{kmalloc_line()}$", out, re.M)
    assert "Verdict: true positive: unreachable." in out
    assert "bash:" not in out
    assert "ERROR" not in out


# ------------------------------------------------------------------- a real terminal
def _read_until(fd: int, pattern: str, timeout: float = 20.0) -> str:
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            if re.search(pattern, buf.decode("utf-8", "replace")):
                return buf.decode("utf-8", "replace")
    raise AssertionError(f"{pattern!r} not seen; got {buf.decode('utf-8', 'replace')!r}")


def test_interactive_terminal() -> None:
    pty = pytest.importorskip("pty")
    try:
        import readline  # noqa: F401
        has_readline = True
    except ImportError:  # pragma: no cover
        has_readline = False
    env = dict(os.environ, TERM="xterm", INPUTRC="/dev/null")
    pid, fd = pty.fork()
    if pid == 0:  # the child: a kmemsim shell on the terminal
        os.execve(sys.executable, [sys.executable, "-m", "kmemsim", "shell"], env)
    try:
        _read_until(fd, re.escape(PROMPT))
        os.write(fd, b"echo hello kmemsim\r")
        _read_until(fd, r"hello kmemsim\r?\n.*" + re.escape(PROMPT))
        if has_readline:
            os.write(fd, b"\x1b[A\r")  # up arrow: the last command again
            _read_until(fd, r"hello kmemsim\r?\n.*" + re.escape(PROMPT))
        os.write(fd, b"sleep 100000\r")
        time.sleep(0.5)
        os.write(fd, b"\x03")  # Ctrl-C stops the sleep where simulated time got to
        _read_until(fd, re.escape(PROMPT), timeout=10)
        os.write(fd, b"date\r")
        seen = _read_until(fd, r"UTC 2025\r?\n")
        stamp = re.findall(r"Jan +(\d+) (\d\d):(\d\d):(\d\d) UTC", seen)[-1]
        elapsed = ((int(stamp[0]) - 1) * 86400 + int(stamp[1]) * 3600 + int(stamp[2]) * 60
                   + int(stamp[3]))
        assert 0 < elapsed < 100000
        os.write(fd, b"exit\r")
        for _ in range(100):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the shell did not exit")
        assert os.waitstatus_to_exitcode(status) == 0
        pid = 0
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)


def test_free_repeats_and_kill_of_the_shell(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, err = shell_c(capsys, "free -s 60 -c 3 | grep -c Mem:; date; free -s 5")
    assert out.splitlines()[:2] == ["3", "Wed Jan  1 00:02:01 UTC 2025"]
    assert err == "free: -c N is needed with -s when the shell is not interactive\n"
    assert shell_c(capsys, "kill 1024; echo alive; kill -9 1024; echo never")[:2] == (
        137, "alive\n")
