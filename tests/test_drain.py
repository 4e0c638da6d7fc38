"""The vectorised gray-list drain gives the reference drain's result bit for bit.

:func:`kmemsim.kmemleak.drain.drain_gray_list` scans the FIFO in waves with
numpy; :func:`~kmemsim.kmemleak.drain.drain_gray_list_reference` is the
kernel's one-edge-at-a-time loop.  Every property runs both on the same
random graph (need in ``{-1, 0, 1, 2, 3}``, ``excess_ref`` forwarding, rows
that are never scanned, duplicate edges) and compares ``need``, ``done``,
``gray_row`` and ``gray_dst`` exactly, with the wave threshold at 1 (every
wave through numpy), small, the default, and huge (every wave through the
Python loop), and chain jumps from the first possible wave, a little later,
at the default, or never.  Linked lists with loops, merges and every kind
of interruption stress the chain jumps.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmemsim.errors import KmemsimTypeError, KmemsimValueError
from kmemsim.kmemleak import drain
from kmemsim.kmemleak.drain import (
    JUMP_AFTER,
    MIN_NUMPY_WAVE,
    drain_gray_list,
    drain_gray_list_reference,
)

I64 = np.int64
NEVER = 1 << 40  # jump_after: chain jumps never start
#: (min_numpy_wave, jump_after): every wave through numpy or the loop, chain jumps from
#: wave 1 (the earliest), a little later, the default, or never
CONFIGS = ((1, 1), (1, NEVER), (3, 1), (3, 2), (MIN_NUMPY_WAVE, 1),
           (MIN_NUMPY_WAVE, JUMP_AFTER), (MIN_NUMPY_WAVE, 5), (1 << 30, 1), (1 << 30, NEVER))


@dataclass(frozen=True)
class Case:
    """One drain's input: ``n`` objects, ``nroots`` root rows, the edges as CSR."""

    queue: npt.NDArray[np.int64]
    indptr: npt.NDArray[np.int64]
    dst: npt.NDArray[np.int64]
    need: npt.NDArray[np.int64]
    fwd: npt.NDArray[np.int64]
    done: npt.NDArray[np.bool_]
    nroots: int

    @property
    def n(self) -> int:
        return len(self.need)


State = tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.int64],
              npt.NDArray[np.int64]]


def run(case: Case, config: tuple[int, int] | None = None) -> State:
    """Drain a copy of *case*'s state with ``(min_numpy_wave, jump_after)``; ``None``: the
    reference.  ``need, done, gray_row, gray_dst``."""
    need, done = case.need.copy(), case.done.copy()
    gray_row, gray_dst = np.full(case.n, -1, dtype=I64), np.zeros(case.n, dtype=I64)
    args = (case.queue, case.indptr, case.dst, need, case.fwd, done, gray_row, gray_dst,
            case.nroots)
    if config is None:
        drain_gray_list_reference(*args)
    else:
        drain_gray_list(*args, min_numpy_wave=config[0], jump_after=config[1])
    return need, done, gray_row, gray_dst


def assert_same_as_reference(case: Case) -> State:
    """Every configuration gives the reference's state; return it."""
    ref = run(case)
    for config in CONFIGS:
        got = run(case, config)
        for name, a, b in zip(("need", "done", "gray_row", "gray_dst"), ref, got, strict=True):
            assert np.array_equal(a, b), f"{name} differs with (min_numpy_wave, jump_after)" \
                f" = {config}"
    return ref


