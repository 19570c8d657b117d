"""Bit helpers that work the same on Python ints and numpy uint64 arrays.

Arch helpers (``pte_mkdirty`` and friends) are written once and serve both the scalar path
(``lookup``: a few hundred nanoseconds matter) and the batch path (``translate`` over a
million PTEs). Python's ``~`` on an int is negative, which numpy refuses to mix with
uint64, so helpers clear bits with :func:`clear` and invert with :func:`invert`.
"""

from __future__ import annotations

from typing import Any, TypeAlias, overload

import numpy as np
from numpy.typing import NDArray

ALL64 = 0xFFFF_FFFF_FFFF_FFFF
U64 = NDArray[np.uint64]
#: An int or a numpy uint64 array; helpers return the same kind they were given.
Value: TypeAlias = Any


def clear(v: Value, mask: int) -> Value:
    """``v & ~mask`` within 64 bits."""
    return v & (ALL64 ^ mask)


def invert(v: Value) -> Value:
    """``~v`` within 64 bits."""
    return v ^ ALL64


@overload
def test(v: int, mask: int) -> bool: ...
@overload
def test(v: U64, mask: int) -> NDArray[np.bool_]: ...
def test(v: int | U64, mask: int) -> bool | NDArray[np.bool_]:
    """True where any bit of ``mask`` is set."""
    return (v & mask) != 0


@overload
def test_all(v: int, mask: int) -> bool: ...
@overload
def test_all(v: U64, mask: int) -> NDArray[np.bool_]: ...
def test_all(v: int | U64, mask: int) -> bool | NDArray[np.bool_]:
    """True where every bit of ``mask`` is set."""
    return (v & mask) == mask


def select(cond: bool | NDArray[np.bool_], a: Value, b: Value) -> Value:
    """``a if cond else b`` elementwise (numpy ``where`` for arrays)."""
    if isinstance(cond, (bool, np.bool_)):
        return a if cond else b
    return np.asarray(np.where(cond, a, b), dtype=np.uint64)


def u64(values: object) -> U64:
    """Coerce ints or arrays to a 1-D uint64 array (values must fit in 64 bits)."""
    arr = np.asarray(values)
    if arr.dtype != np.uint64:
        if arr.dtype.kind == "i" and arr.size and int(arr.min()) < 0:
            raise ValueError("negative value cannot be a 64-bit entry")
        if arr.dtype.kind == "O":
            arr = np.array([int(x) for x in arr.ravel()], dtype=np.uint64).reshape(arr.shape)
        arr = arr.astype(np.uint64)
    return np.atleast_1d(arr)
