"""Parameter sweeps: a grid times seeded trials, on any ``concurrent.futures`` executor.

A sweep runs ``trial(params, seed)`` once per (grid point, trial index).
Each trial's :class:`numpy.random.SeedSequence` is
``SeedSequence(seed, spawn_key=(point, trial))`` (the same sequence as
``SeedSequence(seed).spawn(...)[point].spawn(...)[trial]``), so a row depends
only on the root seed, the grid and its own indexes: serial runs, process
pools and dask clusters produce the same rows, in the same canonical order
(grid point, then trial), whatever the number of workers.

With ``out=DIR`` rows stream to ``DIR/rows.jsonl`` as trials finish;
running the same sweep again skips the trials already there (a truncated
last line, left by a kill, is dropped and that trial runs again).  At the
end ``DIR/results.csv`` holds the rows and ``DIR/results.json`` the
metadata: versions, seed, grid, trials, command line, experiment name.

>>> from kmemsim.experiments.sweep import run_sweep, example_trial
>>> s = run_sweep(example_trial, {"n": [10, 1000]}, trials=2, seed=1)
>>> [(r["point"], r["trial"], r["n"]) for r in s.rows]
[(0, 0, 10), (0, 1, 10), (1, 0, 1000), (1, 1, 1000)]
>>> s.rows == run_sweep(example_trial, {"n": [10, 1000]}, trials=2, seed=1).rows
True
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import importlib
import itertools
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from ..errors import KmemsimTypeError, KmemsimValueError, check_int
from .stats import Row, summarize_rows

if TYPE_CHECKING:
    from .experiment import Experiment

#: A trial: plain parameters and its own seed in, a small dict of plain values out.
TrialFn = Callable[[dict[str, Any], np.random.SeedSequence], dict[str, Any]]
#: A progress callback: called with ``(done, total)`` after each finished trial.
ProgressFn = Callable[[int, int], None]

ROWS_FILE = "rows.jsonl"
CSV_FILE = "results.csv"
META_FILE = "results.json"
#: Columns every row starts with; the grid's parameters follow, then the trial's outputs.
INDEX_COLUMNS = ("point", "trial")
_PLAIN = (int, float, str, bool, type(None))


def example_trial(params: dict[str, Any], seed: np.random.SeedSequence) -> dict[str, Any]:
    """A tiny trial for examples and tests: how many of ``n`` uniform draws fall below 0.1.

    >>> example_trial({"n": 100}, np.random.SeedSequence(0))
    {'hits': 10, 'fraction': 0.1}
    """
    n = int(params["n"])
    rng = np.random.default_rng(seed)
    hits = int((rng.random(n) < 0.1).sum())
    return {"hits": hits, "fraction": hits / n}


def trial_seed(seed: int, point: int, trial: int) -> np.random.SeedSequence:
    """The seed of one trial: a pure function of the root seed and the two indexes.

    >>> s = trial_seed(7, 2, 3)
    >>> s.spawn_key
    (2, 3)
    >>> root = np.random.SeedSequence(7)
    >>> bool((root.spawn(3)[2].spawn(4)[3].generate_state(4) == s.generate_state(4)).all())
    True
    """
    return np.random.SeedSequence(seed, spawn_key=(point, trial))


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of *grid*, last parameter varying fastest.

    >>> grid_points({"a": [1, 2], "b": ["x"]})
    [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}]
    """
    names = list(grid)
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(grid[n] for n in names))]


