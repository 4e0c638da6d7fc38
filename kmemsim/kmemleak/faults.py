"""Named deliberate faults in the reference scan, for mutation testing only.

A property suite that cannot fail proves nothing.  Each name below switches
on one small, plausible bug in the *reference* engine (``scan.py``,
``object.py``, ``hooks.py``); ``tests/test_mutations.py`` runs the property
suite with each fault active and requires it to be caught.

**For tests only.**  Never activate a fault in a simulation whose results you
mean to use.  While any fault is active, :func:`~kmemsim.kmemleak.scan.kmemleak_scan`
ignores ``engine="fast"`` and runs the reference walk, because the faults
live there.  The checks cost one truthiness test of :data:`ACTIVE` (an empty
set) on the paths they guard.

>>> from kmemsim import Kernel
>>> k = Kernel(config={"CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN": False})
>>> p = k.kzalloc(64)
>>> with inject("zlib_crc"):
...     r = k.kmemleak.scan()
>>> r.engine, p in r.checksum_spared      # zlib's CRC of zeros is not 0: spared once
('reference', True)
>>> ACTIVE
set()
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ACTIVE", "FAULTS", "inject", "suspended"]

#: Every fault name and the bug it plants.
FAULTS: dict[str, str] = {
    "self_references_counted": "a word inside an object pointing into that object counts",
    "end_inclusive": "the address one past an object's end counts as inside it",
    "no_saturation": "references to a gray object keep raising its count; no surplus forwarded",
    "excess_ref_ignored": "surplus references are never forwarded through excess_ref",
    "min_age_ignored": "objects younger than the minimum age are reported",
    "zlib_crc": "checksums use zlib.crc32 (inverted) instead of the kernel's crc32",
    "checksum_pass_skipped": "the modified-object pass and the second drain are skipped",
    "scan_areas_ignored": "objects with scan areas are scanned whole",
    "no_scan_ignored": "OBJECT_NO_SCAN objects are scanned",
    "windows_not_applied": "words outside the address windows are looked up in the trees",
}

#: The active fault names.  Empty in every normal run; the guarded code tests
#: ``if faults.ACTIVE and "name" in faults.ACTIVE`` so normal runs pay one
#: truthiness check.
ACTIVE: set[str] = set()


@contextmanager
def inject(name: str) -> Iterator[None]:
    """Activate the fault *name* inside the ``with`` block (tests only).

    >>> with inject("end_inclusive"):
    ...     sorted(ACTIVE)
    ['end_inclusive']
    >>> inject("typo").__enter__()
    Traceback (most recent call last):
    ...
    ValueError: unknown fault 'typo'
    """
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}")
    was_active = name in ACTIVE
    ACTIVE.add(name)
    try:
        yield
    finally:
        if not was_active:
            ACTIVE.discard(name)


@contextmanager
def suspended() -> Iterator[None]:
    """Deactivate every fault inside the block (an oracle's scan), then restore them.

    >>> with inject("zlib_crc"), suspended():
    ...     ACTIVE
    set()
    """
    saved = set(ACTIVE)
    ACTIVE.clear()
    try:
        yield
    finally:
        ACTIVE.clear()
        ACTIVE.update(saved)
