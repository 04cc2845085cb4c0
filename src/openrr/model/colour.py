"""Colour encodings: the sRGB transfer function, for formats whose colours are display values."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def srgb_to_linear(values: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """sRGB-encoded values in 0..1 → linear (IEC 61966-2-1), as float32; callers leave alpha out."""
    c = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)
