"""Draining kmemleak's gray list over a precomputed edge list, vectorised with numpy.

The fast scan (:mod:`kmemsim.kmemleak.fastscan`) turns memory into an edge
list: for each *row* (a root range, or an object's scanned memory) the
objects its words point into, in the order ``scan_block`` meets them.  The
kernel's ``scan_gray_list`` then pops rows first in first out and, for each
edge, runs ``update_refs`` on the target, or forwards the surplus reference
of an already gray target through its ``excess_ref``.

A FIFO processes the rows in *waves*: wave ``k + 1`` is the rows appended
while wave ``k`` is scanned, in append order, and all of wave ``k`` is
scanned before any of wave ``k + 1``.  :func:`drain_gray_list` therefore
handles a wide wave with numpy: it concatenates the wave's edges, and for
each white target finds the edge at which its ``need`` reaches zero (the
first edge to it, with ``np.minimum.at``, when ``min_count`` is 1; the
``n``-th after a stable sort otherwise); the target turns gray there, and
the new gray objects are appended in the order of those edges.  Targets
that have an ``excess_ref``, or are one, depend on the order across
targets; their few edges are replayed one by one, and since forwarding
never leaves that set of objects the two parts do not interact.  Narrow
waves (a long linked list gives thousands of one-row waves) run through a
plain Python loop, where numpy's per-call overhead would dominate.

:func:`drain_gray_list_reference` is the plain loop over all edges, the
definition the vectorised drain is tested against.

The state, shared by both functions (``n`` objects, ``nroots`` root ranges):

* rows: root range ``i`` is row ``i``, object ``j`` is row ``nroots + j``;
* ``indptr`` (``nroots + n + 1``, non-decreasing) and ``dst``: row ``r``'s
  edges are ``dst[indptr[r]:indptr[r + 1]]``, object indexes in scan order;
* ``need[j]``: references object ``j`` still needs to turn gray; ``0`` is
  gray, ``-1`` black;
* ``fwd[j]``: the object ``j``'s ``excess_ref`` names, or ``-1``;
* ``done[r]``: row ``r`` was scanned, or is never scanned (``NO_SCAN``);
* ``gray_row[j]``, ``gray_dst[j]``: the row whose scan grayed ``j`` and the
  edge target through which it did (``j`` itself, or the object that
  forwarded to it).

Rows scanned by a drain are the ones it set in ``done``: the caller keeps
``done & ~done_before``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..errors import KmemsimTypeError, KmemsimValueError

__all__ = ["MIN_NUMPY_WAVE", "drain_gray_list", "drain_gray_list_reference"]

I64 = np.int64

#: Waves with fewer rows than this run through the Python loop.  Measured on parallel
#: linked lists: a numpy wave costs about 20 us however narrow, the loop about 0.35 us
#: a row of one edge, so they cross near 55 rows; rows with more edges favour numpy.
MIN_NUMPY_WAVE = 48

_IntArr = npt.NDArray[np.int64]
_BoolArr = npt.NDArray[np.bool_]


def _check(queue: npt.ArrayLike, indptr: _IntArr, dst: _IntArr, need: _IntArr, fwd: _IntArr,
           done: _BoolArr, gray_row: _IntArr, gray_dst: _IntArr, nroots: int
           ) -> tuple[_IntArr, int]:
    """Validate the arrays' types and lengths; return the queue as ``int64`` and ``n``."""
    named = {"indptr": indptr, "dst": dst, "need": need, "fwd": fwd, "gray_row": gray_row,
             "gray_dst": gray_dst}
    for name, a in named.items():
        if not isinstance(a, np.ndarray) or a.dtype != I64 or a.ndim != 1:
            raise KmemsimTypeError(f"{name} must be a 1-D numpy int64 array")
    if not isinstance(done, np.ndarray) or done.dtype != np.bool_ or done.ndim != 1:
        raise KmemsimTypeError("done must be a 1-D numpy bool array")
    for name, out in (("need", need), ("done", done), ("gray_row", gray_row),
                      ("gray_dst", gray_dst)):
        if not out.flags.writeable:
            raise KmemsimValueError(f"{name} must be writeable (it is updated in place)")
    if isinstance(nroots, bool) or not isinstance(nroots, int | np.integer) or nroots < 0:
        raise KmemsimValueError(f"nroots must be a non-negative int, not {nroots!r}")
    n = len(need)
    nrows = int(nroots) + n
    if len(fwd) != n or len(gray_row) != n or len(gray_dst) != n:
        raise KmemsimValueError("fwd, gray_row and gray_dst must have len(need) entries")
    if len(done) != nrows or len(indptr) != nrows + 1:
        raise KmemsimValueError("done needs nroots + len(need) entries, indptr one more")
    if int(indptr[0]) != 0 or int(indptr[-1]) != len(dst):
        raise KmemsimValueError("indptr must start at 0 and end at len(dst)")
    q = np.asarray(queue)
    if q.ndim != 1 or (q.size and q.dtype.kind not in "iu"):
        raise KmemsimTypeError("queue must be a 1-D sequence of row numbers")
    q = q.astype(I64, copy=False)
    if q.size and (int(q.min()) < 0 or int(q.max()) >= nrows):
        raise KmemsimValueError(f"queue holds a row outside [0, {nrows})")
    return q, n


