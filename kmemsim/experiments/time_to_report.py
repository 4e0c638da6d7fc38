"""Experiment 4: time to report, and transient reports from a scan racing a mutation.

Two things share one simulated machine, scanned every ``period`` seconds
for ``scans`` scans:

* ``leaks`` objects leak at random times during the first period, with
  ``content`` ``"data"`` (a non-zero word: the first scan that finds it
  white only records its checksum) or ``"zero"`` (kzalloc'ed, CRC 0:
  reportable by the first scan that finds it white and 5 s old).  Measured:
  how many scans, and seconds, until each is reported.
* a singly linked ``chain`` of live nodes moves between two queue heads.
  Before every scan it sits on the head the scan reads second; with
  probability ``relink_p`` the program splices it onto the other head after
  that head was scanned and before the second is (staged through the
  scan's observer, as the gallery does): that scan sees no reference to
  the chain.  The nodes themselves do not change, so the checksum pass only
  spares them the first time (their stored checksum is still the initial
  value); the next race reports them.  The tail is all zeros with
  ``content="zero"``, and CRC 0 equals the initial checksum: reported at the
  first race.  Measured: chain nodes ever reported (all are false).

``min_unref_scans`` (2026 proposal: report only after N consecutive
unreferenced scans) and ``checksum_seed`` (``"0"`` as today, ``"~0"`` as
proposed) switch the reporting rules; they are applied to the same scans by
:class:`~kmemsim.experiments.rules.ReportRules`, so kmemleak itself is
unchanged.

>>> import numpy as np
>>> row = time_to_report_trial({"period": 10.0, "content": "data", "min_unref_scans": 1,
...     "checksum_seed": "0", "relink_p": 0.0, "leaks": 4, "chain": 3, "scans": 4},
...     np.random.SeedSequence(0))
>>> row["reported"], row["mean_scans"], row["chain_fp"]
(4, 2.0, 0)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import KmemsimValueError
from ..kmemleak.object import KmemleakObject
from ._common import boot, payload, rng_of
from .experiment import Experiment
from .rules import CHECKSUM_SEEDS, ReportRules
from .stats import Row, summarize_rows

OBJECT_SIZE = 64


class _Race:
    """A scan observer: splice the chain onto the head scanned first, once both are seen."""

    def __init__(self, queues: list[int], where: list[int], move: Callable[[int], None],
                 armed: bool) -> None:
        self.queues, self.where, self.move, self.armed = queues, where, move, armed
        self.order: list[int] = []
        self.relinked = 0

    def __call__(self, event: str, obj: object) -> None:
        if event != "scan_object" or not isinstance(obj, KmemleakObject):
            return
        if obj.pointer in self.queues and obj.pointer not in self.order:
            self.order.append(obj.pointer)
            # the chain's head is about to be scanned, the other one already was
            if self.armed and len(self.order) == 2 \
                    and obj.pointer == self.queues[self.where[0]]:
                self.move(self.queues.index(self.order[0]))
                self.relinked += 1


def time_to_report_trial(params: dict[str, Any], seed: np.random.SeedSequence
                         ) -> dict[str, Any]:
    """Leak objects, race a chain against the scans, count scans to report and false reports."""
    period, content = float(params["period"]), str(params["content"])
    nleaks, nchain, nscans = int(params["leaks"]), int(params["chain"]), int(params["scans"])
    relink_p = float(params["relink_p"])
    if content not in ("data", "zero"):
        raise KmemsimValueError(f"content must be 'data' or 'zero', got {content!r}")
    if str(params["checksum_seed"]) not in CHECKSUM_SEEDS:
        raise KmemsimValueError(f"checksum_seed must be '0' or '~0', got "
                                f"{params['checksum_seed']!r}")
    if period <= 0 or nleaks < 0 or nchain < 1 or nscans < 1 or not 0 <= relink_p <= 1:
        raise KmemsimValueError("period must be > 0, leaks >= 0, chain and scans >= 1, "
                                "relink_p in [0, 1]")
    rules = ReportRules(min_unref_scans=int(params["min_unref_scans"]),
                        checksum_seed=str(params["checksum_seed"]))
    rng = rng_of(seed)
    k = boot(seed)
    ws = k.arch.word_size
    heads = k.define_static("queues", 2 * ws)
    queues = [k.kzalloc(OBJECT_SIZE), k.kzalloc(OBJECT_SIZE)]
    for i, q in enumerate(queues):
        k.store(heads + i * ws, q)
    chain = [k.kzalloc(OBJECT_SIZE) for _ in range(nchain)]
    for a, b in itertools.pairwise(chain):
        k.store(a + ws, b)  # next pointer in word 1
    if content == "data":
        for node in chain:
            k.memory.write_word(node, payload(rng, ws))
    where = [1]  # which queue holds the chain

    def move(to: int) -> None:
        k.memory.write_word(queues[where[0]] + ws, 0)
        k.store(queues[to] + ws, chain[0])
        where[0] = to

    move(1)
    # leaks at random moments of the first period
    t0 = k.uptime
    times = sorted(float(x) for x in rng.uniform(0.0, period, size=nleaks))
    born: dict[int, float] = {}
    for t in times:
        k.sleep(max(0.0, t0 + t - k.uptime))
        p = k.kzalloc(OBJECT_SIZE)
        if content == "data":
            k.memory.write_word(p, payload(rng, ws))
        born[p] = k.uptime
    first_report: dict[int, tuple[int, float]] = {}
    chain_reported: set[int] = set()
    relinks = 0
    for s in range(1, nscans + 1):
        k.sleep(max(0.0, t0 + s * period - k.uptime))
        race = _Race(queues, where, move, bool(rng.random() < relink_p))
        result = k.kmemleak.scan(observer=race)
        relinks += race.relinked
        order = race.order
        for p in rules.observe(result):
            if p in born and p not in first_report:
                first_report[p] = (s, k.uptime - born[p])
            elif p in chain:
                chain_reported.add(p)
        # between scans the program puts the chain back where the next scan reads it last
        if order and queues[where[0]] != order[-1]:
            move(queues.index(order[-1]))
    scans_needed = [s for s, _ in first_report.values()]
    seconds = [t for _, t in first_report.values()]
    return {
        "reported": len(first_report),
        "mean_scans": sum(scans_needed) / len(scans_needed) if scans_needed else None,
        "max_scans": max(scans_needed) if scans_needed else None,
        "mean_seconds": sum(seconds) / len(seconds) if seconds else None,
        "chain_fp": len(chain_reported),
        "relinks": relinks,
    }


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Per point: ``report_rate`` (leaks reported within the scans), ``chain_fp_rate``
    (chain nodes falsely reported at least once), and the means of ``mean_scans``,
    ``mean_seconds`` and ``relinks`` with normal-approximation bounds."""
    return summarize_rows(rows, list(FULL_GRID),
                          rates={"report_rate": ("reported", "leaks"),
                                 "chain_fp_rate": ("chain_fp", "chain")},
                          means=("mean_scans", "mean_seconds", "relinks"))


FULL_GRID: dict[str, list[Any]] = {
    "period": [1.0, 5.0, 10.0, 60.0, 600.0],
    "content": ["data", "zero"],
    "min_unref_scans": [1, 2, 3],
    "checksum_seed": ["0", "~0"],
    "relink_p": [0.5],
    "leaks": [10],
    "chain": [4],
    "scans": [12],
}
QUICK_GRID: dict[str, list[Any]] = {
    **FULL_GRID,
    "period": [2.0, 60.0],
    "min_unref_scans": [1, 2],
    "scans": [8],
}

EXPERIMENT = Experiment(
    name="time_to_report",
    title="Time to report, and transient reports: current rules, min_unref_scans, ~0 checksums",
    trial=time_to_report_trial,
    full_grid=FULL_GRID,
    quick_grid=QUICK_GRID,
    full_trials=20,
    quick_trials=2,
    summarizer=summarize,
    description=__doc__ or "",
)
