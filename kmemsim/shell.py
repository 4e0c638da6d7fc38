"""The teaching shell: type what you would type on a real machine, see what it prints.

``kmemsim shell`` boots a simulated kernel with a small server's user space
(:mod:`kmemsim.oom`) and answers a prompt, ``root@kmemsim:~# ``, with the
output formats of the real tools: bash's own error wording, ``cat``,
``echo ... > FILE``, kmod's ``insmod``/``modprobe``/``rmmod``/``lsmod``,
util-linux ``dmesg``, procps ``free`` and ``watch``, binutils ``addr2line``,
GNU ``grep``/``head``/``tail``/``wc``/``sleep``/``xargs``/``date``, and
``explain`` (the ground truth's answer to "why is this reported?").
Commands can be joined with ``;``, ``&&``, ``||`` and ``|``; ``>``/``>>``
write a file, ``2>/dev/null`` and ``2>&1`` redirect errors.

Modes:

* **interactive** (a terminal on standard input): the prompt, line editing
  and history through :mod:`readline` when it is available, Ctrl-C stops a
  running ``sleep``/``watch`` where simulated time got to and returns to
  the prompt, EOF (Ctrl-D) exits.  Simulated time is paced (``--speed``,
  1000 simulated seconds a real second by default) so a long ``sleep`` can
  be watched and interrupted.
* **scripted** (``kmemsim shell -c 'cmd; cmd'``, or commands on a
  standard input that is not a terminal): no prompt and no echo, exactly
  what ``bash -c`` prints: the commands' output on standard output, errors
  on standard error.  Time runs as fast as it can.  ``--echo`` prints each
  line after the prompt first (and ``#`` comments as they are), which is
  how transcripts and the lesson (``kmemsim shell --lesson``) are made.

Time passes only in ``sleep``, ``watch`` and ``free -s``: every other command
takes no simulated time.  The simulated clock starts at boot on
2025-01-01 00:00:00 UTC (``date``, the ``watch`` title); nothing reads the
real clock except to pace and interrupt an interactive ``sleep``.

>>> sh = Shell()
>>> print(sh.run("lsmod; modprobe article_leak; lsmod"), end="")
Module                  Size  Used by
Module                  Size  Used by
article_leak            8192  0
>>> print(sh.run("rmmod nosuch; cat /x; foo"), end="")
rmmod: ERROR: Module nosuch is not currently loaded
cat: /x: No such file or directory
bash: foo: command not found
"""

from __future__ import annotations

import errno
import io
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

from .errors import KernelOops, KmemsimError
from .kernel import Kernel
from .kmemleak.debugfs import PATH as KMEMLEAK_PATH
from .module import Module
from .oom import SIGKILL, SIGTERM, userspace

PROMPT = "root@kmemsim:~# "
HOSTNAME = "kmemsim"
#: The simulated wall clock at boot (``date``, ``watch``): 2025-01-01 00:00:00 UTC.
BOOT_EPOCH = 1735689600
MODULES_DIR = "/lib/modules/6.16.0-kmemsim"
#: Simulated seconds per real second of an interactive ``sleep``.
DEFAULT_SPEED = 1000.0
#: The simulated step between checks for Ctrl-C during an interactive ``sleep``.
SLEEP_STEP_SECONDS = 1
_SHELL_PID = 1024
_DIRECTORIES = {"/", "/proc", "/sys", "/sys/kernel", "/sys/kernel/debug", "/sys/module",
                "/sys/module/kmemleak", "/sys/module/kmemleak/parameters", "/dev", "/lib",
                "/lib/modules", MODULES_DIR, "/root", "/tmp"}
_OPS = ("2>&1", "2>>", "&&", "||", ">>", "2>", "&>", ";", "|", ">", "<", "&", "(", ")")


class ShellExit(Exception):
    """``exit [N]``: leave the shell with status *N*."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class ShellSyntaxError(Exception):
    """A line bash would refuse to parse; the message is bash's."""


@dataclass
class Command:
    """One simple command: its words and its redirections ``(operator, target)``."""

    words: list[str] = field(default_factory=list)
    redirects: list[tuple[str, str]] = field(default_factory=list)


def tokenize(line: str) -> list[tuple[str, str]]:
    """Split a line into ``("word", text)`` and ``("op", operator)`` tokens, as bash would.

    Quotes: ``'...'`` literally, ``"..."`` with ``\\"``/``\\\\`` escapes; an
    unquoted ``#`` at the start of a word begins a comment.

    >>> tokenize("echo 'a b' \\"c\\"d >> /x # note")
    [('word', 'echo'), ('word', 'a b'), ('word', 'cd'), ('op', '>>'), ('word', '/x')]
    >>> tokenize("dmesg|tail -n 1;sleep 5")[:3]
    [('word', 'dmesg'), ('op', '|'), ('word', 'tail')]
    """
    tokens: list[tuple[str, str]] = []
    cur: list[str] | None = None
    i, n = 0, len(line)

    def flush() -> None:
        nonlocal cur
        if cur is not None:
            tokens.append(("word", "".join(cur)))
            cur = None

    while i < n:
        c = line[i]
        if c in " \t":
            flush()
            i += 1
            continue
        if c == "\n":
            flush()
            tokens.append(("op", ";"))
            i += 1
            continue
        if c == "#" and cur is None:
            while i < n and line[i] != "\n":
                i += 1
            continue
        if c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("unexpected EOF while looking for matching `''")
            cur = (cur or []) + list(line[i + 1:end])
            i = end + 1
            continue
        if c == '"':
            j, buf = i + 1, []
            while j < n and line[j] != '"':
                if line[j] == "\\" and j + 1 < n and line[j + 1] in '"\\$`\n':
                    j += 1
                buf.append(line[j])
                j += 1
            if j >= n:
                raise ShellSyntaxError("unexpected EOF while looking for matching `\"'")
            cur = (cur or []) + buf
            i = j + 1
            continue
        if c == "\\":
            if i + 1 < n:
                cur = (cur or []) + [line[i + 1]]
            i += 2
            continue
        op = next((o for o in _OPS if line.startswith(o, i)), None)
        if op is not None and not (op.startswith("2") and cur is not None):
            flush()
            tokens.append(("op", op))
            i += len(op)
            continue
        cur = (cur or []) + [c]
        i += 1
    flush()
    return tokens


