"""Run the notebooks (collected by nbmake, ``--nbmake`` in pyproject) in quick mode.

nbmake starts one Jupyter kernel per notebook, and the kernel inherits this
process's environment when it starts.  The notebooks read ``KMEMSIM_QUICK``;
it is set just before each notebook runs (not only once at import) because a
test may change ``os.environ`` in between.  ``KMEMSIM_QUICK=0 pytest
notebooks`` runs them in full mode.
"""

from __future__ import annotations

import os

import pytest

QUICK_ENV = "KMEMSIM_QUICK"
_QUICK = os.environ.get(QUICK_ENV, "1")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.path.suffix == ".ipynb":
        os.environ[QUICK_ENV] = _QUICK