def drain_gray_list_reference(queue: npt.ArrayLike, indptr: _IntArr, dst: _IntArr,
                              need: _IntArr, fwd: _IntArr, done: _BoolArr, gray_row: _IntArr,
                              gray_dst: _IntArr, nroots: int) -> None:
    """Drain the gray list one edge at a time, as ``scan_gray_list`` does; update in place.

    Pops rows from *queue* first in first out; a row already ``done`` is
    skipped, any other is marked ``done`` and its edges are met in order:
    ``update_refs`` on a white target (``need`` above 1: one fewer; ``need``
    1: gray, appended), nothing on a black one, and on a gray one the
    surplus goes to its ``excess_ref`` (``fwd``) unless that is the object
    being scanned, with the same update and no further forwarding.

    Runtime complexity: ``O(N + R + E)`` Python steps for ``N`` objects,
    ``R`` rows and ``E`` edges.

    >>> import numpy as np
    >>> need = np.array([1, 2, 0], dtype=np.int64)   # object 2 is gray from the start
    >>> done = np.zeros(4, dtype=bool)
    >>> gray_row, gray_dst = np.full(3, -1), np.zeros(3, dtype=np.int64)
    >>> indptr, dst = np.array([0, 2, 3, 3, 4]), np.array([0, 1, 1, 1])
    >>> drain_gray_list_reference([0], indptr, dst, need, np.full(3, -1), done,
    ...                           gray_row, gray_dst, nroots=1)
    >>> need.tolist(), done.tolist(), gray_row.tolist()
    ([0, 0, 0], [True, True, True, False], [0, 1, -1])
    """
    q, _ = _check(queue, indptr, dst, need, fwd, done, gray_row, gray_dst, nroots)
    ptr, dst_l, fwd_l = indptr.tolist(), dst.tolist(), fwd.tolist()
    need_l, done_l = need.tolist(), done.tolist()
    grow_l, gdst_l = gray_row.tolist(), gray_dst.tolist()
    fifo = q.tolist()
    i = 0
    while i < len(fifo):  # a list read from the front: the FIFO never shrinks
        r = fifo[i]
        i += 1
        if done_l[r]:
            continue
        done_l[r] = True
        s = r - nroots  # the object being scanned; negative for a root range
        for t in dst_l[ptr[r]:ptr[r + 1]]:
            nd = need_l[t]
            if nd > 1:
                need_l[t] = nd - 1
            elif nd == 1:
                need_l[t] = 0
                grow_l[t], gdst_l[t] = r, t
                fifo.append(nroots + t)
            elif nd == 0:
                u = fwd_l[t]
                if u < 0 or u == s:
                    continue
                nd = need_l[u]
                if nd > 1:
                    need_l[u] = nd - 1
                elif nd == 1:
                    need_l[u] = 0
                    grow_l[u], gdst_l[u] = r, t
                    fifo.append(nroots + u)
    need[:] = need_l
    done[:] = done_l
    gray_row[:] = grow_l
    gray_dst[:] = gdst_l


