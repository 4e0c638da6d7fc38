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
waves run through a plain Python loop, where numpy's per-call overhead
would dominate.

Linked lists give thousands of narrow waves (each list one row a wave), so
after a few waves the drain classifies the rows once (``_Drain.prepare``):
a *link* row grays exactly one object that nothing else can touch, a
*terminal* row changes nothing; both commute with every other row.  The
links are laid out path by path (list ranking with a ruling set, ``O(L)``
work in ``O(log L)``-ish numpy steps), and a wave made only of such rows is
followed, with all the waves after it up to the first holding another
kind of row, in one bulk numpy step (``_Drain.jump``).  On the benchmark
heap one jump scans every list and hash chain left after the tree.

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

from ..errors import KmemsimError, KmemsimTypeError, KmemsimValueError

__all__ = ["JUMP_AFTER", "MIN_NUMPY_WAVE", "drain_gray_list", "drain_gray_list_reference"]

I64 = np.int64

#: Waves with fewer rows than this run through the Python loop.  Measured on parallel
#: linked lists: a numpy wave costs about 20 us however narrow, the loop about 0.35 us
#: a row of one edge, so they cross near 55 rows; rows with more edges favour numpy.
MIN_NUMPY_WAVE = 48

#: Chain jumps start after this many waves (the classification costs one pass over the
#: pending rows' edges, wasted on shallow graphs); a jump over fewer than MIN_JUMP waves
#: makes the next attempt wait (1, 2, 4, ... waves), bounding the cost of failed tries.
JUMP_AFTER = 16
MIN_JUMP = 4
#: One link source in 2**RULER_BITS is a ruler of the list ranking (_Drain._layout).
RULER_BITS = 4

# _Drain.kind: what scanning an object's row can do (see _Drain.prepare)
NON_FREE, LINK, TERMINAL = 0, 1, 2

_IntArr = npt.NDArray[np.int64]
_BoolArr = npt.NDArray[np.bool_]


