"""Experiment 3: stale stacks and reused memory, with ``stack=on``/``off`` and slab poisoning.

``tasks`` kernel threads handle ``calls`` requests.  Each call runs in
nested stack frames of random depth and size, allocates a buffer (kept in
a local), and installs a request object pointing to it in a live table,
replacing the request that was there; the old request is freed, and with
probability ``leak_p`` its buffer is forgotten instead of freed: a real
leak.  What can keep such a leak gray (a false negative):

* a **stale stack slot**: the returned function's local, below the live
  frames, not yet overwritten by a later call (``stack=off`` removes these);
* **stale bytes of reused memory**: the freed request still held the
  buffer's address, and SLUB handed that memory out again without clearing
  it (``slub_debug=P`` poisons freed objects and removes these);
* a SLUB **freelist word** or another leak holding it.

At the end each task is blocked in a function whose only reference to a
live buffer is a local: with ``stack=off`` those are false positives, the
price of turning stack scanning off.

>>> import numpy as np
>>> row = stale_stacks_trial({"stack": "on", "poison": False, "calls": 30, "leak_p": 0.3,
...     "tasks": 2, "arch": "x86_64"}, np.random.SeedSequence(0))
>>> row["leaks"] == row["tp"] + row["fn"] + row["pending"], row["fp"]
(True, 0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np

from ..errors import KmemsimValueError
from ..truth import judge
from ..truth.judge import FALSE_NEGATIVE, FALSE_POSITIVE, PENDING, TRUE_POSITIVE
from ._common import KMEMLEAK, age_and_scan_twice, boot, choice, payload, rng_of
from .experiment import Experiment
from .stats import Row, summarize_rows

SLOTS = 16
"""Live request table size: a request lives until a later call reuses its slot."""
REQUEST_SIZE = 64
BUFFER_SIZES = [64, 96, 128, 192]
STACK_CAUSES = ("stale stack slot", "stale stack word")
REUSE_CAUSES = ("stale bytes of a reused object", "stale bytes of a freed object",
                "copy of an old reference")


def stale_stacks_trial(params: dict[str, Any], seed: np.random.SeedSequence
                       ) -> dict[str, Any]:
    """Run the request workload, age, scan twice, and classify every buffer."""
    stack, poison = str(params["stack"]), bool(params["poison"])
    ncalls, ntasks, leak_p = int(params["calls"]), int(params["tasks"]), float(params["leak_p"])
    if stack not in ("on", "off"):
        raise KmemsimValueError(f"stack must be 'on' or 'off', got {stack!r}")
    if ncalls < 1 or ntasks < 1 or not 0.0 <= leak_p <= 1.0:
        raise KmemsimValueError("calls and tasks must be >= 1 and leak_p in [0, 1]")
    rng = rng_of(seed)
    k = boot(seed, arch=str(params["arch"]), cmdline="slub_debug=P" if poison else "")
    if stack == "off":
        k.write(KMEMLEAK, "stack=off")
    ws = k.arch.word_size
    table = k.define_static("req_table", SLOTS * ws)
    tasks = [k.spawn(f"kworker/{i}:1") for i in range(ntasks)]
    requests: dict[int, tuple[int, int, bool]] = {}  # slot -> (request, buffer, will leak)
    leaked: list[int] = []
    for _ in range(ncalls):
        task = tasks[int(rng.integers(ntasks))]
        with k.task_context(task), ExitStack() as frames:
            frame = None
            for _depth in range(int(rng.integers(1, 4))):  # the call chain down to the handler
                frame = frames.enter_context(k.stack_frame(int(rng.integers(2, 10))))
            assert frame is not None
            s = int(rng.integers(SLOTS))
            old = requests.pop(s, None)
            if old is not None:
                req_old, buf_old, leak = old
                k.memory.write_word(table + s * ws, 0)
                if leak:
                    leaked.append(buf_old)  # the bug: the buffer is forgotten
                else:
                    k.kfree(buf_old)
                k.kfree(req_old)
            # the new buffer may get the old request's memory, stale words and all
            buf = k.kmalloc(choice(rng, BUFFER_SIZES))
            k.memory.write_word(buf, payload(rng, ws))
            k.store(frame.slot(int(rng.integers(frame.nwords))), buf)  # the local
            req = k.kmalloc(REQUEST_SIZE)
            k.memory.write_word(req, payload(rng, ws))
            k.store(req + ws, buf)
            k.store(table + s * ws, req)
            requests[s] = (req, buf, bool(rng.random() < leak_p))
    # each task now blocks in a function holding a live buffer in a local only
    blocked = []
    inflight = []
    with ExitStack() as held:
        for task in tasks:
            with k.task_context(task):
                frame = held.enter_context(k.stack_frame(4))
                p = k.kmalloc(choice(rng, BUFFER_SIZES))
                k.memory.write_word(p, payload(rng, ws))
                k.store(frame.slot(1), p)
                inflight.append(p)
                blocked.append(frame)
        age_and_scan_twice(k)
        j = judge(k)
    verdicts = [j[p] for p in leaked]
    fn = [v for v in verdicts if v.kind == FALSE_NEGATIVE]
    return {
        "leaks": len(leaked),
        "tp": sum(1 for v in verdicts if v.kind == TRUE_POSITIVE),
        "fn": len(fn),
        "pending": sum(1 for v in verdicts if v.kind == PENDING),
        "fn_stack": sum(1 for v in fn if v.cause in STACK_CAUSES),
        "fn_reused": sum(1 for v in fn if v.cause in REUSE_CAUSES),
        "fn_freelist": sum(1 for v in fn if v.cause == "freelist word"),
        "fn_other": sum(1 for v in fn if v.cause not in STACK_CAUSES + REUSE_CAUSES
                        and v.cause != "freelist word"),
        "inflight": len(inflight),
        "fp": sum(1 for p in inflight if j[p].kind == FALSE_POSITIVE),
    }


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Per point: ``fn_rate`` (leaks not reported) split into ``fn_stack_rate``,
    ``fn_reused_rate``, ``fn_freelist_rate``, ``fn_other_rate``; ``fp_rate`` over the
    buffers held only in a blocked task's local."""
    return summarize_rows(rows, list(FULL_GRID), rates={
        "fn_rate": ("fn", "leaks"),
        "fn_stack_rate": ("fn_stack", "leaks"),
        "fn_reused_rate": ("fn_reused", "leaks"),
        "fn_freelist_rate": ("fn_freelist", "leaks"),
        "fn_other_rate": ("fn_other", "leaks"),
        "fp_rate": ("fp", "inflight"),
    })


FULL_GRID: dict[str, list[Any]] = {
    "stack": ["on", "off"],
    "poison": [False, True],
    "calls": [400],
    "leak_p": [0.1],
    "tasks": [4],
    "arch": ["x86_64"],
}
QUICK_GRID: dict[str, list[Any]] = {**FULL_GRID, "calls": [60], "leak_p": [0.3]}

EXPERIMENT = Experiment(
    name="stale_stacks",
    title="Stale stacks and reused memory: stack=on/off, with and without slab poisoning",
    trial=stale_stacks_trial,
    full_grid=FULL_GRID,
    quick_grid=QUICK_GRID,
    full_trials=20,
    quick_trials=2,
    summarizer=summarize,
    description=__doc__ or "",
)
