"""The exceptions kmemsim raises, one documented type per kind of mistake.

* :class:`KmemsimError` is the base of everything kmemsim raises on purpose.
* :class:`KmemsimValueError` and :class:`KmemsimTypeError` answer bad
  arguments to a public call (they are also :class:`ValueError` and
  :class:`TypeError`, so ordinary ``except`` clauses work).
* :class:`KernelOops` is the simulated kernel dying in the code path the
  caller asked for (a page fault, a ``BUG()``); its :attr:`~KernelOops.lines`
  are what the kernel would print, and they are also in ``dmesg``.  The
  simulated kernel keeps working afterwards, as a kernel with
  ``panic_on_oops=0`` does for the next task.
* File operations on simulated files raise :class:`OSError` with the errno a
  real ``write(2)`` would set (``EINVAL``, ``EPERM``, ``ENOENT``).

>>> from kmemsim.errors import KmemsimValueError
>>> issubclass(KmemsimValueError, ValueError)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast


class KmemsimError(Exception):
    """Base class of every error kmemsim raises on purpose."""


class KmemsimValueError(KmemsimError, ValueError):
    """An argument has the right type but a value the call cannot accept."""


class KmemsimTypeError(KmemsimError, TypeError):
    """An argument has the wrong type."""


class KmemsimFormatError(KmemsimValueError):
    """A saved-state file (:mod:`kmemsim.persist`) is truncated, corrupted, tampered
    with, of a newer format version, not a kmemsim save at all, or names code
    that may not be loaded; nothing of it was loaded."""


class KernelOops(KmemsimError):
    """The simulated kernel oopsed; ``lines`` holds the report as printed."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(lines[0] if lines else "kernel oops")
        self.lines = lines


class PageFault(KernelOops):
    """An access to an address no region maps (or to a guard page)."""

    def __init__(self, address: int, lines: list[str], *, write: bool) -> None:
        super().__init__(lines)
        self.address = address
        self.write = write


def check_int(name: str, value: object, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """Validate that *value* is an ``int`` (not ``bool``) in ``[minimum, maximum]``.

    >>> check_int("size", 8, minimum=1)
    8
    >>> check_int("ptr", 1 << 64, maximum=(1 << 64) - 1)
    Traceback (most recent call last):
    ...
    kmemsim.errors.KmemsimValueError: ptr must be at most 0xffffffffffffffff, got 0x10000000000000000
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise KmemsimTypeError(f"{name} must be an int, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise KmemsimValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        # Upper bounds are address-space limits: hex reads better than decimal.
        raise KmemsimValueError(f"{name} must be at most {maximum:#x}, got {value:#x}")
    return value


def check_ints(name: str, values: Sequence[object], *, minimum: int | None = None,
               maximum: int | None = None) -> Sequence[int]:
    """:func:`check_int` for every item, named ``name[i]`` in the error; fast when all pass.

    >>> check_ints("sizes", [8, 16], minimum=1)
    [8, 16]
    >>> check_ints("sizes", [8, -1], minimum=0)
    Traceback (most recent call last):
    ...
    kmemsim.errors.KmemsimValueError: sizes[1] must be at least 0, got -1
    """
    if set(map(type, values)) <= {int}:  # every item exactly an int, tested at C speed
        ints = cast("Sequence[int]", values)
        if not ints or ((minimum is None or min(ints) >= minimum)
                        and (maximum is None or max(ints) <= maximum)):
            return ints
    return [check_int(f"{name}[{i}]", v, minimum=minimum, maximum=maximum)
            for i, v in enumerate(values)]
