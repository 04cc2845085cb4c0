"""Progress reported as a fraction 0..1, shared by model loading (render) and conversion."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float], None]


class MonotonicProgress:
    """Progress reports never go backwards and stay in 0..1, whatever stage reports them."""

    def __init__(self, callback: Progress | None) -> None:
        self.callback = callback
        self.last = 0.0

    def __call__(self, value: float) -> None:
        value = min(1.0, max(self.last, value))
        self.last = value
        if self.callback is not None:
            self.callback(value)
