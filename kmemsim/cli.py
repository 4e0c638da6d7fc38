"""The ``kmemsim`` command.

>>> main(["demo", "--quiet"])  # doctest: +ELLIPSIS
<BLANKLINE>
== Step 1: boot a x86_64 kernel built with CONFIG_DEBUG_KMEMLEAK=y ==
...
0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import KmemsimError
from .kmemleak.report import REPORT_FORMATS
from .layout import ARCHES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kmemsim",
        description="A simulator of the Linux kernel's memory leak detector, kmemleak.")
    p.add_argument("--version", action="version", version=f"kmemsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="walk the article's leak hunt on a simulated kernel")
    d.add_argument("--arch", choices=sorted(ARCHES), default="x86_64")
    d.add_argument("--hz", type=int, choices=(100, 250, 300, 1000), default=1000)
    d.add_argument("--format", dest="report_format", choices=REPORT_FORMATS, default="newest",
                   help="report record era (default: newest)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true", help="commands and output, no narration")
    g = sub.add_parser("gallery", help="list the gallery of causes, or run one scenario",
                       description="Without NAME, list the scenarios; with NAME, run it and "
                                   "show kmemleak's report beside the truth's verdicts.")
    g.add_argument("name", nargs="?", metavar="NAME", help="the scenario to run")
    g.add_argument("--arch", choices=sorted(ARCHES), default=None,
                   help="architecture (default: the scenario's own)")
    s = sub.add_parser(
        "shell", help="a root shell on a simulated machine: /proc, kmemleak, modules, OOM",
        description="Without -c, read commands from the terminal (prompt, history, Ctrl-C "
                    "stops a sleep) or, when standard input is not a terminal, from it. "
                    "--lesson runs the bundled lesson: a slow kernel leak, the OOM killer, "
                    "then kmemleak finding the culprit.")
    s.add_argument("-c", dest="commands", metavar="CMDS",
                   help="run CMDS ('cmd; cmd', or several lines) and exit")
    s.add_argument("--arch", choices=sorted(ARCHES), default="x86_64")
    s.add_argument("--cmdline", default="", help="kernel command line, e.g. 'mem=128M'")
    s.add_argument("--speed", type=float, default=None,
                   help="simulated seconds per real second of an interactive sleep "
                        "(default 1000; 0: as fast as possible)")
    s.add_argument("--echo", action="store_true",
                   help="scripted mode: print each command after the prompt (a transcript)")
    s.add_argument("--lesson", action="store_true", help="run the bundled lesson and exit")
    from .experiments.cli import add_sweep_arguments

    add_sweep_arguments(sub.add_parser(
        "sweep", allow_abbrev=False, help="run a built-in experiment (false-positive/negative rates) over its grid",
        description="Run a built-in experiment; --PARAM VALUE[,VALUE...] replaces one axis "
                    "of its parameter grid (kmemsim sweep --list shows them)."))
    return p


def run_gallery(name: str | None, arch: str | None = None) -> int:
    """``kmemsim gallery [NAME] [--arch ARCH]``: list the scenarios, or run one.

    Running prints the explanation, what ``cat /sys/kernel/debug/kmemleak``
    shows, the judgement, and the verdict of each object of interest.
    Returns 0, 1 if a verdict differs from the scenario's expectation, 2 for
    an unknown name.

    >>> run_gallery(None)  # doctest: +ELLIPSIS
    xor_linked_list ...
    0
    """
    import textwrap

    from .truth.judge import judge
    from .workloads.gallery import GALLERY, KMEMLEAK

    if name is None:
        width = max(len(n) for n in GALLERY)
        for s in GALLERY.values():
            print(f"{s.name:<{width}}  {s.title}")
        return 0
    scenario = GALLERY.get(name)
    if scenario is None:
        print(f"kmemsim: gallery: no scenario named {name!r} (run 'kmemsim gallery' for the "
              "list)", file=sys.stderr)
        return 2
    outcome = scenario.run(arch=arch)
    k = outcome.kernel
    print(f"== {scenario.name} ({k.arch.name}): {scenario.title} ==")
    print(textwrap.fill(scenario.explanation, width=78))
    print(f"\nroot@kmemsim:~# cat {KMEMLEAK}")
    report = k.read(KMEMLEAK)
    print(report if report else "(nothing reported)", end="" if report.endswith("\n") else "\n")
    print("\n-- the truth --")
    print(judge(k))
    print("\n-- the objects of this scenario --")
    for e in outcome.expectation.objects:
        print(f"{e.label}: {outcome.judgement[e.pointer]}")
    problems = outcome.mismatches()
    for line in problems:
        print(f"kmemsim: gallery: unexpected: {line}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kmemsim``; returns the exit status."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)  # sweep takes --PARAM VALUE pairs
    if extra and args.command != "sweep":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(sys.stdout, arch=args.arch, hz=args.hz, narrate=not args.quiet,
                            report_format=args.report_format, seed=args.seed)
        if args.command == "gallery":
            return run_gallery(args.name, args.arch)
        if args.command == "shell":
            from .shell import main as shell_main

            return shell_main(args.commands, arch=args.arch, cmdline=args.cmdline,
                              speed=args.speed, echo=args.echo, lesson=args.lesson)
        if args.command == "sweep":
            from .experiments.cli import run_sweep_command

            return run_sweep_command(args, extra, argv)
    except KmemsimError as exc:
        print(f"kmemsim: {exc}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover - argparse rejects unknown commands
