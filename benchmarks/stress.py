"""The long stress profile: a million random operations, valid ones and misuse, mixed.

Runs :func:`kmemsim.testing.stress_run`: a fast-engine kernel and a
reference-engine twin booted alike take the same seeded sequence of
operations (allocations, frees, stores, annotations, stale stack words,
sleeps, scans) and of injected misuse (frees of unknown, interior and freed
pointers, overlapping registrations, writes to guard pages, unmapped memory,
past objects and after free, bad arguments).  The invariants are checked
every ``--check-every`` operations and after every scan.  Prints one JSON
object: the operations run, the seconds they took, the documented errors
that answered the misuse (``answers``, by type) and the findings (internal
errors, failed invariants, errors from valid operations: ``findings``, by
kind, with the first traceback of each in ``first``).

    python benchmarks/stress.py --ops 1000000 --seed 1
    python benchmarks/stress.py --ops 200000 --seed 2 --cmdline slub_debug
"""

from __future__ import annotations

import argparse
import json
import platform

from kmemsim.testing import DebugKernelSpec, stress_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--arch", default="x86_64", choices=("x86_64", "arm64", "i386"))
    ap.add_argument("--ncpus", type=int, default=2)
    ap.add_argument("--cmdline", default="", help='boot command line, e.g. "slub_debug"')
    ap.add_argument("--check-every", type=int, default=1000)
    ap.add_argument("--max-blocks", type=int, default=300)
    args = ap.parse_args()
    spec = DebugKernelSpec(arch=args.arch, ncpus=args.ncpus, cmdline=args.cmdline)
    report = stress_run(args.ops, args.seed, spec=spec, check_every=args.check_every,
                        max_blocks=args.max_blocks)
    out = {"benchmark": "stress", "seed": args.seed, "arch": args.arch, "ncpus": args.ncpus,
           "cmdline": args.cmdline, "check_every": args.check_every,
           "max_blocks": args.max_blocks, **report.as_dict(),
           "ops_per_second": round(report.ops / report.seconds) if report.seconds else None,
           "python": platform.python_version()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
