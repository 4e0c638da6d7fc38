"""Stress with error injection: valid operations and a buggy caller's, mixed.

:class:`~kmemsim.testing.MisuseMachine` runs at least 1,000 steps per kernel
configuration here whatever the Hypothesis profile (the settings are explicit,
derandomized, and sized to finish in well under a minute on CI's machine); the
plain seeded loop :func:`~kmemsim.testing.stress_run` (what
``benchmarks/stress.py`` runs for a million operations) runs a few thousand.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant, run_state_machine_as_test

from kmemsim.kmemleak.hooks import Kmemleak
from kmemsim.strategies import KernelSpec
from kmemsim.testing import MISUSE, DebugKernelSpec, MisuseMachine, stress_run

#: Explicit, so that CI's profile (HYPOTHESIS_PROFILE=ci) does not change the step count.
STRESS_SETTINGS = settings(max_examples=30, stateful_step_count=50, deadline=None,
                           derandomize=True, database=None, print_blob=True,
                           suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.data_too_large])
MIN_STEPS = 1000


class CountedMisuseMachine(MisuseMachine):
    """Counts the steps taken, across all the runs of one test."""

    steps: ClassVar[int] = 0
    runs: ClassVar[int] = 0
    answers_seen: ClassVar[set[str]] = set()

    def __init__(self) -> None:
        super().__init__()
        type(self).runs += 1

    @invariant()
    def count_steps(self) -> None:
        type(self).steps += 1  # also once right after __init__: subtracted below

    def teardown(self) -> None:
        type(self).answers_seen |= set(self.answers)
        super().teardown()


class CountedSlubDebugMachine(CountedMisuseMachine):
    """The same, on kernels booted with ``slub_debug`` (FZPU: red zones, poison,
    tracking and SLUB's checks, which answer misuse in the log instead of oopsing)."""

    spec = DebugKernelSpec(cmdline="slub_debug")


class CountedI386Machine(CountedMisuseMachine):
    """The same on a 32-bit kernel with poisoning and checks."""

    spec = DebugKernelSpec(arch="i386", cmdline="slub_debug=FP")


@pytest.mark.parametrize("machine", [CountedMisuseMachine, CountedSlubDebugMachine,
                                     CountedI386Machine], ids=["default", "slub_debug", "i386"])
def test_misuse_machine_holds_its_invariants_for_1000_steps(
        machine: type[CountedMisuseMachine]) -> None:
    machine.steps, machine.runs, machine.answers_seen = 0, 0, set()
    run_state_machine_as_test(machine, settings=STRESS_SETTINGS)
    assert machine.steps - machine.runs >= MIN_STEPS, (machine.steps, machine.runs)
    # The injected misuse was answered, with oopses as well as typed errors.
    assert {"PageFault", "KmemsimTypeError"} <= machine.answers_seen, machine.answers_seen


@pytest.mark.parametrize("spec", [KernelSpec(), DebugKernelSpec(cmdline="slub_debug"),
                                  DebugKernelSpec(arch="arm64", ncpus=4)],
                         ids=["default", "slub_debug", "arm64"])
def test_the_long_profile_finds_nothing_in_a_few_thousand_operations(spec: KernelSpec) -> None:
    report = stress_run(4000, seed=8, spec=spec, check_every=250)
    assert report.ops == 4000
    assert report.findings == {}, report.first
    assert report.checks >= 16
    assert report.scans >= 1
    assert sum(report.answers.values()) > 100  # misuse really was injected


def test_the_long_profile_is_deterministic() -> None:
    a, b = stress_run(1500, seed=3), stress_run(1500, seed=3)
    assert (a.answers, a.scans, a.boots) == (b.answers, b.scans, b.boots)


def test_an_internal_error_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness can fail: a bare IndexError inside a kmemleak call is reported."""
    def broken(self: Kmemleak, ptr: int) -> None:
        raise IndexError("simulated internal error")

    monkeypatch.setattr(Kmemleak, "kmemleak_not_leak", broken)
    report = stress_run(1500, seed=5)
    assert report.findings["internal IndexError"] >= 1
    assert "simulated internal error" in report.first["internal IndexError"]
    assert report.boots > 1  # it started over on fresh kernels and went on
    assert report.ops == 1500


def test_misuse_kinds_are_checked() -> None:
    from kmemsim.errors import KmemsimValueError
    from kmemsim.strategies import Replayer
    from kmemsim.testing import apply_misuse

    r = Replayer(KernelSpec().boot())
    with pytest.raises(KmemsimValueError, match="unknown misuse 'juggle'"):
        apply_misuse(r, [], "juggle", 0, 0)
    assert "overflow_write" in MISUSE
