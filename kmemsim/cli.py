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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kmemsim``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(sys.stdout, arch=args.arch, hz=args.hz, narrate=not args.quiet,
                            report_format=args.report_format, seed=args.seed)
    except KmemsimError as exc:
        print(f"kmemsim: {exc}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover - argparse rejects unknown commands
