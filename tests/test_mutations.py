"""Mutation check: every named fault in the reference scan is caught by the suite.

For each fault of :mod:`kmemsim.kmemleak.faults`, the fault is injected and the
property suite runs with the reference engine: the heap properties of
``tests/test_properties.py``, the :class:`~kmemsim.testing.KernelMachine` (its
twin, the oracle, runs with faults suspended) and selected named rule tests of
``tests/test_scan_rules.py``.  At least one check must fail.  Which checks
caught which fault is printed (``pytest -s``) and kept in :data:`CAUGHT`.

In ``dev`` the cheap rule tests run first and the first catch ends the
search; in ``ci`` the properties and the machine run first (a catch by the
property suite is what this file is about), and the first catch ends it; in
``deep`` every check runs, which gives the full catch matrix.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import test_properties as props
import test_scan_rules as rules
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from kmemsim.kmemleak import faults
from kmemsim.kmemleak.index import ObjectTree
from kmemsim.kmemleak.object import KmemleakObject
from kmemsim.testing import KernelMachine

#: Generation only (no shrinking, no database): a failure is enough, and quick.
_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "dev")
_EXAMPLES = {"dev": 20, "ci": 30, "deep": 300}.get(_PROFILE, 20)
_FAST = settings(max_examples=_EXAMPLES, phases=[Phase.generate], database=None,
                 deadline=None, stateful_step_count=30, print_blob=False,
                 suppress_health_check=list(HealthCheck))

#: Named rule tests (tests/test_scan_rules.py) that take only a kernel.
RULE_TESTS = (
    "test_self_reference_ignored",
    "test_one_past_the_end_does_not_count",
    "test_count_saturates_at_min_count",
    "test_surplus_reference_to_gray_vm_struct_forwarded_via_excess_ref",
    "test_excess_ref_forwarded_once_per_surplus_word",
    "test_two_scan_effect_nonzero_object_spared_once",
    "test_scan_areas_limit_scanning",
    "test_no_scan_object_contents_ignored_but_object_reportable",
    "test_each_change_postpones_report",
    "test_word_outside_window_ignored",
)

#: fault -> names of the checks that caught it (filled as the tests run).
CAUGHT: dict[str, list[str]] = {}


def _machine() -> None:
    run_state_machine_as_test(KernelMachine, settings=_FAST)


def _heap_check(name: str) -> Callable[[], None]:
    strategy, check = props.HEAP_CHECKS[name]
    return lambda: _FAST(given(heap=strategy)(check))()


def _monotonicity() -> None:
    _FAST(given(heap=props.MIXED, node=st.integers(0, 63))(
        props.check_adding_a_root_never_adds_a_report))()


def _after_operations() -> None:
    _FAST(given(heap=props.MIXED, ops=props.HEAP_OPERATIONS)(
        props.check_engines_agree_after_operations))()


def _rule(name: str) -> Callable[[], None]:
    fn = getattr(rules, name, None)
    # A renamed rule test must fail here, not silently stop guarding its fault.
    assert fn is not None, f"tests/test_scan_rules.py has no {name}: update RULE_TESTS"

    def run() -> None:
        if name == "test_word_outside_window_ignored":
            # it reads a ``lookups`` fixture: a spy on ObjectTree.lookup
            mp = pytest.MonkeyPatch()
            calls: list[tuple[str, int]] = []
            orig = ObjectTree.lookup

            def spy(self: ObjectTree, addr: int) -> KmemleakObject | None:
                calls.append((self.name, addr))
                return orig(self, addr)

            mp.setattr(ObjectTree, "lookup", spy)
            try:
                fn(rules.boot(), calls)
            finally:
                mp.undo()
        else:
            fn(rules.boot())

    return run


def checks(rules_first: bool = False) -> dict[str, Callable[[], None]]:
    """Every check: the properties and the machine, then the rule tests (or the cheap
    rule tests first)."""
    props_: dict[str, Callable[[], None]] = {"KernelMachine": _machine}
    for name in props.HEAP_CHECKS:
        props_[f"property {name}"] = _heap_check(name)
    props_["property adding_a_root_never_adds_a_report"] = _monotonicity
    props_["property engines_agree_after_operations"] = _after_operations
    rules_: dict[str, Callable[[], None]] = {}
    for name in RULE_TESTS:
        rules_[f"rule {name}"] = _rule(name)
    return rules_ | props_ if rules_first else props_ | rules_


@pytest.mark.parametrize("fault", sorted(faults.FAULTS))
def test_fault_is_caught(fault: str) -> None:
    stop_early = _PROFILE != "deep"
    caught: list[str] = []
    assert rules._engine[0] == "reference"
    with faults.inject(fault):
        for name, run in checks(rules_first=_PROFILE == "dev").items():
            try:
                run()
            except (AssertionError, ExceptionGroup):
                caught.append(name)
                if stop_early:
                    break
    assert not faults.ACTIVE
    CAUGHT[fault] = caught
    print(f"\n{fault}: caught by {', '.join(caught) or 'NOTHING'}")
    assert caught, f"fault {fault!r} ({faults.FAULTS[fault]}) was not caught"


def test_rule_checks_pass_without_faults() -> None:
    """The rule checks pass with no fault (the properties and the machine run in
    ``tests/test_properties.py``): a catch above is the fault's doing."""
    for name, run in checks().items():
        if name.startswith("rule "):
            run()