def csr(rows: list[list[int]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    indptr = np.zeros(len(rows) + 1, dtype=I64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    dst = np.array([t for r in rows for t in r], dtype=I64)
    return indptr, dst


def make_case(rows: list[list[int]], need: list[int], fwd: list[int] | None = None,
              done: list[bool] | None = None, nroots: int = 1,
              queue: list[int] | None = None) -> Case:
    n = len(need)
    indptr, dst = csr(rows)
    return Case(
        queue=np.array(list(range(nroots)) if queue is None else queue, dtype=I64),
        indptr=indptr, dst=dst, need=np.array(need, dtype=I64),
        fwd=np.array([-1] * n if fwd is None else fwd, dtype=I64),
        done=np.array([False] * (nroots + n) if done is None else done, dtype=bool),
        nroots=nroots)


# -- strategies ---------------------------------------------------------------------------

@st.composite
def small_cases(draw: st.DrawFn, *, forwarding: bool = False, no_self: bool = False) -> Case:
    """A graph of up to 24 objects drawn element by element (shrinks well)."""
    n = draw(st.integers(1, 24))
    nroots = draw(st.integers(0, 3))
    obj = st.integers(0, n - 1)
    rows = draw(st.lists(st.lists(obj, max_size=8), min_size=nroots + n, max_size=nroots + n))
    if no_self:  # collect() drops self-references; the drain must not depend on it
        rows = [[t for t in r if t != i - nroots] for i, r in enumerate(rows)]
    need = draw(st.lists(st.sampled_from([-1, 0, 1, 1, 2, 3]), min_size=n, max_size=n))
    # forwarding: most objects forward (to the scanner, black, gray, white or forwarding
    # objects); otherwise some cases have a few forwards and some none
    fwd_elem = (st.one_of(obj, obj, obj, st.just(-1)) if forwarding
                else st.one_of(st.just(-1), st.just(-1), st.just(-1), obj)
                if draw(st.booleans()) else st.just(-1))
    fwd = draw(st.lists(fwd_elem, min_size=n, max_size=n))
    done = draw(st.lists(st.booleans(), min_size=nroots + n, max_size=nroots + n)
                if draw(st.booleans()) else st.just([False] * (nroots + n)))
    extra = draw(st.lists(st.integers(nroots, nroots + n - 1), max_size=6))
    return make_case(rows, need, fwd, done, nroots, list(range(nroots)) + extra)


def random_case(rng: np.random.Generator, n: int, *, nroots: int = 3, degree: float = 2.0,
                fwd_share: float = 0.0, done_share: float = 0.0,
                needs: tuple[int, ...] = (-1, 0, 1, 2, 3),
                p: tuple[float, ...] = (0.05, 0.05, 0.7, 0.15, 0.05)) -> Case:
    """Poisson out-degrees, uniform targets (duplicates and self-loops included)."""
    deg = rng.poisson(degree, size=nroots + n)
    indptr = np.zeros(nroots + n + 1, dtype=I64)
    indptr[1:] = np.cumsum(deg)
    dst = rng.integers(0, n, size=int(indptr[-1])).astype(I64)
    need = rng.choice(np.array(needs, dtype=I64), size=n, p=np.array(p) / sum(p))
    fwd = np.where(rng.random(n) < fwd_share, rng.integers(0, n, size=n), -1).astype(I64)
    done = np.concatenate((np.zeros(nroots, dtype=bool), rng.random(n) < done_share))
    gray = nroots + np.flatnonzero(need == 0)
    queue = np.concatenate((np.arange(nroots, dtype=I64), gray[:5].astype(I64)))
    return Case(queue, indptr, dst, need.astype(I64), fwd, done, nroots)


seeds = st.integers(0, 2**32 - 1)


# -- properties ---------------------------------------------------------------------------

@given(small_cases())
def test_update_refs_and_fifo_order_match_reference_on_small_graphs(case: Case) -> None:
    assert_same_as_reference(case)


@given(small_cases(no_self=True))
def test_graphs_without_self_references_match_reference(case: Case) -> None:
    assert_same_as_reference(case)


@given(small_cases(forwarding=True))
def test_excess_ref_forwarding_order_matches_reference(case: Case) -> None:
    """Most objects forward: to the scanner, to black, gray and white objects, in chains."""
    assert_same_as_reference(case)


@given(seeds, st.sampled_from([0.02, 0.2, 0.6]), st.sampled_from([1.0, 3.0, 6.0]))
def test_excess_ref_in_wide_waves_matches_reference(seed: int, share: float,
                                                    degree: float) -> None:
    """Wide waves where forwarded references and direct ones to the same object interleave."""
    rng = np.random.default_rng(seed)
    case = random_case(rng, 400, nroots=4, degree=degree, fwd_share=share)
    # aim some forwards at objects the same rows also point to directly, some at their scanner
    k = min(40, len(case.dst))
    fwd = case.fwd.copy()
    src = rng.integers(0, 400, size=k)
    fwd[src] = case.dst[rng.integers(0, max(1, len(case.dst)), size=k)] if len(case.dst) else -1
    assert_same_as_reference(replace(case, fwd=fwd))


@given(seeds, st.integers(1, 6))
def test_min_count_n_grays_at_nth_reference_in_wide_fans(seed: int, fans: int) -> None:
    """Roots with thousands of edges, many to the same targets: one or two huge waves."""
    rng = np.random.default_rng(seed)
    n = 800
    rows = [rng.integers(0, n, size=int(rng.integers(500, 3000))).tolist() for _ in range(fans)]
    rows += [[] for _ in range(n)]
    need = rng.choice([0, 1, 2, 3, -1], size=n).tolist()
    case = make_case(rows, need, nroots=fans)
    assert_same_as_reference(case)


@given(seeds, st.integers(1, 4), st.booleans())
def test_long_chains_give_many_narrow_waves_matching_reference(seed: int, chains: int,
                                                               with_fwd: bool) -> None:
    """Linked lists: thousands of one- or few-row waves, crossing the threshold both ways."""
    rng = np.random.default_rng(seed)
    n = 3000
    perm = rng.permutation(n)
    rows: list[list[int]] = [[] for _ in range(chains + n)]
    for c, part in enumerate(np.array_split(perm, chains)):
        rows[c].append(int(part[0]))
        for a, b in zip(part[:-1].tolist(), part[1:].tolist(), strict=True):
            rows[chains + a].append(b)
    # a fan in the middle of one chain widens a few waves past the threshold
    mid = int(perm[n // (2 * chains)])
    rows[chains + mid] += rng.integers(0, n, size=200).tolist()
    need = rng.choice([1, 1, 1, 2], size=n).tolist()
    fwd = (np.where(rng.random(n) < 0.05, rng.integers(0, n, size=n), -1).tolist()
           if with_fwd else None)
    assert_same_as_reference(make_case(rows, need, fwd, nroots=chains))


@given(seeds, st.sampled_from([0.0, 0.1, 0.5]), st.sampled_from([0.0, 0.01]))
def test_no_scan_rows_are_not_scanned_and_match_reference(seed: int, done_share: float,
                                                          fwd_share: float) -> None:
    rng = np.random.default_rng(seed)
    case = random_case(rng, 1500, degree=2.5, done_share=done_share, fwd_share=fwd_share)
    ref = assert_same_as_reference(case)
    # a NO_SCAN row's words are never read: emptying those rows changes nothing
    lens = np.diff(case.indptr)
    keep = np.repeat(~case.done, lens)
    indptr = np.concatenate(([0], np.cumsum(np.where(case.done, 0, lens)))).astype(I64)
    emptied = replace(case, indptr=indptr, dst=case.dst[keep])
    for a, b in zip(ref, run(emptied, (MIN_NUMPY_WAVE, 1)), strict=True):
        assert np.array_equal(a, b)


@given(seeds)
def test_heap_shaped_graph_matches_reference(seed: int) -> None:
    """The shape of experiments.heaps: a list, a binary tree, hash chains, stack roots, and a
    few vmalloc blocks (min_count 2) whose vm_struct forwards to them."""
    rng = np.random.default_rng(seed)
    n = 3000
    nroots = 4 + 1  # four task stacks, then the statics
    rows: list[list[int]] = [[] for _ in range(nroots + n)]
    buckets: dict[int, int] = {}
    tree: list[int] = []
    last = -1
    for i in range(n):
        if i % 3 == 0:
            (rows[nroots + last] if last >= 0 else rows[4]).append(i)
            last = i
        elif i % 3 == 1:
            if tree and rng.random() > 0.01:
                rows[nroots + tree[(len(tree) - 1) // 2]].append(i)
            elif not tree:
                rows[4].append(i)
            tree.append(i)
        else:
            b = int(rng.integers(0, 64))
            if b in buckets:
                rows[nroots + i].append(buckets[b])
            buckets[b] = i
    rows[4] += list(buckets.values())
    for s in range(4):
        rows[s] += rng.integers(0, n, size=16).tolist()
    need = [1] * n
    fwd = [-1] * n
    for v in rng.choice(n, size=30, replace=False).tolist():
        need[v] = 2
        fwd[int(rng.integers(0, n))] = v
    assert_same_as_reference(make_case(rows, need, fwd, nroots=nroots))


@given(small_cases(forwarding=True), st.data())
def test_second_drain_after_checksum_pass_matches_reference(case: Case, data: st.DataObject
                                                            ) -> None:
    """Like kmemleak_scan: drain, gray some still-white objects and append them, drain again."""
    results = []
    for config in (None, *CONFIGS):
        need, done, gray_row, gray_dst = run(case, config)
        results.append((need, done, gray_row, gray_dst))
    white = np.flatnonzero(results[0][0] > 0)
    spared = data.draw(st.lists(st.sampled_from(white.tolist()), unique=True)
                       if len(white) else st.just([]))
    for config, (need, done, gray_row, gray_dst) in zip((None, *CONFIGS), results, strict=True):
        need[spared] = 0
        queue = np.array(spared, dtype=I64) + case.nroots
        args = (queue, case.indptr, case.dst, need, case.fwd, done, gray_row, gray_dst,
                case.nroots)
        if config is None:
            drain_gray_list_reference(*args)
        else:
            drain_gray_list(*args, min_numpy_wave=config[0], jump_after=config[1])
    for got in results[1:]:
        for a, b in zip(results[0], got, strict=True):
            assert np.array_equal(a, b)


# -- linked lists: chain jumps ---------------------------------------------------------------

@dataclass(frozen=True)
class ChainShape:
    """What may break or bend the lists of :func:`chain_case` (shares of their nodes)."""

    extra: float = 0.0  # an extra edge (before or after the link) to any object
    need2: float = 0.0  # min_count 2 or 3
    fwd: float = 0.0  # an excess_ref to any object
    no_scan: float = 0.0  # the row is never scanned
    root_hits: int = 0  # words of an extra root to random objects (grayed early)
    loops: float = 0.0  # share of lists whose last node points back into the list
    merges: float = 0.0  # share of lists whose last node points into another list
    white_queued: int = 0  # white objects in the initial queue (scanned while white)
    gray: float = 0.0  # gray from the start (only some queued)


def chain_case(rng: np.random.Generator, n: int, lists: int, shape: ChainShape) -> Case:
    """*lists* linked lists through a random permutation of most of *n* objects, each hung
    off its own root; the rest form white cycles that nothing reaches."""
    nroots = lists + 1  # the last root holds the random hits
    perm = rng.permutation(n).tolist()
    m = max(lists, n - n // 10)
    parts = [p.tolist() for p in np.array_split(np.array(perm[:m]), lists)]
    rows: list[list[int]] = [[] for _ in range(nroots + n)]
    for c, part in enumerate(parts):
        rows[c].append(part[0])
        for a, b in itertools.pairwise(part):
            rows[nroots + a].append(b)
        last = rows[nroots + part[-1]]
        if rng.random() < shape.loops:
            last.append(part[int(rng.integers(len(part)))])
        if rng.random() < shape.merges:
            other = parts[int(rng.integers(lists))]
            last.append(other[int(rng.integers(len(other)))])
    rest = perm[m:]
    for a, b in zip(rest, rest[1:] + rest[:1], strict=True):  # unreachable white cycle
        rows[nroots + a].append(b)
    for j in range(n):
        if rng.random() < shape.extra:
            rows[nroots + j].insert(int(rng.integers(len(rows[nroots + j]) + 1)),
                                    int(rng.integers(n)))
    rows[lists] += rng.integers(0, n, size=shape.root_hits).tolist()
    u = rng.random(n)
    need = np.where(u < shape.need2, rng.integers(2, 4, size=n), 1)
    need[rng.random(n) < shape.gray] = 0
    need[rng.random(n) < 0.01] = -1
    fwd = np.where(rng.random(n) < shape.fwd, rng.integers(0, n, size=n), -1)
    done = np.concatenate((np.zeros(nroots, dtype=bool), rng.random(n) < shape.no_scan))
    gray = np.flatnonzero(need == 0)
    queue = list(range(nroots)) + (nroots + gray[: len(gray) // 2]).tolist() \
        + (nroots + rng.integers(0, n, size=shape.white_queued)).tolist()
    return make_case(rows, need.tolist(), fwd.tolist(), done.tolist(), nroots, queue)


shapes = st.builds(
    ChainShape,
    extra=st.sampled_from([0.0, 0.01, 0.1, 0.5]),
    need2=st.sampled_from([0.0, 0.005, 0.05]),
    fwd=st.sampled_from([0.0, 0.0, 0.002, 0.02]),
    no_scan=st.sampled_from([0.0, 0.0, 0.005, 0.05]),
    root_hits=st.sampled_from([0, 0, 3, 40]),
    loops=st.sampled_from([0.0, 0.5, 1.0]),
    merges=st.sampled_from([0.0, 0.5, 1.0]),
    white_queued=st.sampled_from([0, 0, 5]),
    gray=st.sampled_from([0.0, 0.0, 0.02]))


@given(seeds, st.integers(1, 8), shapes)
def test_linked_lists_with_loops_merges_and_interruptions_match_reference(
        seed: int, lists: int, shape: ChainShape) -> None:
    """Long lists (chain jumps) broken by rows with extra edges, min_count above 1, excess_ref
    forwarding, NO_SCAN rows, early grays from a root, loops back, merges into other lists,
    white rows in the queue; unreachable white cycles beside them."""
    rng = np.random.default_rng(seed)
    assert_same_as_reference(chain_case(rng, 700, lists, shape))


@given(seeds, st.integers(1, 5), shapes, st.data())
def test_chains_in_the_second_drain_match_reference(seed: int, lists: int, shape: ChainShape,
                                                    data: st.DataObject) -> None:
    """The checksum pass spares white list nodes whose lists the first drain never reached:
    the second drain starts chains from them (and prepares its chains afresh)."""
    rng = np.random.default_rng(seed)
    case = chain_case(rng, 400, lists, shape)
    # a few lists lose their root: their nodes stay white through the first drain
    cut = data.draw(st.lists(st.integers(0, lists - 1), unique=True, max_size=lists))
    lens = np.diff(case.indptr)
    keep = np.repeat(~np.isin(np.arange(len(lens)), cut), lens)
    indptr = np.concatenate(([0], np.cumsum(np.where(np.isin(np.arange(len(lens)), cut), 0,
                                                     lens)))).astype(I64)
    case = replace(case, indptr=indptr, dst=case.dst[keep])
    ref = run(case)
    white = np.flatnonzero(ref[0] > 0)
    spared = data.draw(st.lists(st.sampled_from(white.tolist()), unique=True, max_size=8)
                       if len(white) else st.just([]))
    results = []
    for config in (None, *CONFIGS):
        need, done, gray_row, gray_dst = state = run(case, config)
        need[spared] = 0
        args = (np.array(spared, dtype=I64) + case.nroots, case.indptr, case.dst, need,
                case.fwd, done, gray_row, gray_dst, case.nroots)
        if config is None:
            drain_gray_list_reference(*args)
        else:
            drain_gray_list(*args, min_numpy_wave=config[0], jump_after=config[1])
        results.append(state)
    for config, got in zip(CONFIGS, results[1:], strict=True):
        for name, a, b in zip(("need", "done", "gray_row", "gray_dst"), results[0], got,
                              strict=True):
            assert np.array_equal(a, b), f"{name} differs with {config}"


def jumps_of(case: Case, monkeypatch: pytest.MonkeyPatch, config: tuple[int, int]
             ) -> list[int]:
    """The waves each successful chain jump covered, draining *case* with *config*."""
    covered: list[int] = []
    jump = drain._Drain.jump

    def counting(self: drain._Drain, wave: npt.NDArray[np.int64]
                 ) -> npt.NDArray[np.int64] | None:
        before = self.waves
        out = jump(self, wave)
        if out is not None:
            covered.append(self.waves - before)
        return out

    monkeypatch.setattr(drain._Drain, "jump", counting)
    run(case, config)
    monkeypatch.undo()
    return covered


@pytest.mark.parametrize("config", [(1, 1), (MIN_NUMPY_WAVE, 1), (MIN_NUMPY_WAVE, JUMP_AFTER)])
def test_a_long_list_is_scanned_in_one_jump(config: tuple[int, int],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # root -> 0 -> 1 -> ... -> n-1; each node's row also holds words to objects n (gray, like
    # an anchor) and n + 1 (black), before and after the link: one white target all the same
    n = 5000
    rows = [[0]] + [[n, i + 1, n + 1] if i % 2 else [n + 1, i + 1, n] for i in range(n - 1)] \
        + [[n], [], []]
    case = make_case(rows, need=[1] * n + [0, -1])
    ref = assert_same_as_reference(case)
    assert ref[2].tolist() == [0, *range(1, n), -1, -1]  # i grayed by row i (object i - 1)
    covered = jumps_of(case, monkeypatch, config)
    assert covered == [n + 1 - config[1]]  # waves 1 .. n, from the first after jump_after


@pytest.mark.parametrize("config", [(1, 1), (MIN_NUMPY_WAVE, 2)])
def test_jumps_stop_before_a_fan_and_resume_after(config: tuple[int, int],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # a list of 3000 whose node 1000 also points to 300 leaves, and whose node 2000 points to
    # an object of min_count 2 that node 2500 points to too
    n, leaves = 3000, 300
    rows: list[list[int]] = [[0]] + [[i + 1] for i in range(n - 1)] + [[]] \
        + [[] for _ in range(leaves + 1)]
    rows[1 + 1000] += list(range(n, n + leaves))
    rows[1 + 2000].append(n + leaves)
    rows[1 + 2500].append(n + leaves)
    need = [1] * (n + leaves) + [2]
    case = make_case(rows, need=need)
    ref = assert_same_as_reference(case)
    assert ref[0][n + leaves] == 0
    assert ref[2][n + leaves] == 1 + 2500
    covered = jumps_of(case, monkeypatch, config)
    assert len(covered) >= 2
    assert max(covered) >= 400


# -- pinned examples ------------------------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS)
def test_min_count_reached_at_nth_word_records_that_row(config: tuple[int, int]) -> None:
    # root 0 -> objects 0, 1; object 0 -> 2, 2; object 1 -> 2, 2: object 2 (min_count 3)
    # turns gray at its third reference, the first word of row 2 (object 1)
    case = make_case([[0, 1], [2, 2], [2, 2], []], need=[1, 1, 3])
    need, done, gray_row, gray_dst = run(case, config)
    assert need.tolist() == [0, 0, 0]
    assert done.tolist() == [True, True, True, True]
    assert gray_row.tolist() == [0, 0, 2]
    assert gray_dst.tolist() == [0, 1, 2]


@pytest.mark.parametrize("config", CONFIGS)
def test_surplus_forwarded_unless_excess_ref_is_the_scanner(config: tuple[int, int]) -> None:
    # object 0 is gray and forwards to object 1 (min_count 2); object 1 points to 0 itself:
    # that surplus is dropped (the forward names the scanner), the root's two are not
    case = make_case([[0, 0, 0], [], [0, 0]], need=[0, 2], fwd=[1, -1], queue=[0])
    need, done, gray_row, gray_dst = run(case, config)
    assert need.tolist() == [0, 0]
    assert gray_row.tolist() == [-1, 0]  # grayed by the root's second word
    assert gray_dst.tolist() == [0, 0]  # through object 0, which forwarded
    assert done.tolist() == [True, False, True]
    case = make_case([[], [], [0, 0]], need=[0, 2], fwd=[1, -1], queue=[2])
    need, _, gray_row, _ = run(case, config)
    assert need.tolist() == [0, 2]
    assert gray_row.tolist() == [-1, -1]


@pytest.mark.parametrize("config", CONFIGS)
def test_forwarding_stops_after_one_level(config: tuple[int, int]) -> None:
    # 0 and 1 gray, 0 forwards to 1, 1 forwards to 2: a word to 0 reaches neither 1 nor 2
    case = make_case([[0, 0, 0], [], [], []], need=[0, 0, 1], fwd=[1, 2, -1])
    need, _, gray_row, _ = run(case, config)
    assert need.tolist() == [0, 0, 1]
    assert gray_row.tolist() == [-1, -1, -1]


@pytest.mark.parametrize("config", CONFIGS)
def test_object_turned_gray_in_the_same_wave_forwards_later_words(config: tuple[int, int]) -> None:
    # root: 0, 0, 1.  Object 0 (min_count 1) turns gray at the first word; the second is a
    # surplus forwarded to 1 (min_count 2); the third grays 1: appended after 0
    case = make_case([[0, 0, 1], [], []], need=[1, 2], fwd=[1, -1])
    need, done, gray_row, gray_dst = run(case, config)
    assert need.tolist() == [0, 0]
    assert gray_row.tolist() == [0, 0]
    assert gray_dst.tolist() == [0, 1]
    assert done.tolist() == [True, True, True]


@pytest.mark.parametrize("config", CONFIGS)
def test_repeated_and_done_queue_rows_are_scanned_once(config: tuple[int, int]) -> None:
    # object 0 is queued twice and object 1 is NO_SCAN: 0's word counts once, 1 reads nothing
    case = make_case([[], [2], [2], []], need=[0, 0, 2],
                     done=[False, False, True, False], queue=[1, 1, 2])
    need, done, _, _ = run(case, config)
    assert need.tolist() == [0, 0, 1]
    assert done.tolist() == [False, True, True, False]


# -- argument checking ------------------------------------------------------------------------

def test_arguments_are_checked_and_named() -> None:
    case = make_case([[0], []], need=[1])
    good: dict[str, Any] = {
        "queue": case.queue, "indptr": case.indptr, "dst": case.dst, "need": case.need.copy(),
        "fwd": case.fwd, "done": case.done.copy(), "gray_row": np.full(1, -1, dtype=I64),
        "gray_dst": np.zeros(1, dtype=I64), "nroots": 1}
    read_only = good["need"].copy()
    read_only.flags.writeable = False
    bad: list[tuple[type[Exception], str, dict[str, Any]]] = [
        (KmemsimTypeError, "need", {"need": good["need"].astype(np.int32)}),
        (KmemsimTypeError, "done", {"done": good["done"].astype(np.int64)}),
        (KmemsimTypeError, "fwd", {"fwd": [-1]}),
        (KmemsimValueError, "indptr", {"indptr": case.indptr[:-1]}),
        (KmemsimValueError, "queue", {"queue": np.array([7])}),
        (KmemsimValueError, "nroots", {"nroots": -1}),
        (KmemsimValueError, "need", {"need": read_only}),
    ]
    for fn in (drain_gray_list, drain_gray_list_reference):
        for exc, name, change in bad:
            with pytest.raises(exc, match=name):
                fn(**{**good, **change})
    with pytest.raises(KmemsimValueError, match="min_numpy_wave"):
        drain_gray_list(**good, min_numpy_wave=0)
    with pytest.raises(KmemsimValueError, match="jump_after"):
        drain_gray_list(**good, jump_after=0)
    assert good["need"].tolist() == [1]  # nothing ran
    drain_gray_list(**good)
    assert good["need"].tolist() == [0]
