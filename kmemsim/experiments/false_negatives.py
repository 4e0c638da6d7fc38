"""Experiment 2: false negatives against heap density; Boehm's PLDI'93 Table 1 setting.

The setting of Boehm, "Space Efficient Conservative Garbage Collection"
(PLDI'93), Table 1: ``lists`` circular linked lists of ``list_kb`` KiB each
are dropped (leaked), and ``random_words`` words of random data sit in
memory the scan reads (the paper's polluting environment variables and
static data; here live ``kmalloc(4096)`` buffers).  A list is falsely
retained when any random word lands inside any of its nodes: then one node
stays gray and the whole circle with it.  On a 32-bit machine the leaked
lists fill ``density = lists * list_kb KiB / 4 GiB`` of the address space; on
a 64-bit one, a vanishing fraction.

The model: a list of ``b`` bytes in a ``2**w`` address space is hit by one
uniform random word with probability ``p = b / 2**w``, so by ``n`` words
with probability ``1 - (1 - p)**n``.  Rows carry the model beside the
measured retained fraction; :func:`boehm_table` puts the paper's figures,
the number of random words the model needs to produce each of them, the
model and kmemleak's measurement side by side.

>>> import numpy as np
>>> row = false_negatives_trial({"arch": "i386", "lists": 4, "list_kb": 16,
...     "random_words": 0}, np.random.SeedSequence(0))
>>> row["retained"], row["model"]
(0, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import KmemsimValueError
from ._common import boot, rng_of
from .experiment import Experiment
from .stats import Row, summarize_rows, wilson_interval

NODE_SIZE = 4096
"""Bytes per list node: a list of ``list_kb`` KiB has ``list_kb / 4`` nodes (contiguous slab
objects, so the bytes a random word can hit are exactly the list's bytes)."""
CHUNK = 4096
"""Bytes per buffer of random data words."""

#: Boehm, PLDI'93, Table 1: percentage of the 200 lists of 100 KB retained, 32-bit machines.
#: (machine and build, without black-listing lo, hi, with black-listing lo, hi)
BOEHM_TABLE1: tuple[tuple[str, float, float, float, float], ...] = (
    ("SPARC, static link, unoptimised", 79.0, 79.5, 0.0, 0.5),
    ("SPARC, static link, optimised", 78.0, 78.5, 0.5, 1.0),
    ("SPARC, dynamic link, unoptimised", 8.0, 9.5, 0.5, 0.5),
    ("SPARC, dynamic link, optimised", 9.0, 11.5, 0.0, 0.5),
    ("SGI, static link, unoptimised", 1.5, 8.0, 0.0, 0.0),
    ("SGI, static link, optimised", 1.0, 4.0, 0.0, 0.0),
    ("OS/2, static link, unoptimised", 28.0, 28.0, 3.0, 3.0),
    ("OS/2, static link, optimised", 26.0, 26.0, 1.0, 1.0),
    ("PCR, mixed", 44.5, 55.0, 1.5, 3.5),
)
BOEHM_LISTS = 200
BOEHM_LIST_KB = 100


def hit_probability(list_bytes: int, word_bits: int) -> float:
    """``p``: the chance that one uniform random word lands in a block of *list_bytes*.

    >>> round(hit_probability(100 * 1024, 32), 8)
    2.384e-05
    """
    return list_bytes / float(1 << word_bits)


def model_retained(list_bytes: int, word_bits: int, words: int) -> float:
    """``1 - (1 - p)**n``: the chance that *words* random words retain one list.

    >>> round(model_retained(100 * 1024, 32, 30_000), 3)
    0.511
    """
    p = hit_probability(list_bytes, word_bits)
    return -math.expm1(words * math.log1p(-p))


def words_for(fraction: float, list_bytes: int, word_bits: int) -> int:
    """How many random words the model needs to retain *fraction* of the lists.

    >>> words_for(0.7925, 100 * 1024, 32)
    65960
    """
    if not 0.0 <= fraction < 1.0:
        raise KmemsimValueError(f"fraction must be in [0, 1), got {fraction}")
    p = hit_probability(list_bytes, word_bits)
    return round(math.log1p(-fraction) / math.log1p(-p))


#: The random-word counts that reproduce the midpoint of each row of Table 1 (32-bit).
BOEHM_WORDS: tuple[int, ...] = tuple(
    words_for((lo + hi) / 200.0, BOEHM_LIST_KB * 1024, 32) for _, lo, hi, _, _ in BOEHM_TABLE1)


def false_negatives_trial(params: dict[str, Any], seed: np.random.SeedSequence
                          ) -> dict[str, Any]:
    """Leak the lists, pollute memory with random words, scan twice, count retained lists."""
    nlists, list_kb, nwords = int(params["lists"]), int(params["list_kb"]), \
        int(params["random_words"])
    if nlists < 1 or list_kb < 4 or list_kb % 4 or nwords < 0:
        raise KmemsimValueError("lists must be >= 1, list_kb a positive multiple of 4, "
                                "random_words >= 0")
    rng = rng_of(seed)
    k = boot(seed, arch=str(params["arch"]))
    ws = k.arch.word_size
    bits = 8 * ws
    per_list = list_kb * 1024 // NODE_SIZE
    heads = []
    for _ in range(nlists):
        nodes = [k.kmalloc(NODE_SIZE) for _ in range(per_list)]
        for a, b in zip(nodes, nodes[1:] + nodes[:1], strict=True):
            k.store(a, b)  # the circle; nothing outside points to it: leaked
        heads.append(nodes[0])
    # the polluting data: random words in live buffers hanging off a static table
    nchunks = -(-nwords * ws // CHUNK)
    if nchunks:
        table = k.define_static("environ_chunks", nchunks * ws)
        dtype = np.uint32 if ws == 4 else np.uint64
        words = rng.integers(0, (1 << bits) - 1, size=nwords, dtype=dtype, endpoint=True)
        data = words.astype("<u4" if ws == 4 else "<u8").tobytes()
        for i in range(nchunks):
            chunk = k.kmalloc(CHUNK)
            k.memory.write(chunk, data[i * CHUNK:(i + 1) * CHUNK].ljust(CHUNK, b"\0"))
            k.store(table + i * ws, chunk)
    k.sleep(6)
    k.kmemleak.scan()
    last = k.kmemleak.scan()
    listed = {r.pointer for r in last.unreferenced}
    retained = sum(1 for h in heads if h not in listed)
    list_bytes = per_list * NODE_SIZE
    return {
        "retained": retained,
        "density": nlists * list_bytes / float(1 << bits),
        "p_list": hit_probability(list_bytes, bits),
        "model": model_retained(list_bytes, bits, nwords),
        "retained_fraction": retained / nlists,
    }


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Per point: ``retained_rate`` (lists falsely retained, Wilson bounds) beside ``model``."""
    out = summarize_rows(rows, list(FULL_GRID), rates={"retained_rate": ("retained", "lists")})
    first = {int(r["point"]): r for r in rows}
    for r in out:
        src = first[int(r["point"])]
        r["model"], r["density"], r["p_list"] = src["model"], src["density"], src["p_list"]
    return out


def boehm_table(summary: Sequence[Mapping[str, Any]] = ()) -> list[Row]:
    """Table 1 of PLDI'93 beside the model and kmemleak's measurement, one row per machine.

    For each row of the paper: its range without and with black-listing (%),
    the random words ``n`` the model needs to retain the midpoint (200 lists
    of 100 KB, 32-bit), the model at ``n``, and, when *summary* (from
    :func:`summarize`) has an i386 point with 200 lists of 100 KiB and that
    ``n``, the measured retained percentage with its 95% bounds.  kmemleak
    has no black-listing: compare the measurement with the first column.

    >>> rows = boehm_table()
    >>> rows[0]["machine"], rows[0]["random_words"], rows[0]["model_pct"]
    ('SPARC, static link, unoptimised', 65960, 79.25)
    """
    measured = {int(r["random_words"]): r for r in summary
                if r.get("arch") == "i386" and int(r["lists"]) == BOEHM_LISTS
                and int(r["list_kb"]) == BOEHM_LIST_KB}
    out: list[Row] = []
    for (machine, lo, hi, blo, bhi), n in zip(BOEHM_TABLE1, BOEHM_WORDS, strict=True):
        row: Row = {"machine": machine, "paper_pct_lo": lo, "paper_pct_hi": hi,
                    "paper_blacklisting_pct_lo": blo, "paper_blacklisting_pct_hi": bhi,
                    "random_words": n, "random_kb": round(n * 4 / 1024, 1),
                    "model_pct": round(100 * model_retained(BOEHM_LIST_KB * 1024, 32, n), 2)}
        m = measured.get(n)
        if m is not None:
            s, t = int(m["retained"]), int(m["lists_total"])
            mlo, mhi = wilson_interval(s, t)
            row.update(kmemleak_pct=round(100 * s / t, 2), kmemleak_pct_lo=round(100 * mlo, 2),
                       kmemleak_pct_hi=round(100 * mhi, 2), kmemleak_lists=t)
        else:
            row.update(kmemleak_pct=None, kmemleak_pct_lo=None, kmemleak_pct_hi=None,
                       kmemleak_lists=0)
        out.append(row)
    return out


FULL_GRID: dict[str, list[Any]] = {
    "arch": ["i386", "x86_64"],
    "lists": [BOEHM_LISTS],
    "list_kb": [BOEHM_LIST_KB],
    "random_words": sorted({0, 500, *BOEHM_WORDS, 131_072}),
}
QUICK_GRID: dict[str, list[Any]] = {
    "arch": ["i386", "x86_64"],
    "lists": [20],
    "list_kb": [BOEHM_LIST_KB],
    "random_words": [0, 30_000],
}

EXPERIMENT = Experiment(
    name="false_negatives_density",
    title="False negatives against heap density; Boehm's PLDI'93 Table 1 setting",
    trial=false_negatives_trial,
    full_grid=FULL_GRID,
    quick_grid=QUICK_GRID,
    full_trials=5,
    quick_trials=2,
    summarizer=summarize,
    description=__doc__ or "",
)