def parse(line: str) -> list[tuple[str | None, list[Command]]]:
    """Parse a line into ``(connector, pipeline)`` pairs; the connector is ``None``,
    ``";"``, ``"&&"`` or ``"||"`` (how the pipeline depends on the one before).

    >>> [(c, [cmd.words for cmd in p]) for c, p in parse("a | b && c")]
    [(None, [['a'], ['b']]), ('&&', [['c']])]
    >>> parse("echo hi |")
    Traceback (most recent call last):
    ...
    kmemsim.shell.ShellSyntaxError: syntax error near unexpected token `newline'
    """
    out: list[tuple[str | None, list[Command]]] = []
    connector: str | None = None
    pipeline: list[Command] = []
    cmd = Command()
    toks = tokenize(line)
    i = 0

    def unexpected(tok: str) -> ShellSyntaxError:
        return ShellSyntaxError(f"syntax error near unexpected token `{tok}'")

    while i < len(toks):
        kind, text = toks[i]
        if kind == "word":
            cmd.words.append(text)
        elif text in (">", ">>", "2>", "2>>", "&>", "<"):
            if i + 1 >= len(toks) or toks[i + 1][0] != "word":
                raise unexpected(toks[i + 1][1] if i + 1 < len(toks) else "newline")
            cmd.redirects.append((text, toks[i + 1][1]))
            i += 1
        elif text == "2>&1":
            cmd.redirects.append((text, ""))
        elif text == "|":
            if not cmd.words:
                raise unexpected(text)
            pipeline.append(cmd)
            cmd = Command()
        elif text in (";", "&&", "||"):
            if not cmd.words:
                raise unexpected(text)
            pipeline.append(cmd)
            out.append((connector, pipeline))
            connector, pipeline, cmd = text, [], Command()
        else:  # & ( ) : background jobs and subshells are not simulated
            raise unexpected(text)
        i += 1
    if cmd.words or cmd.redirects:
        pipeline.append(cmd)
    elif pipeline:
        raise unexpected("newline")
    if pipeline:
        out.append((connector, pipeline))
    elif connector in ("&&", "||"):
        raise unexpected("newline")
    return out


def simulated_date(k: Kernel) -> str:
    """``date`` on the simulated clock: boot was at 2025-01-01 00:00:00 UTC.

    >>> simulated_date(Kernel())
    'Wed Jan  1 00:00:01 UTC 2025'
    """
    t = time.gmtime(BOOT_EPOCH + int(k.uptime))
    return time.strftime("%a %b ", t) + f"{t.tm_mday:2d} " + time.strftime("%H:%M:%S UTC %Y", t)


def parse_duration(text: str) -> float:
    """GNU ``sleep`` intervals: a number with an optional ``s``/``m``/``h``/``d`` suffix.

    >>> parse_duration("1.5m"), parse_duration("2h"), parse_duration("10")
    (90.0, 7200.0, 10.0)
    """
    m = re.fullmatch(r"(\d+\.?\d*|\.\d+)([smhd]?)", text)
    if m is None:
        raise ValueError(text)
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def mod_strerror(code: int) -> str:
    """kmod's ``mod_strerror``: what ``insmod`` says for an ``init_module`` errno.

    >>> mod_strerror(errno.ENOEXEC), mod_strerror(errno.EEXIST)
    ('Invalid module format', 'File exists')
    """
    return {errno.ENOEXEC: "Invalid module format", errno.ENOENT: "Unknown symbol in module",
            errno.ESRCH: "Module has wrong symbol version",
            errno.EINVAL: "Invalid parameters"}.get(code, os.strerror(code))