class _Drain:
    """One vectorised drain: the arrays, their memoryviews for the Python waves."""

    def __init__(self, indptr: _IntArr, dst: _IntArr, need: _IntArr, fwd: _IntArr,
                 done: _BoolArr, gray_row: _IntArr, gray_dst: _IntArr, nroots: int,
                 n: int) -> None:
        self.indptr, self.dst, self.need, self.fwd = indptr, dst, need, fwd
        self.done, self.gray_row, self.gray_dst = done, gray_row, gray_dst
        self.nroots = nroots
        # in_fwd[j]: j has an excess_ref or is one; only edges to these see the order
        # across targets, so only they are replayed one by one in a numpy wave.
        has = fwd >= 0
        self.in_fwd: _BoolArr | None = None
        if bool(has.any()):
            self.in_fwd = has.copy()
            self.in_fwd[fwd[has]] = True
        # scratch[t]: the first edge to t in a wave (_first); never read before written
        self.scratch = np.empty(n, dtype=I64)

    def python_waves(self, wave: list[int], min_numpy_wave: int) -> list[int]:
        """Scan waves one edge at a time until a wave has *min_numpy_wave* rows or none;
        return that wave.  Memoryviews give list-speed scalar access to the arrays."""
        done: memoryview = self.done.data
        need: memoryview = self.need.data
        ptr: memoryview = self.indptr.data
        dst: memoryview = self.dst.data
        fwd: memoryview = self.fwd.data
        grow: memoryview = self.gray_row.data
        gdst: memoryview = self.gray_dst.data
        nroots = self.nroots
        while True:
            nxt: list[int] = []
            append = nxt.append
            for r in wave:
                if done[r]:
                    continue
                done[r] = True
                a, b = ptr[r], ptr[r + 1]
                if b - a == 1:
                    # one edge (a list node's link): a white or black target needs no loop
                    t = dst[a]
                    nd = need[t]
                    if nd > 1:
                        need[t] = nd - 1
                        continue
                    if nd == 1:
                        need[t] = 0
                        grow[t] = r
                        gdst[t] = t
                        append(nroots + t)
                        continue
                    if nd < 0:
                        continue
                s = r - nroots
                for t in dst[a:b]:
                    nd = need[t]
                    if nd > 1:
                        need[t] = nd - 1
                        continue
                    u = t
                    if nd == 0:
                        u = fwd[t]
                        if u < 0 or u == s:
                            continue
                        nd = need[u]
                        if nd > 1:
                            need[u] = nd - 1
                            continue
                    if nd == 1:
                        need[u] = 0
                        grow[u] = r
                        gdst[u] = t
                        append(nroots + u)
            if not nxt or len(nxt) >= min_numpy_wave:
                return nxt
            wave = nxt

    def numpy_wave(self, wave: _IntArr) -> _IntArr:
        """Scan one wave with numpy; return the next wave (the rows it appended, in order)."""
        done, need, indptr = self.done, self.need, self.indptr
        rows = wave[~done[wave]]
        done[rows] = True
        starts = indptr[rows]
        lens = indptr[rows + 1] - starts
        ends = np.cumsum(lens)
        total = int(ends[-1]) if len(ends) else 0
        if total == 0:
            return np.zeros(0, dtype=I64)
        # the wave's edges, concatenated in scan order
        pos0 = ends - lens
        t = self.dst[np.repeat(starts - pos0, lens) + np.arange(total, dtype=I64)]
        nd = need[t]
        live = nd > 0
        fw: _BoolArr | None = None
        if self.in_fwd is not None:
            fw = self.in_fwd[t]
            live &= ~fw
        pos = np.flatnonzero(live)
        ev = np.zeros(0, dtype=I64)  # positions of the edges that turn a target gray
        if len(pos):
            tt, n0 = t[pos], nd[pos]
            one = n0 == 1
            if bool(one.all()):  # min_count 1 everywhere (the common case): no sort
                ev = self._first(pos, tt)
                need[tt] = 0
            else:
                ev = self._first(pos[one], tt[one])
                need[tt[one]] = 0
                ev = np.sort(np.concatenate((ev, self._nth(pos[~one], tt[~one], n0[~one]))))
        ev_u = t[ev]
        ev_t = ev_u
        erow = np.repeat(rows, lens)  # each edge's row
        if fw is not None and bool(fw.any()):
            ev, ev_u, ev_t = self._replay(fw, t, erow, ev, ev_u)
        ev_row = erow[ev]
        self.gray_row[ev_u] = ev_row
        self.gray_dst[ev_u] = ev_t
        return ev_u + self.nroots

    def _first(self, pos: _IntArr, tt: _IntArr) -> _IntArr:
        """The positions (of *pos*, sorted) of the first edge to each target in *tt*."""
        scratch = self.scratch
        k = np.arange(len(tt), dtype=I64)
        scratch[tt] = len(tt)
        np.minimum.at(scratch, tt, k)  # unbuffered: the smallest index wins for repeats
        first: _IntArr = pos[scratch[tt] == k]
        return first

    def _nth(self, pos: _IntArr, tt: _IntArr, n0: _IntArr) -> _IntArr:
        """Count the edges *pos* (to targets *tt* needing *n0* > 1) into ``need``; return the
        positions where a target's need reaches zero, its ``n0``-th edge."""
        if not len(pos):
            return pos
        order = np.argsort(tt, kind="stable")
        ts, n0s = tt[order], n0[order]
        head = np.empty(len(ts), dtype=bool)
        head[0] = True
        np.not_equal(ts[1:], ts[:-1], out=head[1:])
        gstart = np.flatnonzero(head)
        rank = np.arange(len(ts), dtype=I64) - gstart[np.cumsum(head) - 1]
        count = np.diff(np.append(gstart, len(ts)))
        self.need[ts[gstart]] = np.maximum(n0s[gstart] - count, 0)
        nth: _IntArr = pos[order[rank == n0s - 1]]
        return nth

    def _replay(self, fw: _BoolArr, t: _IntArr, erow: _IntArr, ev: _IntArr, ev_u: _IntArr
                ) -> tuple[_IntArr, _IntArr, _IntArr]:
        """Replay, in order, the wave's edges to objects that forward or are forwarded to;
        merge their gray events with *ev*: ``positions, grayed objects, edge targets``."""
        need: memoryview = self.need.data
        fwd: memoryview = self.fwd.data
        fpos = np.flatnonzero(fw)
        frow = (erow[fpos] - self.nroots).tolist()
        p_l: list[int] = []
        u_l: list[int] = []
        t_l: list[int] = []
        for p, tgt, s in zip(fpos.tolist(), t[fpos].tolist(), frow, strict=True):
            u = tgt
            nd = need[tgt]
            if nd == 0:
                u = fwd[tgt]
                if u < 0 or u == s:
                    continue
                nd = need[u]
            if nd > 1:
                need[u] = nd - 1
            elif nd == 1:
                need[u] = 0
                p_l.append(p)
                u_l.append(u)
                t_l.append(tgt)
        if not p_l:
            return ev, ev_u, ev_u
        pos = np.concatenate((ev, np.array(p_l, dtype=I64)))
        order = np.argsort(pos, kind="stable")
        us = np.concatenate((ev_u, np.array(u_l, dtype=I64)))[order]
        ts = np.concatenate((ev_u, np.array(t_l, dtype=I64)))[order]
        return pos[order], us, ts


