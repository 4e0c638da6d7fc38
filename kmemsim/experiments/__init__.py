"""Experiments: parameter sweeps over seeded trials, on one machine or a cluster.

An experiment is a parameter grid times a number of seeded trials.  The five
built-in ones (:data:`EXPERIMENTS`) measure what no published table gives:
kmemleak's false-positive and false-negative rates, with their causes.

=========================  ===================================================================
name                       question
=========================  ===================================================================
``false_positives``        how often live objects are reported, by how the reference was hidden;
                           what ``not_leak``, ``scan_area`` and registering pages buy back
``false_negatives_density``  how often random words keep leaks alive, 32- against 64-bit;
                           Boehm's PLDI'93 Table 1 beside the model ``1 - (1 - p)**n``
``stale_stacks``           leaks kept by stale stack slots and reused memory; ``stack=off``,
                           slab poisoning
``time_to_report``         scans until a leak is reported; transient reports of a list re-linked
                           mid-scan; the ``min_unref_scans`` and ``~0``-checksum proposals
``detectors``              kmemleak against a bcc-memleak-style tracer, LeakSanitizer, Valgrind
=========================  ===================================================================

Run one (``quick=True`` picks small grids; notebooks use ``KMEMSIM_QUICK=1``):

>>> from kmemsim.experiments import EXPERIMENTS, run_experiment
>>> sweep = run_experiment("false_positives", quick=True, trials=1, cause=["xor"],
...                        fraction=[0.0, 0.2], annotation=["none", "not_leak"])
>>> [(r["fraction"], r["annotation"], r["fp"]) for r in sweep.summary()]  # doctest: +ELLIPSIS
[(0.0, 'none', 0), (0.0, 'not_leak', 0), (0.2, 'none', ...), (0.2, 'not_leak', 0)]
>>> row = sweep.summary()[2]
>>> 0 < row["fp_rate_lo"] <= row["fp_rate"] <= row["fp_rate_hi"] < 1
True

On a process pool (or a dask cluster: ``Client(...).get_executor()``) the
rows are the same:

>>> from concurrent.futures import ProcessPoolExecutor
>>> with ProcessPoolExecutor(2) as pool:                        # doctest: +SKIP
...     same = run_experiment("false_positives", quick=True, trials=1, cause=["xor"],
...         fraction=[0.0, 0.2], annotation=["none", "not_leak"], executor=pool)
>>> same.rows == sweep.rows                                     # doctest: +SKIP
True

Any top-level function ``trial(params: dict, seed: SeedSequence) -> dict``
can be swept with :func:`run_sweep`.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Sequence
from typing import Any

from ..errors import KmemsimTypeError, KmemsimValueError
from . import detectors, false_negatives, false_positives, stale_stacks, time_to_report
from .experiment import QUICK_ENV, Experiment, quick_mode
from .false_negatives import boehm_table
from .rules import ReportRules
from .stats import mean_interval, summarize_rows, wilson_interval
from .sweep import ProgressFn, Sweep, TrialFn, read_rows, run_sweep, trial_seed

#: The built-in experiments, by CLI name.
EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    false_positives.EXPERIMENT,
    false_negatives.EXPERIMENT,
    stale_stacks.EXPERIMENT,
    time_to_report.EXPERIMENT,
    detectors.EXPERIMENT,
)}


def run_experiment(name: str, *, quick: bool = False, trials: int | None = None, seed: int = 0,
                   executor: cf.Executor | None = None, progress: bool | ProgressFn = False,
                   out: str | os.PathLike[str] | None = None,
                   command: Sequence[str] | None = None, **param_overrides: Any) -> Sweep:
    """Run the built-in experiment *name*; ``sweep.summary()`` gives its per-point table.

    ``quick`` selects the small grid and trial count; ``trials`` overrides the
    count; each keyword in *param_overrides* replaces one grid axis (a list,
    or a single value).  The other arguments are those of :func:`run_sweep`.
    Unknown names and parameters raise :class:`~kmemsim.KmemsimValueError`.
    """
    if not isinstance(name, str):
        raise KmemsimTypeError(f"name must be a str, not {type(name).__name__}")
    exp = EXPERIMENTS.get(name)
    if exp is None:
        raise KmemsimValueError(f"no experiment named {name!r} (experiments: "
                                f"{', '.join(EXPERIMENTS)})")
    grid = exp.with_overrides(exp.grid(quick), param_overrides)
    n = exp.default_trials(quick) if trials is None else trials
    sweep = run_sweep(exp.trial, grid, trials=n, seed=seed, executor=executor,
                      progress=progress, out=out, experiment=name, command=command)
    sweep.experiment = exp
    return sweep


__all__ = [
    "EXPERIMENTS",
    "QUICK_ENV",
    "Experiment",
    "ProgressFn",
    "ReportRules",
    "Sweep",
    "TrialFn",
    "boehm_table",
    "mean_interval",
    "quick_mode",
    "read_rows",
    "run_experiment",
    "run_sweep",
    "summarize_rows",
    "trial_seed",
    "wilson_interval",
]
