"""The command-id stamp written into I420 pictures for WebRTC; the stamp itself is protocol/stamp.py."""

from __future__ import annotations

import numpy as np

from openrr.protocol.stamp import STAMP_BLOCK_H, STAMP_WIDTH, stamp_row
from openrr.render.yuv import I420, planes


def write_stamp_i420(i420: I420, command_id: int) -> None:
    """write_stamp for an I420 picture (yuv.py), in place: the blocks white (Y 235) or black (Y 16), as an RGB
    stamp comes out of BT.601's limited range, with neutral chroma."""
    luma, u, v = planes(i420)
    if luma.shape[1] < STAMP_WIDTH or luma.shape[0] < STAMP_BLOCK_H:
        return
    luma[:STAMP_BLOCK_H, :STAMP_WIDTH] = np.where(stamp_row(command_id), 235, 16).astype(np.uint8)
    u[: STAMP_BLOCK_H // 2, : STAMP_WIDTH // 2] = 128
    v[: STAMP_BLOCK_H // 2, : STAMP_WIDTH // 2] = 128
