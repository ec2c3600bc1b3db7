"""What may go into a shard as a point, checked before it is written: `vector(value, dims)` (exactly `dims`
finite 32-bit floats, not all zeros) and `BadRecord`, what is wrong with one record read from a file
(a backup line, a legacy store's point), naming the field it is about. Restore, import and the
legacy migration's child share these checks; the memory-level checks of a record's payload are
`clarity.memory.validate`.
"""

from __future__ import annotations

import math
from typing import Any

from clarity.values import shown

FLOAT32_MAX = 3.4028234663852886e38


class BadRecord(ValueError):
    """What is wrong with one memory from a file; `field`: the top-level field it is about."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def vector(value: Any, dims: int) -> list[float]:
    """`value` as a dense vector of this store: `dims` finite 32-bit floats, not all zero; else BadRecord."""
    if not isinstance(value, list):
        raise BadRecord("vector", f"vector: must be an array of {dims} numbers, not {shown(value)}")
    if len(value) != dims:
        raise BadRecord("vector", f"vector: has {len(value)} numbers, the store's vectors have {dims}")
    if dims and all(type(x) is float for x in value):  # the usual case, checked without a Python loop
        top = max(map(abs, value))
        if top <= FLOAT32_MAX and math.isfinite(math.fsum(value)):
            if top == 0.0:
                raise BadRecord("vector", "vector: is all zeros (a vector without a direction)")
            return value
    out = []
    for i, x in enumerate(value):
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise BadRecord("vector", f"vector[{i}]: must be a number, not {shown(x)}")
        if abs(x) > FLOAT32_MAX or not math.isfinite(x):
            raise BadRecord("vector", f"vector[{i}]: {shown(x)} is not a finite 32-bit float")
        out.append(float(x))
    if not any(out):
        raise BadRecord("vector", "vector: is all zeros (a vector without a direction)")
    return out
