"""Predecessor and successor lookups on a ``SortedDict``, without its positional index.

``sd.peekitem(sd.bisect_right(x) - 1)`` is the documented way to find the
largest key not above *x*, but the positional index it needs is rebuilt
after every insertion or deletion, and the simulator interleaves lookups
with allocations millions of times.  These helpers bisect the
``SortedList``'s sublists directly (``_maxes`` and ``_lists``, stable
since sortedcontainers 2.0): two C-speed bisections per lookup.

>>> from sortedcontainers import SortedDict
>>> sd = SortedDict({10: "a", 20: "b", 30: "c"})
>>> floor_key(sd, 25), floor_key(sd, 30), floor_key(sd, 5)
(20, 30, None)
>>> ceil_key(sd, 11), ceil_key(sd, 30), ceil_key(sd, 31)
(20, 30, None)
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

__all__ = ["ceil_key", "floor_key"]


def floor_key(sd: Any, x: int) -> Any:
    """The largest key ``<= x`` of the ``SortedDict`` *sd*, or ``None``.  ``O(log(n))``."""
    sl = sd._list
    maxes = sl._maxes
    if not maxes:
        return None
    pos = bisect_right(maxes, x)
    if pos == len(maxes):
        return maxes[-1]
    sub = sl._lists[pos]
    idx = bisect_right(sub, x)
    if idx:
        return sub[idx - 1]
    return maxes[pos - 1] if pos else None


def ceil_key(sd: Any, x: int) -> Any:
    """The smallest key ``>= x`` of the ``SortedDict`` *sd*, or ``None``.  ``O(log(n))``."""
    sl = sd._list
    maxes = sl._maxes
    pos = bisect_left(maxes, x)
    if pos == len(maxes):
        return None
    sub = sl._lists[pos]
    return sub[bisect_left(sub, x)]
