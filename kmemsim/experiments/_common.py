"""Helpers shared by the built-in experiments (not public API)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernel import Kernel

#: The control file, as the article uses it.
KMEMLEAK = "/sys/kernel/debug/kmemleak"
#: Scans only when an experiment asks for one.
NO_AUTO_SCAN = {"CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN": False}


def rng_of(seed: np.random.SeedSequence) -> np.random.Generator:
    """The trial's generator (bulk draws) from its seed sequence."""
    return np.random.default_rng(seed)


def kernel_seed(seed: np.random.SeedSequence) -> int:
    """A plain int for ``Kernel(seed=...)``, derived from the trial's seed sequence."""
    return int(seed.generate_state(1, dtype=np.uint32)[0])


def boot(seed: np.random.SeedSequence, *, arch: str = "x86_64", cmdline: str = "") -> Kernel:
    """A kernel with automatic scanning off, seeded from the trial."""
    return Kernel(arch=arch, cmdline=cmdline, config=dict(NO_AUTO_SCAN), seed=kernel_seed(seed))


def age_and_scan_twice(k: Kernel) -> None:
    """Let everything be older than the 5 s minimum age, then scan twice.

    The first scan stores the checksum of each white object (non-zero
    contents look modified once); the second reports what is still white.
    """
    k.sleep(6)
    k.kmemleak.scan()
    k.kmemleak.scan()


def payload(rng: np.random.Generator, ws: int) -> int:
    """A non-zero data word that is not a kernel address (a counter, flags, a hash's low bits)."""
    return int(rng.integers(1, 1 << (8 * ws - 2)))


def choice(rng: np.random.Generator, values: list[Any]) -> Any:
    """One of *values*, drawn with the trial's generator."""
    return values[int(rng.integers(len(values)))]