def _bre_to_python(pattern: str) -> str:
    r"""A GNU basic regular expression as a Python one (``\|``, ``\(`` ... are the operators)."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(nxt if nxt in "|(){}+?" else "\\" + nxt)
            i += 2
            continue
        out.append("\\" + c if c in "|(){}+?" else c)
        i += 1
    return "".join(out)


class Shell:
    """A bash-like shell driving one simulated :class:`~kmemsim.Kernel`.

    :param kernel: the machine (default: a new ``Kernel(arch=arch, cmdline=cmdline)``).
    :param out: where output goes (default: ``sys.stdout`` at the time of writing).
    :param err: where errors go (default: ``sys.stderr`` at the time of writing).
    :param interactive: pace ``sleep`` at *speed* and let Ctrl-C interrupt it.
    :param speed: simulated seconds per real second when pacing (0: no pacing).
    :param echo: print each line after the prompt before running it (transcripts).
    :param start_userspace: boot the small server's processes and page cache.

    ``run(text)`` runs commands and returns what they printed (both streams);
    ``run_script`` and ``interact`` are the CLI's two modes.

    >>> sh = Shell(Kernel(cmdline="mem=128M"))
    >>> print(sh.run("free -m"), end="")
                   total        used        free      shared  buff/cache   available
    Mem:              64          33          20           0          12          30
    Swap:              0           0           0
    """

    def __init__(self, kernel: Kernel | None = None, *, arch: str = "x86_64", cmdline: str = "",
                 out: TextIO | None = None, err: TextIO | None = None,
                 interactive: bool = False, speed: float = 0.0, echo: bool = False,
                 start_userspace: bool = True) -> None:
        self.k = kernel if kernel is not None else Kernel(arch=arch, cmdline=cmdline)
        self._out = out
        self._err = err
        self.interactive = interactive
        self.speed = speed
        self.echo = echo
        self.status = 0
        self._interrupted = False
        if start_userspace:
            userspace(self.k).start()
        self.commands: dict[str, Callable[[list[str], str | None, TextIO, TextIO], int]] = {
            "addr2line": self._addr2line, "cat": self._cat, "date": self._date,
            "dmesg": self._dmesg, "echo": self._echo, "exit": self._exit,
            "explain": self._explain, "false": lambda *a: 1, "free": self._free,
            "grep": self._grep, "head": self._head, "help": self._help,
            "insmod": self._insmod, "kill": self._kill, "lsmod": self._lsmod,
            "modprobe": self._modprobe, "rmmod": self._rmmod, "sleep": self._sleep,
            "tail": self._tail, "true": lambda *a: 0, "watch": self._watch, "wc": self._wc,
            "xargs": self._xargs,
        }

    # -- streams -------------------------------------------------------------------
    @property
    def out(self) -> TextIO:
        return self._out if self._out is not None else sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err if self._err is not None else sys.stderr

    # -- running -------------------------------------------------------------------
    def run(self, text: str) -> str:
        """Run *text* (lines of commands) and return everything printed, errors included.

        >>> Shell().run("echo hello; exit 3; echo never")
        'hello\\n'
        """
        buf = io.StringIO()
        saved = self._out, self._err
        self._out = self._err = buf
        try:
            self.run_script(text)
        finally:
            self._out, self._err = saved
        return buf.getvalue()

    def run_script(self, text: str | Iterator[str]) -> int:
        """Run lines one by one until the end or ``exit``; return the last status."""
        lines = text.splitlines() if isinstance(text, str) else text
        for line in lines:
            try:
                self.run_line(line.rstrip("\n"))
            except ShellExit as e:
                self.status = e.status
                break
        return self.status

    def run_line(self, line: str) -> int:
        """Run one line; ``ShellExit`` propagates from ``exit``."""
        if self.echo:
            stripped = line.strip()
            if stripped.startswith("#"):
                self.out.write(line + "\n")
            elif stripped:
                self.out.write(PROMPT + line + "\n")
            else:
                self.out.write("\n")
            self.out.flush()
        try:
            program = parse(line)
        except ShellSyntaxError as e:
            self.err.write(f"bash: {e}\n")
            self.status = 2
            return self.status
        for connector, pipeline in program:
            if connector == "&&" and self.status != 0:
                continue
            if connector == "||" and self.status == 0:
                continue
            self.status = self._run_pipeline(pipeline)
            if self._interrupted:
                break
        self.out.flush()
        return self.status

    def _run_pipeline(self, pipeline: list[Command]) -> int:
        stdin: str | None = None
        status = 0
        for i, cmd in enumerate(pipeline):
            last = i == len(pipeline) - 1
            files = [r for r in cmd.redirects if r[0] in (">", ">>", "&>")]
            capture = not last or bool(files)
            out: TextIO = io.StringIO() if capture else self.out
            err: TextIO = self.err
            for op, target in cmd.redirects:
                if op in ("2>", "2>>"):
                    err = io.StringIO() if target == "/dev/null" else err
                elif op == "2>&1" or op == "&>":
                    err = out
                elif op == "<":
                    try:
                        stdin = self._read_file(target)
                    except OSError as e:
                        self.err.write(f"bash: {target}: {e.strerror}\n")
                        return 1
            if not cmd.words:
                status = 0
            else:
                status = self._run_command(cmd.words, stdin, out, err)
                out.flush()  # as a process's output would be: before the next one's errors
            if self._interrupted:
                return 130
            text = out.getvalue() if isinstance(out, io.StringIO) else ""
            if files:
                name = cmd.words[0] if cmd.words else "bash"
                for _, target in files:
                    status = self._write_redirect(name, target, text) or status
                text = ""
            stdin = text
        return status

    def _run_command(self, words: list[str], stdin: str | None, out: TextIO, err: TextIO
                     ) -> int:
        name, args = words[0], words[1:]
        fn = self.commands.get(name)
        if fn is None:
            err.write(f"bash: {name}: command not found\n")
            return 127
        try:
            return fn(args, stdin, out, err)
        except ShellExit:
            raise
        except KernelOops:
            err.write("Segmentation fault\n")  # the oops killed the process; lines in dmesg
            return 139

    # -- files ---------------------------------------------------------------------
    def _read_file(self, path: str) -> str:
        if path == "/dev/null":
            return ""
        if path.rstrip("/") in _DIRECTORIES or path == "/":
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        return self.k.read(path)

    def _write_redirect(self, cmdname: str, path: str, text: str) -> int:
        """``cmd > path``: one write of the whole output, with bash's error wording."""
        if path == "/dev/null":
            return 0
        if path.rstrip("/") in _DIRECTORIES:
            self.err.write(f"bash: {path}: Is a directory\n")
            return 1
        try:
            if path.startswith("/proc/") and path != "/proc/cmdline":
                from .procfs import proc_write

                proc_write(self.k, path, text)
            elif text:  # "> FILE" with no output only opens (truncates) the file
                self.k.write(path, text)
        except FileNotFoundError:
            self.err.write(f"bash: {path}: No such file or directory\n")
            return 1
        except OSError as e:
            code = e.errno or errno.EIO
            if code in (errno.EACCES, errno.EISDIR):
                self.err.write(f"bash: {path}: {os.strerror(code)}\n")
            elif cmdname in ("echo", "printf"):
                self.err.write(f"bash: {cmdname}: write error: {os.strerror(code)}\n")
            else:
                self.err.write(f"{cmdname}: write error: {os.strerror(code)}\n")
            return 1
        return 0

    # -- time ----------------------------------------------------------------------
    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self._interrupted = True

    def advance(self, seconds: float) -> bool:
        """Let *seconds* of simulated time pass; ``False`` if Ctrl-C stopped it early.

        Interactive shells advance in steps of :data:`SLEEP_STEP_SECONDS`,
        paced at :attr:`speed`, so an interrupt stops time where it got to.
        """
        if not self.interactive:
            self.k.sleep(seconds)
            return True
        hz = self.k.hz
        total = round(seconds * hz)
        step = SLEEP_STEP_SECONDS * hz
        done = 0
        start = time.monotonic()
        while done < total:
            if self._interrupted:
                return False
            n = min(step, total - done)
            self.k.sleep(n / hz)
            done += n
            if self.speed > 0:
                due = start + done / hz / self.speed
                while not self._interrupted and (left := due - time.monotonic()) > 0:
                    time.sleep(min(left, 0.02))
        return not self._interrupted

    # -- the commands ----------------------------------------------------------------
    def _echo(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        newline, escapes = True, False
        while args and re.fullmatch(r"-[neE]+", args[0]):
            newline = newline and "n" not in args[0]
            escapes = "e" in args[0] or (escapes and "E" not in args[0])
            args = args[1:]
        text = " ".join(args)
        if escapes:
            text = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
        out.write(text + ("\n" if newline else ""))
        return 0

    def _cat(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        if not args:
            out.write(stdin or "")
            return 0
        status = 0
        for path in args:
            try:
                out.write(self._read_file(path))
            except OSError as e:
                err.write(f"cat: {path}: {os.strerror(e.errno or errno.EIO)}\n")
                status = 1
        return status

    def _module_error(self, tool: str, what: str, exc: BaseException, err: TextIO) -> int:
        if isinstance(exc, KmemsimError) and not isinstance(exc, OSError):
            # A Python module that does not import or defines no Module class: the kernel
            # would refuse the file as a bad ELF; the reason goes to the kernel log.
            self.k.printk(f"{tool}: {exc}")
            code = errno.ENOEXEC
        else:
            code = getattr(exc, "errno", None) or errno.EINVAL
        if tool == "insmod":
            err.write(f"insmod: ERROR: could not insert module {what}: {mod_strerror(code)}\n")
        else:
            reason = ("Unknown symbol in module, or unknown parameter (see dmesg)"
                      if code == errno.ENOENT else os.strerror(code))
            err.write(f"modprobe: ERROR: could not insert '{what}': {reason}\n")
        return 1

    def _load(self, tool: str, what: str, cls: type[Module], params: list[str],
              err: TextIO) -> int:
        from .workloads.slow_leak import with_parameters

        pairs = dict(p.partition("=")[::2] for p in params)
        inst, ignored, bad = with_parameters(cls, self.k, pairs)
        name = cls.module_name()
        for key in ignored:
            self.k.printk(f"{name}: unknown parameter '{key}' ignored")
        if bad is not None:
            self.k.printk(f"{name}: `{pairs[bad]}' invalid for parameter `{bad}'")
            return self._module_error(tool, what, OSError(errno.EINVAL, "bad"), err)
        try:
            self.k.insmod(inst, comm=tool)
        except KernelOops:
            raise
        except (OSError, KmemsimError) as e:
            return self._module_error(tool, what, e, err)
        return 0

    def _insmod(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        if not args:
            err.write("insmod: ERROR: missing filename.\n")
            return 1
        from .workloads import load_module_file

        path = args[0]
        try:
            cls = load_module_file(Path(path))
        except FileNotFoundError:
            err.write(f"insmod: ERROR: could not load module {path}: No such file or "
                      "directory\n")
            return 1
        except KmemsimError as e:
            return self._module_error("insmod", path, e, err)
        if cls.module_name() in self.k.modules:
            err.write(f"insmod: ERROR: could not insert module {path}: File exists\n")
            return 1
        return self._load("insmod", path, cls, args[1:], err)

    def _modprobe(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        from .workloads import bundled_module

        remove = False
        while args and args[0].startswith("-"):
            if args[0] in ("-r", "--remove"):
                remove = True
            else:
                err.write(f"modprobe: ERROR: unknown option '{args[0]}'\n")
                return 1
            args = args[1:]
        if not args:
            err.write("modprobe: ERROR: missing parameters. See -h.\n")
            return 1
        name = args[0]
        try:
            cls = bundled_module(name)
        except FileNotFoundError:
            err.write(f"modprobe: FATAL: Module {name} not found in directory {MODULES_DIR}\n")
            return 1
        loaded = cls.module_name() in self.k.modules
        if remove:
            return self._rmmod([cls.module_name()], stdin, out, err) if loaded else 0
        if loaded:
            return 0  # already in the kernel: modprobe does nothing and succeeds
        return self._load("modprobe", cls.module_name(), cls, args[1:], err)

    def _rmmod(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        if not args:
            err.write("rmmod: ERROR: missing module name.\n")
            return 1
        status = 0
        for arg in args:
            name = Path(arg).name.removesuffix(".ko").removesuffix(".py")
            try:
                self.k.rmmod(name)
            except FileNotFoundError:
                err.write(f"rmmod: ERROR: Module {name} is not currently loaded\n")
                status = 1
        return status

    def _lsmod(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        out.write("Module                  Size  Used by\n")
        for name, size in self.k.lsmod():
            out.write(f"{name:<19s} {size:8d}  0\n")
        return 0

    def _dmesg(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        clear = show = False
        for a in args:
            if a in ("-c", "--read-clear"):
                clear = show = True
            elif a in ("-C", "--clear"):
                clear = True
            else:
                err.write(f"dmesg: invalid option -- '{a.lstrip('-')[:1]}'\n"
                          "Try 'dmesg --help' for more information.\n")
                return 1
        text = self.k.dmesg(clear=clear)
        if show or not clear:
            out.write(text)
        return 0

    def _sleep(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        if not args:
            err.write("sleep: missing operand\nTry 'sleep --help' for more information.\n")
            return 1
        total = 0.0
        for a in args:
            try:
                total += parse_duration(a)
            except ValueError:
                err.write(f"sleep: invalid time interval '{a}'\n"
                          "Try 'sleep --help' for more information.\n")
                return 1
        return 0 if self.advance(total) else 130

    def _free(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        from .procfs import meminfo

        units = {"-b": 1, "--bytes": 1, "-k": 2, "--kibi": 2, "-m": 3, "--mebi": 3,
                 "-g": 4, "--gibi": 4}
        exponent, human, si, wide, total_line = 0, False, False, False, False
        seconds, count = 0.0, 0
        it = iter(args)
        for a in it:
            if a in units:
                exponent = units[a]
            elif a in ("-h", "--human"):
                human = True
            elif a == "--si":
                si = True
            elif a in ("-w", "--wide"):
                wide = True
            elif a in ("-t", "--total"):
                total_line = True
            elif a in ("-s", "--seconds", "-c", "--count"):
                value = next(it, "")
                try:
                    if a in ("-s", "--seconds"):
                        seconds = float(value)
                        if seconds <= 0:
                            raise ValueError(value)
                    else:
                        count = int(value)
                        if count < 1:
                            raise ValueError(value)
                except ValueError:
                    err.write(f"free: failed to parse argument: '{value}'\n")
                    return 1
            else:
                err.write(f"free: invalid option -- '{a.lstrip('-')[:1]}'\n")
                return 1

        def scale(kb: int) -> str:
            base = 1000.0 if si else 1024.0
            size = kb * 1024
            if not human:
                if exponent == 0:
                    return str(kb)
                if exponent == 1:
                    return str(size)
                return str(int(size / base ** (exponent - 1)))
            if len(f"{size}B") <= 4:
                return f"{size}B"
            for i, unit in enumerate("KMGTP", start=1):
                suffix = unit if si else unit + "i"
                limit = 4 if si else 5
                if len(s := f"{size / base ** i:.1f}{suffix}") <= limit:
                    return s
                if len(s := f"{int(size / base ** i)}{suffix}") <= limit:
                    return s
            return f"{size}B"

        repeat = seconds > 0 or count > 0  # -c alone repeats every second, as procps does
        seconds = seconds or 1.0
        if repeat and not count and not self.interactive:
            err.write("free: -c N is needed with -s when the shell is not interactive\n")
            return 1
        n = 0
        while True:
            m = meminfo(self.k)
            cache = m["Cached"] + m["SReclaimable"]
            used = m["MemTotal"] - m["MemAvailable"]
            if wide:
                out.write("               total        used        free      shared     buffers"
                          "       cache   available\n")
                cols = [m["MemTotal"], used, m["MemFree"], m["Shmem"], m["Buffers"], cache,
                        m["MemAvailable"]]
            else:
                out.write("               total        used        free      shared  buff/cache"
                          "   available\n")
                cols = [m["MemTotal"], used, m["MemFree"], m["Shmem"], m["Buffers"] + cache,
                        m["MemAvailable"]]
            out.write(f"{'Mem:':<9s}" + " ".join(f"{scale(v):>11s}" for v in cols) + "\n")
            out.write(f"{'Swap:':<9s}" + " ".join(f"{scale(0):>11s}" for _ in range(3)) + "\n")
            if total_line:
                out.write(f"{'Total:':<9s}{scale(m['MemTotal']):>11s} {scale(used):>11s} "
                          f"{scale(m['MemFree']):>11s}\n")
            n += 1
            if not repeat or n >= count > 0:
                return 0
            out.write("\n")
            out.flush()
            if not self.advance(seconds):
                return 130

    def _addr2line(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        exe, functions, addrs = "a.out", False, []
        it = iter(args)
        for a in it:
            if a == "-e":
                exe = next(it, "a.out")
            elif a.startswith("--exe="):
                exe = a.split("=", 1)[1]
            elif a in ("-f", "--functions"):
                functions = True
            elif a in ("-C", "-s", "-i", "--demangle", "--basenames", "--inlines"):
                pass
            else:
                addrs.append(a)
        module = Path(exe).name.removesuffix(".ko").removesuffix(".py").replace("-", "_")
        if not any(lay.name == module for lay in self.k.module_layouts):
            err.write(f"addr2line: '{exe}': No such file\n")
            return 1
        for a in addrs or (stdin or "").split():
            try:
                loc = self.k.addr2line(a)
            except KmemsimError:
                loc = None
            if loc is not None and loc.module != module:
                loc = None
            if functions:
                out.write(f"{loc.function if loc else '??'}\n")
            out.write(f"{loc if loc else '??:0'}\n")
        return 0

    def _explain(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        from .truth.explain import explain

        if len(args) != 1:
            err.write("explain: usage: explain ADDRESS\n")
            return 2
        try:
            addr = int(args[0], 16)
        except ValueError:
            err.write(f"explain: invalid address '{args[0]}'\n")
            return 1
        try:
            out.write(str(explain(self.k, addr)) + "\n")
        except KmemsimError as e:
            err.write(f"explain: {e}\n")
            return 1
        return 0

    def _date(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        out.write(simulated_date(self.k) + "\n")
        return 0

    def _kill(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        sig = SIGTERM
        if args and args[0] in ("-9", "-KILL", "-SIGKILL", "-s"):
            sig = SIGKILL if args[0] != "-s" else (SIGKILL if args[1:2] == ["KILL"] else SIGTERM)
            args = args[2:] if args[0] == "-s" else args[1:]
        elif args and args[0] in ("-15", "-TERM", "-SIGTERM"):
            args = args[1:]
        if not args:
            err.write("kill: usage: kill [-s sigspec | -n signum | -sigspec] pid | jobspec ... "
                      "or kill -l [sigspec]\n")
            return 2
        status = 0
        for a in args:
            if not a.isdigit():
                err.write(f"bash: kill: {a}: arguments must be process or job IDs\n")
                status = 1
                continue
            pid = int(a)
            if pid == _SHELL_PID:
                if sig == SIGKILL:
                    raise ShellExit(137)  # the shell itself: the session ends
                continue  # an interactive bash ignores SIGTERM
            try:
                userspace(self.k).kill(pid, sig)
            except ProcessLookupError:
                err.write(f"bash: kill: ({pid}) - No such process\n")
                status = 1
        return status

    def _exit(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        if args and not re.fullmatch(r"-?\d+", args[0]):
            err.write(f"bash: exit: {args[0]}: numeric argument required\n")
            raise ShellExit(2)
        raise ShellExit(int(args[0]) & 0xFF if args else self.status)

    def _help(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        out.write(HELP)
        return 0

    # -- text tools ----------------------------------------------------------------
    def _inputs(self, files: list[str], stdin: str | None, tool: str, err: TextIO
                ) -> Iterator[tuple[str, str | None]]:
        if not files:
            yield "(standard input)", stdin or ""
            return
        for f in files:
            try:
                yield f, self._read_file(f)
            except OSError as e:
                err.write(f"{tool}: {f}: {os.strerror(e.errno or errno.EIO)}\n")
                yield f, None

    def _grep(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        patterns: list[str] = []
        flags = {"E": False, "F": False, "i": False, "v": False, "c": False, "o": False,
                 "w": False, "n": False}
        max_count: int | None = None
        after = before = 0
        files: list[str] = []
        it = iter(args)
        for a in it:
            if a == "-e":
                patterns.append(next(it, ""))
            elif a in ("-m", "-A", "-B", "-C") or re.fullmatch(r"-[mABC]\d+", a):
                value = a[2:] or next(it, "")
                if not value.isdigit():
                    err.write(f"grep: {value}: invalid context length argument\n")
                    return 2
                if a[1] == "m":
                    max_count = int(value)
                if a[1] in "AC":
                    after = int(value)
                if a[1] in "BC":
                    before = int(value)
            elif a.startswith("-") and len(a) > 1 and all(c in flags for c in a[1:]):
                for c in a[1:]:
                    flags[c] = True
            elif a.startswith("-") and len(a) > 1:
                err.write(f"grep: invalid option -- '{a[1]}'\nUsage: grep [OPTION]... PATTERNS "
                          "[FILE]...\nTry 'grep --help' for more information.\n")
                return 2
            elif not patterns:
                patterns.append(a)
            else:
                files.append(a)
        if not patterns:
            err.write("Usage: grep [OPTION]... PATTERNS [FILE]...\n"
                      "Try 'grep --help' for more information.\n")
            return 2
        alts = []
        for p in patterns:
            for piece in p.split("\n"):
                if flags["F"]:
                    alts.append(re.escape(piece))
                else:
                    alts.append(piece if flags["E"] else _bre_to_python(piece))
        rx = "|".join(f"(?:{a})" for a in alts)
        if flags["w"]:
            rx = rf"(?<!\w)(?:{rx})(?!\w)"
        try:
            regex = re.compile(rx, re.IGNORECASE if flags["i"] else 0)
        except re.error:
            err.write("grep: Unmatched ( or \\(\n")
            return 2
        matched_any, status = False, 0
        many = len(files) > 1
        for name, text in self._inputs(files, stdin, "grep", err):
            if text is None:
                status = 2
                continue
            count = 0
            lines = text.splitlines()
            printed = -1  # index of the last line written (context lines included)
            trailing = 0  # context lines still owed after the last match
            for idx, line in enumerate(lines):
                if max_count is not None and count >= max_count and not trailing:
                    break
                hits = list(regex.finditer(line))
                matched = bool(hits) != flags["v"]
                if matched and (max_count is None or count < max_count):
                    count += 1
                    if flags["c"]:
                        continue
                    first = max(printed + 1, idx - before)
                    if (after or before) and printed >= 0 and first > printed + 1:
                        out.write("--\n")
                    for j in range(first, idx):
                        out.write(self._grep_prefix(name, many, flags["n"], j, "-") + lines[j]
                                  + "\n")
                    prefix = self._grep_prefix(name, many, flags["n"], idx, ":")
                    if flags["o"] and not flags["v"]:
                        for h in hits:
                            if h.group(0):
                                out.write(prefix + h.group(0) + "\n")
                    else:
                        out.write(prefix + line + "\n")
                    printed, trailing = idx, after
                elif trailing and not flags["c"]:
                    out.write(self._grep_prefix(name, many, flags["n"], idx, "-") + line + "\n")
                    printed, trailing = idx, trailing - 1
            if flags["c"]:
                out.write((f"{name}:" if many else "") + f"{count}\n")
            matched_any = matched_any or count > 0
        return status if status else (0 if matched_any else 1)

    @staticmethod
    def _grep_prefix(name: str, many: bool, numbers: bool, idx: int, sep: str) -> str:
        return (f"{name}{sep}" if many else "") + (f"{idx + 1}{sep}" if numbers else "")

    def _lines_option(self, args: list[str], tool: str, err: TextIO) -> tuple[int, list[str]]:
        n, files = 10, []
        it = iter(args)
        for a in it:
            if a == "-n":
                a = "-n" + next(it, "")
            if re.fullmatch(r"-n?\d+", a):
                n = int(a.lstrip("-n"))
            elif a.startswith("-") and len(a) > 1:
                raise ValueError(f"{tool}: invalid option -- '{a[1]}'")
            else:
                files.append(a)
        return n, files

    def _head(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        return self._head_tail(args, stdin, out, err, "head")

    def _tail(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        return self._head_tail(args, stdin, out, err, "tail")

    def _head_tail(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO,
                   tool: str) -> int:
        try:
            n, files = self._lines_option(args, tool, err)
        except ValueError as e:
            err.write(f"{e}\nTry '{tool} --help' for more information.\n")
            return 1
        status = 0
        for name, text in self._inputs(files, stdin, tool, err):
            if text is None:
                status = 1
                continue
            if len(files) > 1:
                out.write(f"==> {name} <==\n")
            lines = text.splitlines(keepends=True)
            out.write("".join(lines[:n] if tool == "head" else lines[max(0, len(lines) - n):]))
        return status

    def _wc(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        opts = [a for a in args if a.startswith("-")]
        files = [a for a in args if not a.startswith("-")]
        which = "".join(c for o in opts for c in o[1:]) or "lwc"
        status = 0
        for name, text in self._inputs(files, stdin, "wc", err):
            if text is None:
                status = 1
                continue
            counts = {"l": text.count("\n"), "w": len(text.split()), "c": len(text.encode())}
            values = [counts[c] for c in "lwc" if c in which]
            if len(values) == 1 and not files:
                out.write(f"{values[0]}\n")
            else:
                width = 7 if not files else max(len(str(v)) for v in values)
                out.write(" ".join(f"{v:{width}d}" for v in values)
                          + (f" {name}" if files else "") + "\n")
        return status

    def _xargs(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        words = (stdin or "").split()
        cmd = args or ["echo"]
        if not words and cmd[0] != "echo":
            return self._run_command(cmd, None, out, err)
        return self._run_command(cmd + words, None, out, err)

    def _watch(self, args: list[str], stdin: str | None, out: TextIO, err: TextIO) -> int:
        interval, count, title = 2.0, 0, True
        while args and args[0].startswith("-"):
            a = args.pop(0)
            if a in ("-n", "--interval"):
                value = args.pop(0) if args else ""
            elif a.startswith("--interval="):
                value = a.split("=", 1)[1]
            elif a == "--count":
                value = args.pop(0) if args else ""
                if not value.isdigit() or int(value) < 1:
                    err.write(f"watch: failed to parse argument: '{value}'\n")
                    return 1
                count = int(value)
                continue
            elif a in ("-t", "--no-title"):
                title = False
                continue
            else:
                err.write(f"watch: invalid option -- '{a.lstrip('-')[:1]}'\n")
                return 1
            try:
                interval = max(0.1, float(value))
            except ValueError:
                err.write(f"watch: failed to parse argument: '{value}'\n")
                return 1
        if not args:
            err.write("Usage:\n watch [options] command\n")
            return 1
        if not count and not self.interactive:
            err.write("watch: --count N is needed when the shell is not interactive\n")
            return 1
        command = " ".join(args)
        n = 0
        while True:
            if title:
                left = f"Every {interval:.1f}s: {command}"
                right = f"{HOSTNAME}: {simulated_date(self.k)}"
                out.write(f"{left}{right:>{max(len(right) + 1, 80 - len(left))}}\n\n")
            saved = self._out, self._err
            self._out, self._err = out, out
            try:
                program = parse(command)
                for connector, pipeline in program:
                    if connector == "&&" and self.status != 0:
                        continue
                    if connector == "||" and self.status == 0:
                        continue
                    self.status = self._run_pipeline(pipeline)
            except ShellSyntaxError as e:
                out.write(f"sh: 1: {e}\n")
            finally:
                self._out, self._err = saved
            n += 1
            if count and n >= count:
                return 0
            out.write("\n")
            out.flush()
            if not self.advance(interval):
                return 130

    # -- interactive ---------------------------------------------------------------
    def interact(self) -> int:
        """Read commands at the prompt until ``exit`` or EOF; return the last status."""
        editing = False
        try:
            import readline

            readline.parse_and_bind("tab: complete")
            readline.set_completer(self._complete)
            readline.set_completer_delims(" \t;|&<>")
            editing = True
        except ImportError:  # pragma: no cover - platforms without readline
            pass
        while True:
            try:
                line = input(PROMPT)
            except EOFError:
                self.out.write("exit\n")
                return self.status
            except KeyboardInterrupt:
                # readline keeps the terminal from echoing ^C at the prompt; bash shows it.
                self.out.write("^C\n" if editing else "\n")
                self.status = 130
                continue
            previous = signal.signal(signal.SIGINT, self._on_sigint)
            try:
                self.run_line(line)
            except ShellExit as e:
                return e.status
            finally:
                signal.signal(signal.SIGINT, previous)
                if self._interrupted:
                    self._interrupted = False
                    self.status = 130
                    self.out.write("\n")
                self.out.flush()

    def _complete(self, text: str, state: int) -> str | None:
        from .workloads import BUNDLED

        words = [*sorted(self.commands), KMEMLEAK_PATH, "/proc/meminfo", "/proc/slabinfo",
                 "/proc/modules", "/sys/module/kmemleak/parameters/verbose", "/proc/cmdline",
                 *sorted(BUNDLED)]
        hits = [w for w in words if w.startswith(text)]
        return hits[state] if state < len(hits) else None


HELP = """\
kmemsim shell: a simulated machine with kmemleak (see README, "The teaching shell").
Commands (with the real tools' options and output):
  cat FILE...                 /proc/meminfo, /proc/slabinfo, /proc/modules, /proc/PID/status,
                              /sys/kernel/debug/kmemleak, /sys/module/kmemleak/parameters/verbose
  echo TEXT > FILE            write a file: echo scan > /sys/kernel/debug/kmemleak
  modprobe NAME [p=v...]      load a bundled module: article_leak, article_fixed, slow_leak
  insmod FILE.py [p=v...]     load a Python module file; rmmod NAME; lsmod
  dmesg [-c|-C]               the kernel log (-c: print and clear)
  sleep N[smhd]               let simulated time pass (the scan thread runs on schedule)
  free [-k|-m|-g|-h] [-s N -c M]   memory, as procps free
  watch [-n SECS] [--count N] CMD  run CMD every SECS simulated seconds
  addr2line [-f] -e MODULE.ko ADDR map a backtrace address to the Python file and line
  explain ADDR                the ground truth: why is this object (not) reported?
  grep, head, tail, wc, xargs, kill PID, date, help, exit
Join commands with ; && || and |.  Ctrl-C stops a sleep; Ctrl-D or exit leaves.
"""


def run_lesson(out: TextIO, *, arch: str = "x86_64") -> int:
    """Run the bundled lesson (:mod:`kmemsim.workloads.oom_lesson`) as a transcript on *out*."""
    from .workloads.oom_lesson import LESSON_CMDLINE, LESSON_SCRIPT

    sh = Shell(Kernel(arch=arch, cmdline=LESSON_CMDLINE), out=out, err=out, echo=True)
    return sh.run_script(LESSON_SCRIPT)


def main(argv_cmd: str | None = None, *, arch: str = "x86_64", cmdline: str = "",
         speed: float | None = None, echo: bool = False, lesson: bool = False,
         stdin: TextIO | None = None) -> int:
    """``kmemsim shell``: the lesson, ``-c CMDS``, a script on stdin, or the prompt."""
    if lesson:
        return run_lesson(sys.stdout, arch=arch)
    stdin = stdin if stdin is not None else sys.stdin
    if argv_cmd is not None:
        sh = Shell(arch=arch, cmdline=cmdline, echo=echo,
                   speed=speed if speed is not None else 0.0)
        return sh.run_script(argv_cmd)
    if stdin.isatty():
        sh = Shell(arch=arch, cmdline=cmdline, interactive=True,
                   speed=DEFAULT_SPEED if speed is None else speed)
        return sh.interact()
    sh = Shell(arch=arch, cmdline=cmdline, echo=echo, speed=speed or 0.0)
    return sh.run_script(iter(stdin))