def _ranges(starts: _IntArr, lens: _IntArr) -> _IntArr:
    """``concatenate([arange(s, s + k) for s, k in zip(starts, lens)])`` in numpy."""
    ends = np.cumsum(lens)
    total = int(ends[-1]) if len(ends) else 0
    out: _IntArr = np.repeat(starts - (ends - lens), lens) + np.arange(total, dtype=I64)
    return out


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
                 n: int, jump_after: int) -> None:
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
        self.n = n
        self.waves = 0  # waves scanned so far (a jump counts the waves it covers)
        # chain jumps (prepare, jump): nothing is free until prepare() has classified rows
        self.jump_after = jump_after
        self.prepared = False
        self.kind = np.zeros(n, dtype=np.int8)
        self.next_try = 1 << 62
        self.backoff = 1
        # the layout (_layout): P, each object's position in it, where the paths lie
        self.P = self.pos_of = self.path_start = self.path_end = np.zeros(0, dtype=I64)

    def wants_prepare(self) -> bool:
        """Whether :meth:`prepare` is due: after *jump_after* waves (never before wave 1)."""
        return not self.prepared and self.waves >= self.jump_after

    def prepare(self) -> None:
        """Classify the object rows for chain jumps and lay the chains out; once a drain.

        Called between waves, after wave 0 (so every row of the initial queue
        has been scanned or skipped, and the FIFO is the next wave, each row
        at most once).  A row is *pending* if it is not ``done``: only pending
        rows are ever scanned again.  An object row is

        * ``TERMINAL`` if it is done, or none of its edges goes to a white
          object (``need > 0``) or to one in the forwarding set;
        * ``LINK`` to ``y`` if none of its edges goes to the forwarding set,
          exactly one goes to a white object, that object ``y`` needs one
          reference, and no other pending row has an edge to ``y``;
        * ``NON_FREE`` otherwise.

        Why this stays true until the row is scanned, whatever runs first:
        ``need`` only decreases, so a non-white object stays non-white and a
        ``TERMINAL`` row's edges change nothing (a gray target outside the
        forwarding set forwards nothing).  A ``LINK`` target ``y`` is in no
        forwarding pair and its only pending in-edge is the link's, so
        nothing but that row's scan can change ``need[y]``: it is still 1
        when the row runs, and the scan grays ``y`` and appends it, nothing
        else.  ``y``'s own row cannot be scanned before (it is appended only
        when grayed, and wave 0 is over).  So scanning a free (``LINK`` or
        ``TERMINAL``) row writes only state that no other row reads or
        writes -- ``done`` of that row, ``need``, ``gray_row``, ``gray_dst``
        of its link target -- and appends at most one row: free rows commute
        with every other row, only the FIFO position of what they append
        matters.  The caller's ``need`` changes between drains (the checksum
        pass) are covered because each drain prepares afresh.
        """
        self.prepared = True
        self.next_try = self.waves
        nroots, n = self.nroots, self.n
        need, indptr = self.need, self.indptr
        done_obj = self.done[nroots:]
        pend = np.flatnonzero(~done_obj)
        starts = indptr[nroots + pend]
        lens = indptr[nroots + pend + 1] - starts
        t = self.dst[_ranges(starts, lens)]
        src = np.repeat(pend, lens)
        nd = need[t]
        white = nd > 0
        ws, wt = src[white], t[white]  # ws is sorted: rows in order, edges in row order
        kind = self.kind
        kind.fill(TERMINAL)  # done rows, and rows with no white target ...
        kind[ws] = NON_FREE  # ... unless they have one (or a forwarding one, below)
        # a row's only white edge: both neighbours in ws belong to other rows
        other = ws[1:] != ws[:-1]
        alone = np.ones(len(ws), dtype=bool)
        alone[1:] = other
        alone[:-1] &= other
        indeg = np.bincount(wt, minlength=n)  # in-edges from pending rows, white targets
        one = alone & (nd[white] == 1) & (indeg[wt] == 1)
        lx, ly = ws[one], wt[one]
        kind[lx] = LINK
        if self.in_fwd is not None:
            kind[src[self.in_fwd[t]]] = NON_FREE
            keep = kind[lx] == LINK
            lx, ly = lx[keep], ly[keep]
        self._layout(lx, ly)

    def _layout(self, lx: _IntArr, ly: _IntArr) -> None:
        """Lay the links ``lx[i] -> ly[i]`` (each object at most once on either side) out
        path by path: ``P[pos_of[j]] == j``, ``P[k + 1]`` the link target of ``P[k]`` unless
        ``k`` is a ``path_end``; paths lie in ``P[path_start[i]:path_end[i] + 1]``.

        List ranking with a ruling set: every path head and a deterministic sample
        of about one link source in ``2**RULER_BITS`` are rulers; all rulers walk
        to the next ruler in lockstep (``O(len(lx))`` work, about
        ``2**RULER_BITS * log(len(lx))`` numpy steps), then pointer jumping over the
        rulers alone gives each its offset in its path.  Links on a cycle (no
        head) are left out: no object on one can ever turn gray, each needing its
        predecessor's scan.
        """
        n = self.n
        has_in = np.zeros(n, dtype=bool)
        has_in[ly] = True
        # a multiplicative hash's top bits (int64 products wrap): no stride is favoured
        h = (lx * np.int64(0x5851F42D4C957F2D)) >> np.int64(64 - RULER_BITS)
        rulers = lx[~has_in[lx] | (h == 0)]
        nr = len(rulers)
        if not nr:  # no links, or only on cycles
            self.pos_of = np.full(n, -1, dtype=I64)
            return
        rid = np.full(n, -1, dtype=I64)
        rid[rulers] = np.arange(nr, dtype=I64)
        # code[j]: where a walker on j goes: the next object, -1 (j ends its path) or
        # -2 - r (the next object is ruler r); one gather a step
        code = np.full(n, -1, dtype=I64)
        ry = rid[ly]
        code[lx] = np.where(ry >= 0, -2 - ry, ly)
        rnext = np.empty(nr, dtype=I64)  # every walker stops: both filled
        seglen = np.empty(nr, dtype=I64)
        cur, own = rulers, np.arange(nr, dtype=I64)
        nodes_l: list[_IntArr] = []
        own_l: list[_IntArr] = []
        step = 0
        while len(cur):
            nodes_l.append(cur)
            own_l.append(own)
            nx = code[cur]
            cont = nx >= 0
            if bool(cont.all()):
                cur = nx
            else:
                stop = ~cont
                so = own[stop]
                seglen[so] = step + 1
                rnext[so] = -2 - nx[stop]  # -1 stays -1, -2 - r gives r
                cur, own = nx[cont], own[cont]
            step += 1
            if step > len(lx) + 1:  # a path into a cycle: lx/ly not one-to-one
                raise KmemsimError("drain: chain links broke their invariant (a bug)")
        # offsets of the rulers from their path's head: prefix sums by pointer jumping
        has = rnext >= 0
        rprev = np.full(nr, -1, dtype=I64)
        rprev[rnext[has]] = np.flatnonzero(has)
        head = rprev < 0
        p = np.where(head, np.arange(nr, dtype=I64), rprev)
        a = np.where(head, 0, seglen[rprev])  # seglen of the rulers in [p, r)
        for _ in range(nr.bit_length() + 1):
            if bool(head[p].all()):
                break
            a, p = a + a[p], p[p]
        ok = head[p]  # reached a head; the others are on a cycle of rulers
        tail = ok & ~has
        plen = np.zeros(nr, dtype=I64)
        plen[p[tail]] = a[tail] + seglen[tail]
        base = np.cumsum(plen) - plen
        start = base[p] + a  # each ruler's position (where ok)
        nodes, owns = np.concatenate(nodes_l), np.concatenate(own_l)
        offs = np.repeat(np.arange(step, dtype=I64), [len(c) for c in nodes_l])
        if not bool(ok.all()):
            keep = ok[owns]
            nodes, owns, offs = nodes[keep], owns[keep], offs[keep]
        pos = start[owns] + offs
        self.P = np.empty(int(plen.sum()), dtype=I64)
        self.P[pos] = nodes
        heads = np.flatnonzero(head)
        self.path_start = base[heads]  # increasing
        self.path_end = self.path_start + plen[heads] - 1
        code.fill(-1)  # no longer needed: reused
        code[nodes] = pos
        self.pos_of = code

    def jump(self, wave: _IntArr) -> _IntArr | None:
        """If every row of *wave* is free, scan it and the waves after it up to the first
        that holds a ``NON_FREE`` row (or to the end), all at once; return that wave.
        ``None``: a row is not free, nothing was done.

        Each row of a free wave starts a path of the layout (or is a lone
        ``TERMINAL`` row): wave ``k + i`` holds the ``i``-th object of each
        path still going, in the same order, since a ``LINK`` row appends one
        row and a ``TERMINAL`` one none.  The first wave with a ``NON_FREE``
        row is ``D`` waves on, ``D`` the shortest distance to a path end that
        is not free; everything before is free rows, whose scans commute with
        all others (see :meth:`prepare`), so they are applied in bulk.
        """
        nroots = self.nroots
        rows = wave[~self.done[wave]]
        x = rows - nroots
        if not len(x):
            return x
        if int(x.min()) < 0:
            return None
        kd = self.kind[x]
        if not bool(kd.all()):
            return None
        p = self.pos_of[x]
        inl = p >= 0
        if not bool(inl.all()) and bool((kd[~inl] == LINK).any()):
            return None  # a link on a cycle: cannot happen (see _layout), kept safe
        pl = p[inl]
        q = self.path_end[np.searchsorted(self.path_start, pl, side="right") - 1]
        e = q - pl  # the links ahead on each path
        block = self.kind[self.P[q]] == NON_FREE
        if bool(block.any()):
            jump = int(e[block].min())
        else:
            jump = int(e.max()) + 1 if len(e) else 1
        scanned = _ranges(pl, np.minimum(jump, e + 1))
        self.done[nroots + self.P[scanned]] = True
        self.done[rows[~inl]] = True
        links = _ranges(pl, np.minimum(jump, e))
        y = self.P[links + 1]
        self.need[y] = 0
        self.gray_row[y] = nroots + self.P[links]
        self.gray_dst[y] = y
        self.waves += jump
        if jump < MIN_JUMP:  # mostly non-free waves: try again only after a growing pause
            self.next_try = self.waves + self.backoff
            self.backoff *= 2
        else:
            self.next_try, self.backoff = self.waves, 1
        nxt: _IntArr = self.P[pl[pl + jump <= q] + jump] + nroots
        return nxt

    def python_waves(self, wave: list[int], min_numpy_wave: int) -> list[int]:
        """Scan waves one edge at a time until a wave has *min_numpy_wave* rows or none, or
        :meth:`wants_jump` may hold for it; return that wave.  Memoryviews give list-speed
        scalar access to the arrays."""
        done: memoryview = self.done.data
        need: memoryview = self.need.data
        ptr: memoryview = self.indptr.data
        dst: memoryview = self.dst.data
        fwd: memoryview = self.fwd.data
        grow: memoryview = self.gray_row.data
        gdst: memoryview = self.gray_dst.data
        # kind[t] is NON_FREE (0) for every t until prepare() has run
        kind: memoryview = self.kind.data
        nroots = self.nroots
        while True:
            nxt: list[int] = []
            append = nxt.append
            nonfree = 0  # rows appended to nxt that a chain jump cannot scan
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
                        if not kind[t]:
                            nonfree += 1
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
                        if not kind[u]:
                            nonfree += 1
            self.waves += 1
            if not nxt or len(nxt) >= min_numpy_wave or self.wants_prepare() \
                    or (not nonfree and self.waves >= self.next_try):
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
                    nroots: int, *, min_numpy_wave: int = MIN_NUMPY_WAVE,
                    jump_after: int = JUMP_AFTER) -> None:
    """Drain the gray list wave by wave; the same result as :func:`drain_gray_list_reference`.

    Updates *need*, *done*, *gray_row* and *gray_dst* in place, bit for bit
    as the reference does (see the module docstring for the arrays).  Every
    row is scanned in the kernel's FIFO order; waves of at least
    *min_numpy_wave* rows are scanned with numpy, narrower ones with a
    Python loop (the result does not depend on it, nor on *jump_after*,
    only the time).  The rows it scanned are the ones it set in *done*.

    After *jump_after* waves the rows are classified once, and from then on
    a wave whose rows each gray at most one object that no other row can
    reach (linked lists, hash chains) is scanned together with the waves
    that follow it, up to the first wave holding another kind of row, in
    one numpy step (a *chain jump*; see ``_Drain.prepare``).

    Runtime complexity: ``O(N + Q log(Q) + E + E_2 log(E_2))`` for ``N``
    objects, ``Q`` rows in *queue*, ``E`` edges and the ``E_2`` edges of
    wide waves to white objects with ``min_count`` above 1 (the only ones
    sorted); of these, ``O(E_n + E_f)`` are Python steps: the ``E_n``
    edges of narrow waves not covered by a jump and the ``E_f`` edges to
    objects with an ``excess_ref`` or named by one.  Each wide wave adds a
    fixed cost of about twenty numpy calls, each jump about forty, the
    classification about ``2**RULER_BITS * log(N)`` (the ruling set's walk).

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
    if isinstance(jump_after, bool) or not isinstance(jump_after, int) or jump_after < 1:
        raise KmemsimValueError(f"jump_after must be a positive int, not {jump_after!r}")
    if not q.size:
        return
    # The first wave may repeat a row: only its first occurrence can be scanned.
    _, first = np.unique(q, return_index=True)
    q = q[np.sort(first)]
    d = _Drain(indptr, dst, need, fwd, done, gray_row, gray_dst, int(nroots), n,
               jump_after)
    wave: list[int] | _IntArr = q
    while len(wave):
        if d.wants_prepare():
            d.prepare()
        if d.waves >= d.next_try:
            jumped = d.jump(np.asarray(wave, dtype=I64))
            if jumped is not None:
                wave = jumped
                continue
        if len(wave) < min_numpy_wave:
            wave = d.python_waves(wave.tolist() if isinstance(wave, np.ndarray) else wave,
                                  min_numpy_wave)
        else:
            wave = d.numpy_wave(np.asarray(wave, dtype=I64))
            d.waves += 1
