"""An experiment: a named trial function with its grids, trial counts and summary.

>>> from kmemsim.experiments import EXPERIMENTS
>>> exp = EXPERIMENTS["false_positives"]
>>> exp.name, list(exp.grid(quick=True))[:3], exp.default_trials(quick=True)
('false_positives', ['cause', 'fraction', 'annotation'], 2)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import KmemsimTypeError, KmemsimValueError
from .stats import Row
from .sweep import TrialFn

#: Environment variable that selects the quick grids (notebooks in CI).
QUICK_ENV = "KMEMSIM_QUICK"


def quick_mode() -> bool:
    """True when ``KMEMSIM_QUICK`` is set to a true value (``1``, ``true``, ``yes``, ``on``).

    >>> import os
    >>> os.environ.pop("KMEMSIM_QUICK", None) and None
    >>> quick_mode()
    False
    """
    return os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes", "on", "y")


@dataclass(frozen=True)
class Experiment:
    """A built-in experiment (see :data:`kmemsim.experiments.EXPERIMENTS`).

    ``trial(params, seed)`` is a top-level function; :meth:`grid` gives the
    full or quick parameter grid (the cartesian product is swept);
    :meth:`summarize` turns trial rows into one row per grid point with
    ``{metric}_lo``/``{metric}_hi`` 95% bounds.
    """

    name: str
    title: str
    trial: TrialFn
    full_grid: Mapping[str, Sequence[Any]]
    quick_grid: Mapping[str, Sequence[Any]]
    full_trials: int
    quick_trials: int
    summarizer: Callable[[Sequence[Mapping[str, Any]]], list[Row]]
    description: str = ""

    def grid(self, quick: bool = False) -> dict[str, list[Any]]:
        """The parameter grid (a fresh copy)."""
        g = self.quick_grid if quick else self.full_grid
        return {k: list(v) for k, v in g.items()}

    def default_trials(self, quick: bool = False) -> int:
        """Trials per grid point."""
        return self.quick_trials if quick else self.full_trials

    def summarize(self, rows: Sequence[Mapping[str, Any]]) -> list[Row]:
        """One row per grid point: parameters, ``n``, metrics with Wilson 95% bounds."""
        return self.summarizer(rows)

    def with_overrides(self, grid: Mapping[str, Sequence[Any]],
                       overrides: Mapping[str, Any]) -> dict[str, list[Any]]:
        """*grid* with some axes replaced; a scalar override becomes a one-value axis.

        >>> from kmemsim.experiments import EXPERIMENTS
        >>> exp = EXPERIMENTS["stale_stacks"]
        >>> exp.with_overrides(exp.grid(True), {"calls": 10})["calls"]
        [10]
        >>> exp.with_overrides(exp.grid(True), {"colour": "red"})
        Traceback (most recent call last):
        ...
        kmemsim.errors.KmemsimValueError: stale_stacks has no parameter 'colour' (parameters: stack, poison, calls, leak_p, tasks, arch)
        """
        g = {k: list(v) for k, v in grid.items()}
        for name, value in overrides.items():
            if name not in self.full_grid:
                raise KmemsimValueError(
                    f"{self.name} has no parameter {name!r} (parameters: "
                    f"{', '.join(self.full_grid)})")
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            if not values:
                raise KmemsimValueError(f"parameter {name!r} needs at least one value")
            g[name] = values
        return g

    def parse_value(self, name: str, text: str) -> list[Any]:
        """Command-line text for parameter *name* (comma-separated) as typed values.

        Each value takes the type of the parameter's default values.

        >>> from kmemsim.experiments import EXPERIMENTS
        >>> EXPERIMENTS["stale_stacks"].parse_value("poison", "yes,0")
        [True, False]
        """
        if name not in self.full_grid:
            raise KmemsimValueError(f"{self.name} has no parameter {name!r} (parameters: "
                                    f"{', '.join(self.full_grid)})")
        kinds = {type(v) for v in self.full_grid[name]}
        kind: type = kinds.pop() if len(kinds) == 1 else str
        out: list[Any] = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                raise KmemsimValueError(f"--{name}: empty value in {text!r}")
            out.append(_convert(name, part, kind))
        return out


def _convert(name: str, text: str, kind: type) -> Any:
    if kind is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on", "y"):
            return True
        if low in ("0", "false", "no", "off", "n"):
            return False
        raise KmemsimValueError(f"--{name} takes booleans (true/false), got {text!r}")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise KmemsimValueError(f"--{name} takes {kind.__name__} values, got {text!r}") \
                from None
    if kind is str:
        return text
    raise KmemsimTypeError(f"parameter {name!r} has values of unsupported type {kind.__name__}")
