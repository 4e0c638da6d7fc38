"""Reporting rules kmemleak does not have yet, applied to the scans it ran.

Two proposals of 2026 (spec section 10.3) change only *which* white objects
a scan reports, so they can be evaluated on the scans kmemsim already ran,
without a knob inside the detector:

* **``min_unref_scans``** (Breno Leitao's patch): report an object only once
  it has been unreferenced (white, allocated, old enough) in that many
  consecutive scans.  The ``OBJECT_REPORTED`` flag does not feed back into
  colouring, so filtering each scan's unreferenced set is exactly what the
  patched kernel would report.
* **checksums seeded with ``~0``** (Catalin Marinas' proposal): a new
  object's stored checksum starts at ``0xffffffff`` instead of 0.  The two
  kernels differ only the first time the checksum pass sees an object white:
  with seed 0 an object whose CRC is 0 (all-zero contents) is "unmodified"
  and can be reported at once; with ``~0`` it is spared for that scan.
  Sparing grays it for the rest of the scan, but an all-zero object holds no
  pointer, so no other colour changes; after that pass both kernels store
  the same CRC.  (A non-zero object whose CRC happens to be 0, or
  ``0xffffffff``, has probability 2**-32 and is ignored;
  ``kmemleak_transient_leak`` resetting to ``~0`` is not modelled.)

Objects are keyed by address: call :meth:`ReportRules.forget` when one is
freed if its address may be reused between observed scans.

>>> from kmemsim import Kernel
>>> k = Kernel(config={"CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN": False})
>>> p = k.kzalloc(64)                                  # an all-zero leak
>>> k.sleep(6)
>>> now, late = ReportRules(), ReportRules(checksum_seed="~0")
>>> r = k.kmemleak.scan()
>>> now.observe(r) == [p], late.observe(r)
(True, [])
>>> r = k.kmemleak.scan()
>>> now.observe(r), late.observe(r) == [p]
([], True)
"""

from __future__ import annotations

from ..errors import KmemsimValueError, check_int
from ..kmemleak import ScanResult

#: Values of the ``checksum_seed`` switch.
CHECKSUM_SEEDS = ("0", "~0")


class ReportRules:
    """Decide, scan by scan, what kmemleak would report under the chosen rules.

    ``ReportRules()`` (``min_unref_scans=1``, ``checksum_seed="0"``) reports
    exactly each scan's ``new_leaks``.  Complexity: ``O(U + Y + S)`` per scan
    for the scan's unreferenced, too-young and spared objects.
    """

    __slots__ = ("_reported", "_run", "_seen_white", "checksum_seed", "min_unref_scans")

    def __init__(self, *, min_unref_scans: int = 1, checksum_seed: str = "0") -> None:
        check_int("min_unref_scans", min_unref_scans, minimum=1)
        if checksum_seed not in CHECKSUM_SEEDS:
            raise KmemsimValueError(f"checksum_seed must be '0' or '~0', got {checksum_seed!r}")
        self.min_unref_scans = min_unref_scans
        self.checksum_seed = checksum_seed
        self._seen_white: set[int] = set()
        self._run: dict[int, int] = {}
        self._reported: set[int] = set()

    def __repr__(self) -> str:
        return (f"ReportRules(min_unref_scans={self.min_unref_scans}, "
                f"checksum_seed={self.checksum_seed!r})")

    @property
    def reported(self) -> frozenset[int]:
        """Every object reported so far under these rules."""
        return frozenset(self._reported)

    def forget(self, pointer: int) -> None:
        """The object at *pointer* was freed: drop what is known about it."""
        self._seen_white.discard(pointer)
        self._run.pop(pointer, None)
        self._reported.discard(pointer)

    def observe(self, result: ScanResult) -> list[int]:
        """Feed one scan (in order); return the pointers newly reported, in ``object_list`` order."""
        if result.interrupted:
            return []
        unref = result.unreferenced  # every white, allocated, old-enough object of this scan
        first_white = {r.pointer for r in unref if r.pointer not in self._seen_white}
        spared_by_seed = set()
        if self.checksum_seed == "~0":
            # seed 0 found these unmodified (stored 0 == CRC 0); seed ~0 finds them modified
            spared_by_seed = {r.pointer for r in unref
                              if r.pointer in first_white and r.checksum == 0}
        self._seen_white.update(r.pointer for r in unref)
        self._seen_white.update(result.too_young)
        self._seen_white.update(result.checksum_spared)
        run: dict[int, int] = {}
        new: list[int] = []
        for r in unref:
            if r.pointer in spared_by_seed:
                continue
            n = self._run.get(r.pointer, 0) + 1
            run[r.pointer] = n
            if n >= self.min_unref_scans and r.pointer not in self._reported:
                self._reported.add(r.pointer)
                new.append(r.pointer)
        self._run = run  # an object not unreferenced in this scan restarts its run
        return new