def check_grid(grid: object) -> dict[str, list[Any]]:
    """Validate a grid (``{name: [values]}``, plain values) and return a copy with lists."""
    if not isinstance(grid, Mapping):
        raise KmemsimTypeError(f"grid must be a mapping of parameter name to values, "
                               f"not {type(grid).__name__}")
    out: dict[str, list[Any]] = {}
    for name, values in grid.items():
        if not isinstance(name, str) or name in INDEX_COLUMNS or not name.isidentifier():
            raise KmemsimValueError(f"grid parameter names must be identifiers other than "
                                    f"'point' and 'trial', got {name!r}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise KmemsimTypeError(f"grid[{name!r}] must be a list of values, "
                                   f"not {type(values).__name__}")
        vals = list(values)
        if not vals:
            raise KmemsimValueError(f"grid[{name!r}] is empty")
        for v in vals:
            if type(v) not in _PLAIN:
                raise KmemsimTypeError(f"grid[{name!r}] values must be int, float, str, bool "
                                       f"or None, not {type(v).__name__}")
        out[name] = vals
    return out


def _run_one(trial: TrialFn, params: dict[str, Any], seed: int, point: int,
             index: int) -> tuple[int, int, dict[str, Any]]:
    # Top level so that process pools and dask can ship it by reference.
    return point, index, trial(dict(params), trial_seed(seed, point, index))


def _make_row(point: int, index: int, params: Mapping[str, Any],
              result: object) -> Row:
    if not isinstance(result, dict):
        raise KmemsimTypeError(f"a trial must return a dict, not {type(result).__name__}")
    row: Row = {"point": point, "trial": index, **params}
    for key, value in result.items():
        if not isinstance(key, str):
            raise KmemsimTypeError(f"trial result keys must be str, got {key!r}")
        if key in row:
            raise KmemsimValueError(f"trial result key {key!r} clashes with a parameter or index")
        # exact types: numpy scalars (np.float64 is a float) would hide a uint64 pitfall
        if type(value) not in _PLAIN:
            raise KmemsimTypeError(f"trial result {key!r} must be a plain int, float, str, bool "
                                   f"or None, not {type(value).__name__}")
        if type(value) is float and not math.isfinite(value):
            # NaN != NaN would break row equality across executors; JSON has neither
            raise KmemsimValueError(f"trial result {key!r} is {value}: return None instead")
        row[key] = value
    # One JSON round trip, so that fresh rows and rows read back on resume are equal.
    loaded: Row = json.loads(json.dumps(row))
    return loaded


