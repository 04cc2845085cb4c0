"""The command-id stamp drawn into WebRTC pictures (docs/render-protocol.md, "WebRTC").

RTP carries no side channel for "which command does this picture show", so the server draws it into the picture:
32 bits, most significant first, left to right in the top-left corner, each bit a block STAMP_BLOCK_W wide and
STAMP_BLOCK_H tall (white = 1, black = 0). Blocks this size sit on H.264's 16-pixel macroblock rows and survive
lossy coding: a reader thresholds the mean brightness of each block's centre. The I420 writer is the server's
(render/stamp.py: it needs yuv.py).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

STAMP_BITS = 32
STAMP_BLOCK_W = 8
STAMP_BLOCK_H = 16
STAMP_WIDTH = STAMP_BITS * STAMP_BLOCK_W
"""256 pixels: a picture narrower than this carries no stamp."""


def stamp_row(command_id: int) -> npt.NDArray[np.bool_]:
    """One row of the stamp, STAMP_WIDTH pixels: True where white."""
    value = command_id & 0xFFFFFFFF
    bits = np.array([(value >> (STAMP_BITS - 1 - i)) & 1 for i in range(STAMP_BITS)], dtype=bool)
    return np.repeat(bits, STAMP_BLOCK_W)


def write_stamp(rgb: npt.NDArray[np.uint8], command_id: int) -> None:
    """Draw `command_id` (0 … 2³²-1) into the top-left STAMP_WIDTH × STAMP_BLOCK_H pixels of `rgb` (RGB or RGBA),
    in place."""
    height, width = rgb.shape[:2]
    if width < STAMP_WIDTH or height < STAMP_BLOCK_H:
        return
    rgb[:STAMP_BLOCK_H, :STAMP_WIDTH, :] = stamp_row(command_id).astype(np.uint8)[None, :, None] * 255


def read_stamp(rgb: npt.NDArray[np.uint8]) -> int | None:
    """The command id stamped into a (decoded) picture, or None if it is too small to carry one."""
    height, width = rgb.shape[:2]
    if width < STAMP_WIDTH or height < STAMP_BLOCK_H:
        return None
    strip = rgb[2 : STAMP_BLOCK_H - 2, :STAMP_WIDTH].astype(np.float32).mean(axis=(0, 2))  # brightness per column
    blocks = strip.reshape(STAMP_BITS, STAMP_BLOCK_W)[:, 2 : STAMP_BLOCK_W - 2].mean(axis=1)
    value = 0
    for bit in blocks > 127.5:
        value = (value << 1) | int(bit)
    return value