def drain_gray_list(queue: npt.ArrayLike, indptr: _IntArr, dst: _IntArr, need: _IntArr,
                    fwd: _IntArr, done: _BoolArr, gray_row: _IntArr, gray_dst: _IntArr,
                    nroots: int, *, min_numpy_wave: int = MIN_NUMPY_WAVE) -> None:
    """Drain the gray list wave by wave; the same result as :func:`drain_gray_list_reference`.

    Updates *need*, *done*, *gray_row* and *gray_dst* in place, bit for bit
    as the reference does (see the module docstring for the arrays).  Every
    row is scanned in the kernel's FIFO order; waves of at least
    *min_numpy_wave* rows are scanned with numpy, narrower ones with a
    Python loop (the result does not depend on it, only the time).  The
    rows it scanned are the ones it set in *done*.

    Runtime complexity: ``O(N + Q log(Q) + E + E_2 log(E_2))`` for ``N``
    objects, ``Q`` rows in *queue*, ``E`` edges and the ``E_2`` edges of
    wide waves to white objects with ``min_count`` above 1 (the only ones
    sorted); of these, ``O(E_n + E_f)`` are Python steps: the ``E_n``
    edges of narrow waves and the ``E_f`` edges to objects with an
    ``excess_ref`` or named by one.  Each wide wave adds a fixed cost of
    about twenty numpy calls.

    >>> import numpy as np
    >>> need = np.array([1, 2, 0], dtype=np.int64)
    >>> done = np.zeros(4, dtype=bool)
    >>> gray_row, gray_dst = np.full(3, -1), np.zeros(3, dtype=np.int64)
    >>> indptr, dst = np.array([0, 2, 3, 3, 4]), np.array([0, 1, 1, 1])
    >>> drain_gray_list([0], indptr, dst, need, np.full(3, -1), done, gray_row, gray_dst,
    ...                 nroots=1)
    >>> need.tolist(), done.tolist(), gray_row.tolist()
    ([0, 0, 0], [True, True, True, False], [0, 1, -1])
    """
    q, n = _check(queue, indptr, dst, need, fwd, done, gray_row, gray_dst, nroots)
    if isinstance(min_numpy_wave, bool) or not isinstance(min_numpy_wave, int) \
            or min_numpy_wave < 1:
        raise KmemsimValueError(f"min_numpy_wave must be a positive int, not {min_numpy_wave!r}")
    if not q.size:
        return
    # The first wave may repeat a row: only its first occurrence can be scanned.
    _, first = np.unique(q, return_index=True)
    q = q[np.sort(first)]
    d = _Drain(indptr, dst, need, fwd, done, gray_row, gray_dst, int(nroots), n)
    wave: list[int] | _IntArr = q
    while len(wave):
        if len(wave) < min_numpy_wave:
            wave = d.python_waves(wave.tolist() if isinstance(wave, np.ndarray) else wave,
                                  min_numpy_wave)
        else:
            wave = d.numpy_wave(np.asarray(wave, dtype=I64))
