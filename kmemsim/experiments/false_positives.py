"""Experiment 1: false positives by cause, and what each annotation buys back.

A live heap of ``objects`` nodes (a 4-ary tree, or a list, hanging off a
kernel static) plus ``leaks`` real leaks.  Each reference to a node is,
with probability ``fraction``, stored so kmemleak cannot see it: with an
encoding (``xor``, ``pfn``, ``physical``, ...) or in a place kmemleak does
not scan (``page_memory``: an ``alloc_pages`` table; ``no_scan_holder``: a
small buffer marked ``kmemleak_no_scan``; ``outside_scan_area``: a buffer
whose ``kmemleak_scan_area`` misses the pointer).  ``interior`` and
``low_bit_tag`` are visible encodings, controls that must give no false
positive.  Everything is aged and scanned twice, then judged.

``annotation`` is what the programmer adds: ``not_leak`` on every node
whose reference is hidden; ``scan_area`` on the holders (instead of
``kmemleak_no_scan``, or beside the area that misses the pointer);
``register_pages`` (``kmemleak_alloc(page, PAGE_SIZE, 1)``) on the page
table.  An annotation that does not apply to the cause changes nothing,
which is also an answer.

Outputs per trial: ``fp`` (live nodes reported), ``fp_direct`` (those whose
own reference was hidden; the rest are reported because their holder was),
``hidden``, ``nodes``, ``tp``/``fn`` over the ``leaks``.

>>> import numpy as np
>>> row = false_positives_trial({"cause": "xor", "fraction": 0.0, "annotation": "none",
...     "objects": 40, "shape": "tree", "leaks": 3, "arch": "x86_64"}, np.random.SeedSequence(0))
>>> row["fp"], row["tp"], row["nodes"]
(0, 3, 40)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import KmemsimValueError
from ..kernel import Kernel
from ..layout import PAGE_SIZE
from ..truth import (
    BaseOffset32,
    Encoding,
    HardenedFreelist,
    Interior,
    LowBitTag,
    OnePastTheEnd,
    Physical,
    Plain,
    Shifted,
    SplitHalves,
    TopByteTag,
    Unaligned,
    Xor,
    judge,
)
from ..truth.judge import FALSE_POSITIVE, TRUE_POSITIVE
from ._common import age_and_scan_twice, boot, payload, rng_of
from .experiment import Experiment
from .stats import Row, summarize_rows

#: Hidden references stored with an encoding kmemleak cannot read (on x86_64).
ENCODED_CAUSES = ("xor", "pfn", "physical", "one_past_end", "top_byte_tag", "split_halves",
                  "unaligned", "hardened_freelist", "base_offset32")
#: Plain references stored where kmemleak does not look.
PLACEMENT_CAUSES = ("page_memory", "no_scan_holder", "outside_scan_area")
#: Visible encodings: controls.
VISIBLE_CAUSES = ("interior", "low_bit_tag")
CAUSES = ENCODED_CAUSES + PLACEMENT_CAUSES + VISIBLE_CAUSES
ANNOTATIONS = ("none", "not_leak", "scan_area", "register_pages")
SHAPES = ("tree", "list")

NODE_SIZE = 128
"""Node bytes: word 0 is data, child slot j is word 1 + 2j (the next word is kept free for
encodings that write two words)."""
HOLDER_SIZE = 128
HOLDER_POINTER = 64
"""Offset of the pointer member in a holder buffer; the first 32 bytes are its data."""
FANOUT = 4


def _encoding(cause: str, k: Kernel) -> Encoding:
    ws = k.arch.word_size
    table: dict[str, Encoding] = {
        "xor": Xor(), "pfn": Shifted(), "physical": Physical(), "one_past_end": OnePastTheEnd(),
        "top_byte_tag": TopByteTag(), "split_halves": SplitHalves(gap=ws),
        "unaligned": Unaligned(shift=ws // 2), "hardened_freelist": HardenedFreelist(),
        "base_offset32": BaseOffset32(base=k.arch.page_offset),
        "interior": Interior(offset=8), "low_bit_tag": LowBitTag(tag=1),
    }
    return table.get(cause, Plain())


def _check(params: Mapping[str, Any]) -> None:
    if params["cause"] not in CAUSES:
        raise KmemsimValueError(f"cause must be one of {', '.join(CAUSES)}, got "
                                f"{params['cause']!r}")
    if params["annotation"] not in ANNOTATIONS:
        raise KmemsimValueError(f"annotation must be one of {', '.join(ANNOTATIONS)}, got "
                                f"{params['annotation']!r}")
    if params["shape"] not in SHAPES:
        raise KmemsimValueError(f"shape must be 'tree' or 'list', got {params['shape']!r}")
    if not 0.0 <= float(params["fraction"]) <= 1.0:
        raise KmemsimValueError(f"fraction must be in [0, 1], got {params['fraction']!r}")
    if int(params["objects"]) < 1 or int(params["leaks"]) < 0:
        raise KmemsimValueError("objects must be at least 1 and leaks at least 0")


def false_positives_trial(params: dict[str, Any], seed: np.random.SeedSequence
                          ) -> dict[str, Any]:
    """One heap with hidden references of one cause; returns the false-positive counts."""
    _check(params)
    cause, annotation = str(params["cause"]), str(params["annotation"])
    n, shape = int(params["objects"]), str(params["shape"])
    rng = rng_of(seed)
    k = boot(seed, arch=str(params["arch"]))
    ws = k.arch.word_size
    kl = k.kmemleak
    root = k.define_static("fp_root", ws)
    hidden = rng.random(n) < float(params["fraction"])
    hidden[0] = False  # the root's own pointer stays plain
    per_page = PAGE_SIZE // ws
    npages = -(-int(hidden.sum()) // per_page) if cause == "page_memory" else 0
    pages = [k.alloc_pages(0) for _ in range(npages)]
    if pages:
        table = k.define_static("fp_page_table", len(pages) * ws)
        for i, page in enumerate(pages):
            k.store(table + i * ws, page)
            if annotation == "register_pages":
                kl.kmemleak_alloc(page, PAGE_SIZE, 1)
    encoding = _encoding(cause, k)
    nodes: list[int] = []
    page_slots = 0
    for i in range(n):
        node = k.kzalloc(NODE_SIZE)
        k.memory.write_word(node, payload(rng, ws))
        nodes.append(node)
        if i == 0:
            k.store(root, node)
            continue
        parent = nodes[i - 1] if shape == "list" else nodes[(i - 1) // FANOUT]
        slot = parent + ws * (1 + 2 * (0 if shape == "list" else (i - 1) % FANOUT))
        if not hidden[i]:
            k.store(slot, node)
        elif cause in ENCODED_CAUSES or cause in VISIBLE_CAUSES:
            k.store(slot, node, encoding=encoding)
        elif cause == "page_memory":
            k.store(pages[page_slots // per_page] + (page_slots % per_page) * ws, node)
            page_slots += 1
        else:  # a holder buffer: data, then the pointer member at HOLDER_POINTER
            holder = k.kzalloc(HOLDER_SIZE)
            k.memory.write_word(holder, payload(rng, ws))
            k.store(slot, holder)
            k.store(holder + HOLDER_POINTER, node)
            if cause == "no_scan_holder":
                if annotation == "scan_area":  # what the code should have said instead
                    kl.kmemleak_scan_area(holder + HOLDER_POINTER, ws)
                else:
                    kl.kmemleak_no_scan(holder)
            else:  # outside_scan_area: the registered area covers the data only
                kl.kmemleak_scan_area(holder, 32)
                if annotation == "scan_area":
                    kl.kmemleak_scan_area(holder + HOLDER_POINTER, ws)
        if hidden[i] and annotation == "not_leak":
            kl.kmemleak_not_leak(node)
    leaks = []
    for _ in range(int(params["leaks"])):
        p = k.kmalloc(NODE_SIZE)
        k.memory.write_word(p, payload(rng, ws))
        leaks.append(p)
    age_and_scan_twice(k)
    j = judge(k)
    fp = [i for i, p in enumerate(nodes) if j[p].kind == FALSE_POSITIVE]
    tp = sum(1 for p in leaks if j[p].kind == TRUE_POSITIVE)
    return {
        "nodes": n,
        "hidden": int(hidden.sum()),
        "fp": len(fp),
        "fp_direct": sum(1 for i in fp if hidden[i]),
        "any_fp": int(bool(fp)),
        "tp": tp,
        "fn": len(leaks) - tp,
        "reported": len(fp) + tp,
    }


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Per point: ``fp_rate`` (false positives per live node), ``fp_direct_rate``,
    ``hidden_rate``, ``trial_fp_rate`` (share of trials with any false positive),
    ``precision`` and ``recall`` over the real leaks; each with Wilson bounds."""
    extended = [{**r, "one": 1} for r in rows]
    out = summarize_rows(extended, list(FULL_GRID), rates={
        "fp_rate": ("fp", "nodes"),
        "fp_direct_rate": ("fp_direct", "nodes"),
        "hidden_rate": ("hidden", "nodes"),
        "trial_fp_rate": ("any_fp", "one"),
        "precision": ("tp", "reported"),
        "recall": ("tp", "leaks"),
    })
    for r in out:
        del r["one"]
    return out


FULL_GRID: dict[str, list[Any]] = {
    "cause": list(CAUSES),
    "fraction": [0.0, 0.02, 0.05, 0.1, 0.2, 0.5],
    "annotation": list(ANNOTATIONS),
    "objects": [400],
    "shape": ["tree"],
    "leaks": [10],
    "arch": ["x86_64"],
}
QUICK_GRID: dict[str, list[Any]] = {
    "cause": ["xor", "page_memory", "no_scan_holder", "interior"],
    "fraction": [0.0, 0.2],
    "annotation": list(ANNOTATIONS),
    "objects": [60],
    "shape": ["tree"],
    "leaks": [5],
    "arch": ["x86_64"],
}

EXPERIMENT = Experiment(
    name="false_positives",
    title="False positives by cause, and what annotations buy back",
    trial=false_positives_trial,
    full_grid=FULL_GRID,
    quick_grid=QUICK_GRID,
    full_trials=10,
    quick_trials=2,
    summarizer=summarize,
    description=__doc__ or "",
)
