"""kmemleak, the detector: it sees memory bytes and hook calls, nothing else.

The modules mirror ``mm/kmemleak.c``: :mod:`.object` (the per-object record
and colours), :mod:`.index` (the object trees), :mod:`.hooks` (state and the
``kmemleak_*`` API), :mod:`.scan` (the reference scan), :mod:`.fastscan`
(the same answer, vectorised), :mod:`.report` (record formats) and
:mod:`.debugfs` (the control file).  Nothing here imports the ground truth
or the workloads: the detector only knows what kmemleak knows.
"""

from .hooks import Kmemleak, KmemleakConfig, ObjectRecord
from .object import (
    KMEMLEAK_BLACK,
    KMEMLEAK_GREY,
    OBJECT_ALLOCATED,
    OBJECT_FULL_SCAN,
    OBJECT_NO_SCAN,
    OBJECT_PERCPU,
    OBJECT_PHYS,
    OBJECT_REPORTED,
    KmemleakObject,
    color_gray,
    color_white,
    crc32,
)
from .scan import GrayedBy, RootRange, ScanResult

__all__ = [
    "KMEMLEAK_BLACK",
    "KMEMLEAK_GREY",
    "OBJECT_ALLOCATED",
    "OBJECT_FULL_SCAN",
    "OBJECT_NO_SCAN",
    "OBJECT_PERCPU",
    "OBJECT_PHYS",
    "OBJECT_REPORTED",
    "GrayedBy",
    "Kmemleak",
    "KmemleakConfig",
    "KmemleakObject",
    "ObjectRecord",
    "RootRange",
    "ScanResult",
    "color_gray",
    "color_white",
    "crc32",
]
