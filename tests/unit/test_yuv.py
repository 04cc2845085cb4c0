"""RGBA -> I420 for the H.264 encoders (render/yuv.py), checked against PyAV's own converter (swscale)."""

from __future__ import annotations

import av
import numpy as np

from openrr.render.yuv import planes, to_i420


def _swscale(rgba: np.ndarray) -> np.ndarray:
    converted: np.ndarray = av.VideoFrame.from_ndarray(rgba, format="rgba").reformat(format="yuv420p").to_ndarray()
    return converted


def _picture(height: int, width: int) -> np.ndarray:
    """Smooth gradients with a hard-edged square: what rendered frames are made of."""
    y, x = np.mgrid[0:height, 0:width]
    rgba = np.empty((height, width, 4), dtype=np.uint8)
    rgba[..., 0] = x * 255 // (width - 1)
    rgba[..., 1] = y * 255 // (height - 1)
    rgba[..., 2] = 90
    rgba[..., 3] = 255
    rgba[height // 4 : height // 2 + 1, width // 4 : width // 2 + 1, :3] = (230, 40, 30)
    return rgba


def test_i420_matches_swscale() -> None:
    rgba = _picture(720, 1280)
    ours, theirs = to_i420(rgba).astype(int), _swscale(rgba).astype(int)
    assert ours.shape == theirs.shape == (1080, 1280)
    luma = np.abs(ours[:720] - theirs[:720])
    assert luma.max() <= 1, "the same BT.601 limited-range luma"
    chroma = np.abs(ours[720:] - theirs[720:])
    assert chroma.mean() < 0.6 and np.percentile(chroma, 99) <= 2, "chroma filtered alike, but for edges"


def test_chroma_is_each_blocks_mean_colour() -> None:
    """OpenCV's own I420 would take the top-left pixel of each 2×2 block (red here: U 90, V 240)."""
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[::2, ::2, 0] = 255  # red, top left of each block
    rgba[1::2, 1::2, 2] = 255  # blue, bottom right; the other two black: the mean is (63.75, 0, 63.75)
    _, u, v = planes(to_i420(rgba))
    assert np.all(u == 147) and np.all(v == 152)  # 128 + (-0.148 + 0.439) * 63.75, 128 + (0.439 - 0.071) * 63.75


def test_odd_sizes_and_views_of_larger_buffers() -> None:
    """The render process's pictures are views into a slot sized for 4K; 4:2:0 drops an odd last row or column."""
    slot = np.zeros((2160, 3840, 4), dtype=np.uint8)
    slot[:719, :1279] = _picture(719, 1279)
    i420 = to_i420(slot[:719, :1279])
    luma, u, v = planes(i420)
    assert i420.shape == (1077, 1278) and luma.shape == (718, 1278) and u.shape == v.shape == (359, 639)
    assert np.abs(luma.astype(int) - _swscale(np.ascontiguousarray(slot[:718, :1278]))[:718]).max() <= 1
    decoded = av.VideoFrame.from_ndarray(i420, format="yuv420p")
    assert (decoded.width, decoded.height) == (1278, 718)
