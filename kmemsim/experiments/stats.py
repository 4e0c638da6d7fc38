"""Confidence intervals and per-point summaries of sweep rows.

Rates are pooled over the trials of a grid point (``sum(successes) /
sum(n)``) with a Wilson score interval; means of per-trial values get a
normal-approximation interval.  Pooling counts objects across trials as if
they were independent; objects of one heap are not (a hidden reference to a
subtree makes the whole subtree a false positive), so read the interval of a
pooled object rate as a lower bound on the uncertainty, and trust the
per-trial rates (``trials`` large) more than the object counts.

>>> lo, hi = wilson_interval(8, 10)
>>> round(lo, 3), round(hi, 3)
(0.49, 0.943)
>>> rows = [{"point": 0, "trial": 0, "p": 1, "fp": 2, "live": 10},
...         {"point": 0, "trial": 1, "p": 1, "fp": 0, "live": 10}]
>>> s = summarize_rows(rows, ["p"], rates={"fp_rate": ("fp", "live")})
>>> s[0]["n"], s[0]["fp_rate"], s[0]["fp"], s[0]["live"]
(2, 0.1, 2, 20)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import KmemsimValueError, check_int

Row = dict[str, Any]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a proportion ``successes / n`` (95% for ``z=1.96``).

    With ``n == 0`` there is no information: ``(0.0, 1.0)``.

    >>> wilson_interval(0, 20)[0]
    0.0
    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    >>> wilson_interval(3, 2)
    Traceback (most recent call last):
    ...
    kmemsim.errors.KmemsimValueError: successes must be at most n (2), got 3
    """
    check_int("successes", successes, minimum=0)
    check_int("n", n, minimum=0)
    if successes > n:
        raise KmemsimValueError(f"successes must be at most n ({n}), got {successes}")
    if not z > 0:
        raise KmemsimValueError(f"z must be positive, got {z}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: Sequence[float], z: float = 1.96) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean and a normal-approximation interval (``nan`` when empty).

    >>> [round(x, 2) for x in mean_interval([1.0, 3.0])]
    [2.0, 0.04, 3.96]
    >>> mean_interval([5.0])
    (5.0, 5.0, 5.0)
    """
    if not values:
        return math.nan, math.nan, math.nan
    n = len(values)
    m = sum(values) / n
    if n == 1:
        return m, m, m
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    half = z * sd / math.sqrt(n)
    return m, m - half, m + half


def group_by_point(rows: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The rows of each grid point, points in index order, trials in index order."""
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(int(r["point"]), []).append(r)
    return [sorted(groups[p], key=lambda r: int(r["trial"])) for p in sorted(groups)]


def summarize_rows(rows: Sequence[Mapping[str, Any]], params: Sequence[str], *,
                   rates: Mapping[str, tuple[str, str]] | None = None,
                   means: Sequence[str] = (), z: float = 1.96) -> list[Row]:
    """One row per grid point: the parameters, ``n`` (trials), then each metric.

    ``rates`` maps a metric name to ``(successes column, total column)``: the
    metric is the pooled ratio, with ``{metric}_lo``/``{metric}_hi`` from
    :func:`wilson_interval`, and both pooled sums are kept (as ``{column}_total``
    when the column is a parameter, such as a number of objects per trial).  ``means`` are
    columns averaged over trials (rows where the value is ``None`` are
    skipped), with a normal-approximation interval.
    """
    out: list[Row] = []
    for group in group_by_point(rows):
        first = group[0]
        row: Row = {p: first[p] for p in params}
        row["point"] = int(first["point"])
        row["n"] = len(group)
        for metric, (num, den) in (rates or {}).items():
            s = sum(int(r[num]) for r in group)
            t = sum(int(r[den]) for r in group)
            # a parameter used as a count keeps its value; its pooled sum is "{name}_total"
            row[f"{num}_total" if num in params else num] = s
            row[f"{den}_total" if den in params else den] = t
            row[metric] = s / t if t else math.nan
            row[f"{metric}_lo"], row[f"{metric}_hi"] = wilson_interval(s, t, z)
        for col in means:
            vals = [float(r[col]) for r in group if r.get(col) is not None]
            row[col], row[f"{col}_lo"], row[f"{col}_hi"] = mean_interval(vals, z)
        out.append(row)
    return out
