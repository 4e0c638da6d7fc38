"""Experiment 5: four leak detectors on one workload, each with precision and recall.

The workload runs for ``duration`` simulated seconds:

* a cache of long-lived objects (filled during the first half, never freed;
  a share ``hidden`` of them referenced only through an XOR-encoded word,
  a share ``interior`` only through an embedded ``list_head``, an interior
  pointer that memcheck calls "possibly lost");
* requests arriving at ``rate`` per second, each handled in a kernel
  thread's stack frame that keeps its buffer in a local, parked in a live
  table, and freed after an exponential lifetime of mean ``lifetime`` s;
  with probability ``leak_p`` the buffer is forgotten instead (a leak).

Then kmemleak scans twice and every detector gives its verdict on each
block the workload allocated (blocks from before it started are not
judged: a tracing tool attached later never saw them):

* ``kmemleak``: listed in ``/sys/kernel/debug/kmemleak``;
* ``bcc``: a tracing detector in the style of bcc ``memleak``: allocations
  still outstanding and older than ``older`` seconds (``-o``), grouped by
  allocation site (its stacks);
* ``lsan``: LeakSanitizer's ``direct`` or ``indirect`` leaks;
* ``valgrind``: memcheck's ``definitely``, ``indirectly`` or ``possibly lost``,

all from :func:`kmemsim.truth.tool_views`, against the truth (leaked:
unreachable through the program's references).

>>> import numpy as np
>>> row = detectors_trial({"older": 5.0, "hidden": 0.0, "interior": 0.0, "leak_p": 0.2, "rate": 2.0,
...     "lifetime": 0.5, "duration": 20.0, "cache": 8}, np.random.SeedSequence(0))
>>> row["truth_leaks"] > 0, row["bcc_fp"] >= 8
(True, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import KmemsimValueError
from ..truth import Interior, Xor, tool_views
from ..truth.views import (
    LEAKED,
    LSAN_DIRECT,
    LSAN_INDIRECT,
    VG_DEFINITE,
    VG_INDIRECT,
    VG_POSSIBLE,
)
from ._common import boot, choice, payload, rng_of
from .experiment import Experiment
from .stats import Row, summarize_rows

TOOLS = ("kmemleak", "bcc", "lsan", "valgrind")
SLOTS = 64
"""Live request table size (requests in flight at once, at most)."""
SIZES = [32, 64, 128, 256]
CACHE_SIZE = 192
TASKS = 4


def detectors_trial(params: dict[str, Any], seed: np.random.SeedSequence) -> dict[str, Any]:
    """Run the workload, scan, and score each detector against the truth."""
    older, hidden, leak_p = float(params["older"]), float(params["hidden"]), \
        float(params["leak_p"])
    interior = float(params["interior"])
    rate, lifetime, duration = float(params["rate"]), float(params["lifetime"]), \
        float(params["duration"])
    ncache = int(params["cache"])
    if older < 0 or not 0 <= hidden <= 1 or not 0 <= interior <= 1 - hidden or not 0 <= leak_p <= 1 or rate <= 0 \
            or lifetime <= 0 or duration <= 0 or ncache < 0:
        raise KmemsimValueError("older >= 0, hidden, interior, hidden + interior and leak_p in "
                                "[0, 1], rate, lifetime and "
                                "duration > 0, cache >= 0")
    rng = rng_of(seed)
    k = boot(seed)
    ws = k.arch.word_size
    cache_table = k.define_static("obj_cache", max(1, ncache) * ws)
    req_table = k.define_static("inflight", SLOTS * ws)
    tasks = [k.spawn(f"kworker/u8:{i}") for i in range(TASKS)]
    outstanding: dict[int, tuple[float, str]] = {}  # what a tracer's BPF map holds
    # the timeline: (time, kind, index)
    events: list[tuple[float, int, int]] = [
        (float(t), 0, i) for i, t in enumerate(rng.uniform(0, duration / 2, size=ncache))]
    narrivals = int(rng.poisson(rate * duration))
    for i, t in enumerate(np.sort(rng.uniform(0, duration, size=narrivals))):
        events.append((float(t), 1, i))
    events.sort()
    free_at: list[tuple[float, int, int, bool]] = []  # (time, slot, buffer, leak)
    free_slots = list(range(SLOTS))
    t0 = k.uptime

    def advance(t: float) -> None:
        # frees due before t happen first, in time order
        free_at.sort()
        while free_at and free_at[0][0] <= t:
            when, slot, buf, leak = free_at.pop(0)
            k.sleep(max(0.0, t0 + when - k.uptime))
            k.memory.write_word(req_table + slot * ws, 0)
            if not leak:
                k.kfree(buf)
                del outstanding[buf]
            free_slots.append(slot)
        k.sleep(max(0.0, t0 + t - k.uptime))

    for t, kind, i in events:
        advance(t)
        if kind == 0:
            p = k.kmalloc(CACHE_SIZE)
            k.memory.write_word(p, payload(rng, ws))
            u = rng.random()
            enc = Xor() if u < hidden else Interior(offset=16) if u < hidden + interior \
                else None
            k.store(cache_table + i * ws, p, encoding=enc)
            outstanding[p] = (k.uptime, "cache_fill")
        elif free_slots:
            slot = free_slots.pop(int(rng.integers(len(free_slots))))
            with k.task_context(tasks[int(rng.integers(TASKS))]), \
                    k.stack_frame(int(rng.integers(2, 8))) as frame:
                buf = k.kmalloc(choice(rng, SIZES))
                k.memory.write_word(buf, payload(rng, ws))
                k.store(frame.slot(int(rng.integers(frame.nwords))), buf)
                k.store(req_table + slot * ws, buf)
            outstanding[buf] = (k.uptime, "handle_request")
            free_at.append((t + float(rng.exponential(lifetime)), slot, buf,
                            bool(rng.random() < leak_p)))
    advance(duration)
    k.kmemleak.scan()
    k.kmemleak.scan()
    now = k.uptime
    views = tool_views(k)
    rows = [views[p] for p in outstanding]
    truth = [r.truth == LEAKED for r in rows]
    said = {
        "kmemleak": [r.listed for r in rows],
        "bcc": [now - outstanding[r.address][0] >= older for r in rows],
        "lsan": [r.lsan in (LSAN_DIRECT, LSAN_INDIRECT) for r in rows],
        "valgrind": [r.valgrind in (VG_DEFINITE, VG_INDIRECT, VG_POSSIBLE) for r in rows],
    }
    out: dict[str, Any] = {"blocks": len(rows), "truth_leaks": sum(truth)}
    for tool, flags in said.items():
        tp = sum(1 for f, t in zip(flags, truth, strict=True) if f and t)
        fp = sum(1 for f, t in zip(flags, truth, strict=True) if f and not t)
        out[f"{tool}_tp"], out[f"{tool}_fp"] = tp, fp
        out[f"{tool}_fn"] = sum(truth) - tp
        out[f"{tool}_reported"] = tp + fp
    # bcc groups by stack: which sites it lists, and which of them really leak
    sites = {s for p, (t, s) in outstanding.items() if now - t >= older}
    leaky = {outstanding[r.address][1] for r, t in zip(rows, truth, strict=True) if t}
    out["bcc_sites"] = len(sites)
    out["bcc_sites_leaky"] = len(sites & leaky)
    return out


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Per point and tool: ``{tool}_precision`` (TP / reported) and ``{tool}_recall``
    (TP / real leaks), pooled over trials, with Wilson bounds."""
    rates: dict[str, tuple[str, str]] = {}
    for tool in TOOLS:
        rates[f"{tool}_precision"] = (f"{tool}_tp", f"{tool}_reported")
        rates[f"{tool}_recall"] = (f"{tool}_tp", "truth_leaks")
    return summarize_rows(rows, list(FULL_GRID), rates=rates)


FULL_GRID: dict[str, list[Any]] = {
    "older": [0.5, 5.0, 30.0],
    "hidden": [0.0, 0.1],
    "interior": [0.25],
    "leak_p": [0.05],
    "rate": [5.0],
    "lifetime": [0.5],
    "duration": [120.0],
    "cache": [64],
}
QUICK_GRID: dict[str, list[Any]] = {
    **FULL_GRID,
    "older": [0.5, 30.0],
    "hidden": [0.1],
    "leak_p": [0.1],
    "duration": [40.0],
    "cache": [16],
}

EXPERIMENT = Experiment(
    name="detectors",
    title="kmemleak, a bcc-memleak-style tracer, LeakSanitizer and Valgrind on one workload",
    trial=detectors_trial,
    full_grid=FULL_GRID,
    quick_grid=QUICK_GRID,
    full_trials=10,
    quick_trials=2,
    summarizer=summarize,
    description=__doc__ or "",
)
