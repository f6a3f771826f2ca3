"""One range check for every configuration value: the error names the value and what is allowed."""

import math
from typing import Any


def check_range(name: str, value: Any, low: float, high: float, low_open: bool = False,
                high_open: bool = False, integer: bool = False) -> None:
    """Raise ValueError naming name unless value is a number in its interval.

    The interval is [low, high], with open ends where asked; integer also requires an int.
    NaN, infinities and booleans are refused.
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    bad = not number or (integer and not isinstance(value, int))
    if not bad:
        bad = (not math.isfinite(value) or value < low or value > high
               or (low_open and value == low) or (high_open and value == high))
    if bad:
        # Infinite ends are open: no value reaches them (infinities are refused).
        left = '(' if low_open or math.isinf(low) else '['
        right = ')' if high_open or math.isinf(high) else ']'
        kind = 'an integer' if integer else 'a finite number'
        raise ValueError(f'{name} = {value!r} is out of range: allowed {kind} in '
                         f'{left}{low}, {high}{right}')


class InvalidField(ValueError):
    """Input from outside (a message, a file) refused; `field` names the part that is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f'{field}: {reason}')
        self.field = field
