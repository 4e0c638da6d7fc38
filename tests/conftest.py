"""Hypothesis profiles for the property suite, chosen by ``HYPOTHESIS_PROFILE``.

* ``dev`` (default): quick, for local runs (about a minute for the property files);
* ``ci``: at least 200 examples per property; CI sets ``HYPOTHESIS_PROFILE=ci``;
* ``deep``: long runs hunting rare states (``HYPOTHESIS_PROFILE=deep``).

Tests that pass an explicit ``max_examples`` keep it; the profile sets the rest.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = settings(deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

settings.register_profile("dev", _COMMON, max_examples=30, stateful_step_count=25)
settings.register_profile("ci", _COMMON, max_examples=200, stateful_step_count=30,
                          derandomize=True, print_blob=True)
settings.register_profile("deep", _COMMON, max_examples=5000, stateful_step_count=60)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