@dataclass
class Sweep:
    """The rows of a finished sweep, in canonical order, with its metadata.

    ``rows`` has one dict per trial: ``point``, ``trial``, the parameters,
    then the trial's outputs.
    """

    rows: list[Row]
    metadata: dict[str, Any]
    experiment: Experiment | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def params(self) -> list[str]:
        """The swept parameter names, in grid order."""
        return list(self.metadata["grid"])

    def to_records(self) -> list[Row]:
        """The rows as fresh dicts (``pandas.DataFrame(sweep.to_records())``)."""
        return [dict(r) for r in self.rows]

    def columns(self) -> list[str]:
        """Every column, in first-seen order."""
        cols: dict[str, None] = {}
        for r in self.rows:
            cols.update(dict.fromkeys(r))
        return list(cols)

    def summary(self) -> list[Row]:
        """One row per grid point: the experiment's summary, or the mean of each output.

        >>> s = run_sweep(example_trial, {"n": [50]}, trials=3)
        >>> row = s.summary()[0]
        >>> row["n"], sorted(k for k in row if k.startswith("hits"))
        (3, ['hits', 'hits_hi', 'hits_lo'])
        """
        if self.experiment is not None:
            return self.experiment.summarize(self.rows)
        outputs = [c for c in self.columns() if c not in INDEX_COLUMNS and c not in self.params
                   and all(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool)
                           for r in self.rows)]
        return summarize_rows(self.rows, self.params, means=outputs)

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the rows as CSV (stdlib :mod:`csv`; ``None`` as an empty cell)."""
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=self.columns(), restval="")
            w.writeheader()
            for r in self.rows:
                w.writerow({k: "" if v is None else v for k, v in r.items()})


# -------------------------------------------------------------------- progress
class _Progress:
    """tqdm when installed, else a plain stderr line at most every 2 s; never in results."""

    def __init__(self, how: bool | ProgressFn, total: int, done: int, desc: str) -> None:
        self.total, self.done = total, done
        self.fn: ProgressFn | None = how if callable(how) else None
        self.bar: Any = None
        self.line = False
        self.t0 = time.monotonic()
        self.start_done = done
        self.last = 0.0
        if how is True:
            try:  # optional, and untyped without types-tqdm: looked up at run time
                tqdm_auto: Any = importlib.import_module("tqdm.auto")
            except ImportError:
                self.line = True
            else:
                self.bar = tqdm_auto.tqdm(total=total, initial=done, desc=desc, unit="trial")

    def update(self) -> None:
        self.done += 1
        if self.fn is not None:
            self.fn(self.done, self.total)
        if self.bar is not None:
            self.bar.update(1)
        elif self.line:
            now = time.monotonic()
            if now - self.last >= 2.0 or self.done == self.total:
                self.last = now
                sys.stderr.write(self._text(now) + ("\n" if self.done == self.total else "\r"))
                sys.stderr.flush()

    def _text(self, now: float) -> str:
        elapsed = max(now - self.t0, 1e-9)
        rate = (self.done - self.start_done) / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        eta_s = "?" if math.isinf(eta) else f"{eta:.0f}s"
        return f"{self.done}/{self.total} trials, {rate:.2f} trials/s, ETA {eta_s}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -------------------------------------------------------------------- storage
def read_rows(path: str | os.PathLike[str], *, repair: bool = False) -> list[Row]:
    """Rows of a ``rows.jsonl`` file; a truncated last line is ignored (and cut off if *repair*).

    A damaged line anywhere else is an error: the file is not one this module wrote.
    """
    p = Path(path)
    if not p.exists():
        return []
    data = p.read_bytes()
    rows: list[Row] = []
    good = 0
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        if not line.strip():
            good += len(line) + (1 if i < len(lines) - 1 else 0)
            continue
        complete = i < len(lines) - 1  # followed by a newline
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not complete or not isinstance(row, dict):
            if complete:
                raise KmemsimValueError(f"{p}: line {i + 1} is not a JSON row")
            break  # a write cut short by a kill: that trial runs again
        rows.append(row)
        good += len(line) + 1
    if repair and good < len(data):
        with open(p, "r+b") as f:
            f.truncate(good)
    return rows


def _versions() -> dict[str, str]:
    from .. import __version__

    return {"kmemsim": __version__, "numpy": np.__version__,
            "python": platform.python_version()}


def _trial_name(trial: Callable[..., object]) -> str:
    return f"{getattr(trial, '__module__', '?')}.{getattr(trial, '__qualname__', repr(trial))}"


def _executor_name(executor: object) -> str:
    if executor is None:
        return "serial"
    return f"{type(executor).__module__}.{type(executor).__qualname__}"


# -------------------------------------------------------------------- the sweep
def run_sweep(trial: TrialFn, grid: Mapping[str, Sequence[Any]], *, trials: int = 10,
              seed: int = 0, executor: cf.Executor | None = None,
              progress: bool | ProgressFn = False, out: str | os.PathLike[str] | None = None,
              experiment: str | None = None, command: Sequence[str] | None = None) -> Sweep:
    """Run *trial* ``trials`` times at every point of *grid*; return the rows.

    * ``trial(params, seed)`` must be a top-level function (so a process pool
      or a cluster can import it) returning a dict of plain ``int``,
      ``float``, ``str``, ``bool`` or ``None`` values.
    * ``executor=None`` runs in this process; any
      :class:`concurrent.futures.Executor` works (``ProcessPoolExecutor``,
      a dask ``Client.get_executor()``).  It is not shut down here.
    * ``progress=True`` shows a bar (tqdm, or a plain stderr line); a
      callable gets ``(done, total)``.  Progress never changes results.
    * ``out=DIR`` streams rows to ``DIR/rows.jsonl`` and resumes from it,
      then writes ``DIR/results.csv`` and ``DIR/results.json``.  Resuming a
      different sweep (another trial function, grid or seed) in the same
      directory is an error; asking for more trials than before adds the
      missing ones.

    If a trial raises (or the run is interrupted), the rows already finished
    stay in ``rows.jsonl`` and the exception propagates.

    Cost: ``points x trials`` calls of *trial*, plus one JSON line each.
    """
    if not callable(trial):
        raise KmemsimTypeError(f"trial must be a callable, not {type(trial).__name__}")
    check_int("trials", trials, minimum=1)
    check_int("seed", seed, minimum=0)
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise KmemsimTypeError(f"executor must be a concurrent.futures.Executor, "
                               f"not {type(executor).__name__}")
    if not (isinstance(progress, bool) or callable(progress)):
        raise KmemsimTypeError(f"progress must be a bool or a callable, not "
                               f"{type(progress).__name__}")
    g = check_grid(grid)
    points = grid_points(g)
    metadata: dict[str, Any] = {
        "experiment": experiment,
        "trial": _trial_name(trial),
        "seed": seed,
        "grid": g,
        "trials": trials,
        "points": len(points),
        "command": shlex.join(sys.argv if command is None else command),
        "versions": _versions(),
        "executor": _executor_name(executor),
        "complete": False,
    }
    done: dict[tuple[int, int], Row] = {}
    outdir = None if out is None else Path(out)
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
        _check_resumable(outdir, metadata)
        for r in read_rows(outdir / ROWS_FILE, repair=True):
            key = (int(r["point"]), int(r["trial"]))
            if key[0] < len(points) and key[1] < trials:
                done[key] = r
        _write_meta(outdir, metadata)
    todo = [(p, t) for p in range(len(points)) for t in range(trials) if (p, t) not in done]
    bar = _Progress(progress, len(points) * trials, len(points) * trials - len(todo),
                    experiment or "sweep")
    started = time.time()
    sink: TextIO | None = None
    try:
        if outdir is not None:
            sink = open(outdir / ROWS_FILE, "a", encoding="utf-8")  # noqa: SIM115

        def finish(point: int, index: int, result: object) -> None:
            row = _make_row(point, index, points[point], result)
            done[(point, index)] = row
            if sink is not None:
                sink.write(json.dumps(row) + "\n")
                sink.flush()
            bar.update()

        if executor is None:
            for p, t in todo:
                finish(*_run_one(trial, points[p], seed, p, t))
        else:
            futures = [executor.submit(_run_one, trial, points[p], seed, p, t) for p, t in todo]
            try:
                for fut in cf.as_completed(futures):
                    finish(*fut.result())
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    finally:
        if sink is not None:
            sink.close()
        bar.close()
    rows = [done[(p, t)] for p in range(len(points)) for t in range(trials)]
    metadata["complete"] = True
    metadata["elapsed_s"] = round(time.time() - started, 3)  # wall time: metadata only
    sweep = Sweep(rows, metadata)
    if outdir is not None:
        sweep.to_csv(outdir / CSV_FILE)
        _write_meta(outdir, metadata)
    return sweep


_RESUME_KEYS = ("experiment", "trial", "seed", "grid")


def _check_resumable(outdir: Path, metadata: Mapping[str, Any]) -> None:
    meta_path = outdir / META_FILE
    if not meta_path.exists():
        if (outdir / ROWS_FILE).exists():
            raise KmemsimValueError(f"out directory {outdir} has {ROWS_FILE} but no {META_FILE}: "
                                    "not a sweep this module can resume")
        return
    try:
        old = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise KmemsimValueError(f"{meta_path} is not valid JSON: {exc}") from None
    for key in _RESUME_KEYS:
        if old.get(key) != json.loads(json.dumps(metadata[key])):
            raise KmemsimValueError(
                f"out directory {outdir} holds a different sweep ({key} was {old.get(key)!r}, "
                f"now {metadata[key]!r}): choose another out directory")


def _write_meta(outdir: Path, metadata: Mapping[str, Any]) -> None:
    tmp = outdir / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, outdir / META_FILE)
