"""The render process: a child of the render server that owns the GL context and renders the session's frames.

moderngl holds the GIL while llvmpipe draws and reads back, so with GL on a thread of the server the event loop
froze for every frame (measured: `/health` answered in 2 ms idle, ~30 ms while streaming) and a camera command
waited behind the frame being drawn. In a process of its own the GL work blocks nothing.

The child renders on its own whenever the scene is dirty and someone watches, at most `max_fps` times a second,
straight into one of two frame slots in memory shared with the server (a memfd: anonymous, gone with the last
process that maps it). The server encodes a slot on a worker thread (simplejpeg and x264 release the GIL), hands
it back, and sends the result; meanwhile the child renders the next frame into the other slot. Encoding stays
out of the child on purpose: a second thread there would wait for the GIL behind every draw call. Camera
changes arriving during a frame are applied together before the next one: the latest wins, none queues.

Messages, both ways over a Unix socket pair: an 8-byte little-endian length, then a pickle. Only the two halves
of this module read them, so pickle's trust model (it runs code) is the child's and parent's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import mmap
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from openrr.render.control import EXIT_RENDER_PROCESS_FAILED

logger = logging.getLogger(__name__)

_LENGTH = 8
SLOTS = 2  # one frame being encoded by the server while the next renders; more would only add latency
MAX_WIDTH, MAX_HEIGHT = 3840, 2160
CHANNELS = 4
"""Pictures are RGBA: llvmpipe reads RGBA back as a copy of its tiles but converts every pixel for RGB (at 720p,
0.6 against 1.5 ms, on the render's critical path); the encoders take either."""
SLOT_BYTES = MAX_WIDTH * MAX_HEIGHT * CHANNELS
"""Room for the largest frame a client may ask for. The memfd is sparse: only the pages frames touch take memory."""
_CALLS = (
    "add_model",
    "remove",
    "set_transform",
    "set_node_matrices",
    "set_node_states",
    "set_material",
    "set_environment",
    "set_environment_intensity",
    "set_lights",
    "set_output",
    "set_antialiasing",
    "set_cut_planes",
    "resize",
    "set_over_limit",
)
_ERRORS: dict[str, type[Exception]] = {"ValueError": ValueError, "KeyError": KeyError, "TypeError": TypeError}
_MALLOC_TUNING = {
    # llvmpipe allocates and frees its binning scene (megabytes) every frame. With glibc's defaults those blocks
    # came from fresh mmaps or a heap trimmed back after each frame, so every frame page-faulted them in again
    # (profiled: brk/sbrk and page zeroing in the render thread; renders swung between 17 and 30 ms at 100k).
    # Keeping them on a heap that is never trimmed makes a frame reuse the last frame's memory.
    "MALLOC_MMAP_THRESHOLD_": str(256 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    "MALLOC_TOP_PAD_": str(64 << 20),
}
RENDER_NICE = 10


def _frame(obj: object) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(_LENGTH, "little") + data


@dataclass(frozen=True)
class FrameState:
    """What the next frame is for: sent by the server with every change that needs a new frame."""

    command_id: int
    """The controller's last applied command (0: none new); stamped on the frame."""
    watched: bool
    """Someone is connected; if not, nothing is rendered."""
    max_fps: float


@dataclass(frozen=True)
class RenderedFrame:
    """A frame waiting in shared memory slot `slot`; the server reads it with `RenderProcess.picture` and gives
    the slot back with `release`."""

    frame_no: int
    command_id: int
    started: float
    """time.perf_counter() when rendering began (CLOCK_MONOTONIC: the same clock in both processes)."""
    render_ms: float
    triangles: int
    slot: int
    width: int
    height: int


# --- the parent's side ---------------------------------------------------------------------------------------


class RenderProcess:
    """The server's handle on its render process. Calls that change the scene are answered (so that bad input
    comes back as ValueError/KeyError); camera and frame-state updates are fire-and-forget and ordered."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        frames: mmap.mmap,
    ) -> None:
        self._proc = proc
        self._reader = reader
        self._writer = writer
        self._frames = frames
        self._seq = 0
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._on_frame: Callable[[RenderedFrame], None] = lambda _frame: None
        self._closing = False
        self._read_task: asyncio.Task[None] | None = None
        self.gl_renderer = ""

    @classmethod
    async def start(
        cls, width: int, height: int, on_frame: Callable[[RenderedFrame], None], label: str = ""
    ) -> RenderProcess:
        """`label` only shows in the process's command line (ps, and the tests' orphan checks)."""
        memfd = os.memfd_create("openrr-frames", os.MFD_CLOEXEC)
        try:
            os.ftruncate(memfd, SLOTS * SLOT_BYTES)
            frames = mmap.mmap(memfd, SLOTS * SLOT_BYTES)
            parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            fds = (child_sock.fileno(), memfd)
            try:
                # The render server's user, cleaned environment, OOM standing and memory limit (RLIMIT_*) are
                # inherited across fork and exec: this process is as expendable and as bounded as its server from
                # its first instruction (util/child_process.lower_standing, called by the server first thing).
                # -P: its working directory (the server's home, writable by it) stays off sys.path.
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-P",
                        "-m",
                        "openrr.render.frame_process",
                        *map(str, (*fds, width, height, os.getpid())),
                        label,
                    ],
                    pass_fds=fds,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, **_MALLOC_TUNING},
                )
            finally:
                child_sock.close()
        finally:
            os.close(memfd)  # the mapping keeps the memory; the child has its own descriptor
        reader, writer = await asyncio.open_unix_connection(sock=parent_sock)
        self = cls(proc, reader, writer, frames)
        try:
            ready = await self._read()
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            proc.kill()
            raise RuntimeError(f"the render process exited before it was ready (status {proc.wait()})") from e
        if ready[0] != "ready":
            proc.kill()
            raise RuntimeError(f"the render process failed to start: {ready[1]}")
        self.gl_renderer = str(ready[1])
        self._on_frame = on_frame
        self._read_task = asyncio.create_task(self._read_loop(), name="render-process-reader")
        return self

    async def call(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Run one of Renderer's scene methods in the child and wait for it (errors come back as raised)."""
        assert method in _CALLS, method
        self._seq += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[self._seq] = future
        self._writer.write(_frame(("call", self._seq, method, args, kwargs)))
        await self._writer.drain()  # a large model: let the socket take it rather than buffering it all
        await future

    def set_camera(self, camera: Any) -> None:
        self._writer.write(_frame(("camera", camera)))

    def new_controller(self) -> None:
        self._writer.write(_frame(("new_controller",)))

    def request_frame(self, state: FrameState) -> None:
        self._writer.write(_frame(("frame", state)))

    def picture(self, frame: RenderedFrame) -> np.ndarray:
        """The frame's pixels, in place in shared memory: valid until `release(frame)`."""
        return _slot_view(self._frames, frame.slot, frame.width, frame.height)

    def release(self, frame: RenderedFrame) -> None:
        with contextlib.suppress(RuntimeError):  # closing
            self._writer.write(_frame(("release", frame.slot)))

    @property
    def pid(self) -> int:
        return self._proc.pid

    async def close(self) -> None:
        self._closing = True
        with contextlib.suppress(ConnectionError, RuntimeError):
            self._writer.write(_frame(("quit",)))
            self._writer.close()
        try:
            await asyncio.wait_for(asyncio.to_thread(self._proc.wait), timeout=5)
        except TimeoutError:
            self._proc.kill()
            await asyncio.to_thread(self._proc.wait)
        if self._read_task is not None:
            self._read_task.cancel()
            await asyncio.gather(self._read_task, return_exceptions=True)
        # Views handed out by picture() may outlive the process; the mapping goes when the last one does.

    async def _read(self) -> tuple[Any, ...]:
        length = int.from_bytes(await self._reader.readexactly(_LENGTH), "little")
        message = pickle.loads(await self._reader.readexactly(length))
        assert isinstance(message, tuple)
        return message

    async def _read_loop(self) -> None:
        try:
            while True:
                message = await self._read()
                if message[0] == "frame":
                    self._on_frame(message[1])
                elif message[0] == "reply":
                    _, seq, error, text = message
                    future = self._pending.pop(seq)
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(_ERRORS.get(error, RuntimeError)(text))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if self._closing and isinstance(e, asyncio.IncompleteReadError | ConnectionError):
                return
            if not isinstance(e, asyncio.IncompleteReadError | ConnectionError):
                logger.exception("unreadable message from the render process")
                self._proc.kill()
            status = await asyncio.to_thread(self._proc.wait)
            # Without its render process the server cannot do what a session is for; exiting lets the control
            # plane see the failure and put the session in Error, instead of answering /health with no picture.
            logger.critical("the render process died (status %s); the render server exits", status)
            logging.shutdown()
            os._exit(EXIT_RENDER_PROCESS_FAILED)


def _slot_view(frames: mmap.mmap, slot: int, width: int, height: int) -> np.ndarray:
    count = width * height * CHANNELS
    return np.frombuffer(frames, dtype=np.uint8, count=count, offset=slot * SLOT_BYTES).reshape(height, width, CHANNELS)


# --- the child's side ----------------------------------------------------------------------------------------


class _Messages:
    """Length-prefixed messages out of a blocking socket, without blocking once nothing more is ready."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def receive(self, timeout: float | None) -> Iterator[tuple[Any, ...]]:
        """Wait up to `timeout` (None: forever) for data, then yield every complete message that has arrived."""
        readable, _, _ = select.select([self._sock], [], [], timeout)
        while readable:
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                raise EOFError("the render server went away")
            self._buffer += chunk
            readable, _, _ = select.select([self._sock], [], [], 0)
        while len(self._buffer) >= _LENGTH:
            length = int.from_bytes(self._buffer[:_LENGTH], "little")
            if len(self._buffer) < _LENGTH + length:
                # The rest of a big message is on its way: wait for it.
                self._buffer += self._recv_at_least(_LENGTH + length - len(self._buffer))
                continue
            message = pickle.loads(memoryview(self._buffer)[_LENGTH : _LENGTH + length])
            del self._buffer[: _LENGTH + length]
            yield message

    def _recv_at_least(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            chunk = self._sock.recv(max(n - got, 1 << 20))
            if not chunk:
                raise EOFError("the render server went away")
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)


class _Worker:
    def __init__(self, sock: socket.socket, frames: mmap.mmap, width: int, height: int) -> None:
        # Imported here: the parent imports this module too, and does not need GL.
        from openrr.render.renderer import Renderer

        self._sock = sock
        self._frames = frames
        self._messages = _Messages(sock)
        self.renderer = Renderer(width, height)
        self._state = FrameState(0, False, 30.0)
        self._dirty = False
        self._free = set(range(SLOTS))
        self._frame_no = 0
        self._last_start = 0.0

    def send(self, message: tuple[Any, ...]) -> None:
        self._sock.sendall(_frame(message))

    def run(self) -> None:
        self.send(("ready", self.renderer.gl_renderer))
        try:
            while True:
                wait: float | None = None
                due = self._last_start + 1.0 / self._state.max_fps
                if self._dirty and self._state.watched and self._free:
                    wait = max(0.0, due - time.perf_counter())
                for message in self._messages.receive(wait):
                    if not self._apply(message):
                        return
                due = self._last_start + 1.0 / self._state.max_fps
                if self._dirty and self._state.watched and self._free and time.perf_counter() >= due:
                    self._render()
        finally:
            self.renderer.release()

    def _apply(self, message: tuple[Any, ...]) -> bool:
        kind = message[0]
        if kind == "camera":
            self.renderer.set_camera(message[1])
        elif kind == "frame":
            state: FrameState = message[1]
            # Command ids only grow (0 says "no new command").
            self._state = dataclasses.replace(state, command_id=max(state.command_id, self._state.command_id))
            self._dirty = True
        elif kind == "release":
            self._free.add(message[1])
        elif kind == "new_controller":
            self._state = dataclasses.replace(self._state, command_id=0)  # its command ids start again
        elif kind == "call":
            _, seq, method, args, kwargs = message
            assert method in _CALLS, method
            try:
                if method == "resize" and not (args[0] <= MAX_WIDTH and args[1] <= MAX_HEIGHT):
                    raise ValueError(f"frame size must be at most {MAX_WIDTH}x{MAX_HEIGHT}, got {args[0]}x{args[1]}")
                getattr(self.renderer, method)(*args, **kwargs)
            except Exception as e:  # answered to the caller, who raises it
                self.send(("reply", seq, type(e).__name__, str(e.args[0]) if e.args else str(e)))
            else:
                self.send(("reply", seq, None, None))
        elif kind == "quit":
            return False
        return True

    def _render(self) -> None:
        state = self._state
        self._dirty = False
        slot = min(self._free)
        self._free.discard(slot)
        started = time.perf_counter()
        self._last_start = started
        r = self.renderer
        _, stats = r.render(into=_slot_view(self._frames, slot, r.width, r.height))
        self._frame_no += 1
        self.send(
            (
                "frame",
                RenderedFrame(
                    self._frame_no,
                    state.command_id,
                    started,
                    stats.render_ms,
                    stats.triangles_drawn,
                    slot,
                    r.width,
                    r.height,
                ),
            )
        )


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the render server dies, however it dies (kill -9 included)."""
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def main(argv: list[str]) -> int:
    fd, memfd, width, height, server_pid = (int(a) for a in argv[:5])
    # The server stops this process by closing the socket (or dies, see _die_with_parent); a SIGTERM to the
    # whole process group, the control plane's stop, must not pull the picture from under a graceful shutdown.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    # Below its server (and the control plane, and a local browser): rendering takes whatever CPU is left, while
    # the processes that move commands and frames get it the moment they need it. Measured in Chromium on 2
    # cores, WS+JPEG command -> picture p50 fell from 55.6 to 50.9 ms (three alternating runs each).
    os.nice(RENDER_NICE)
    if os.getppid() != server_pid:
        # The server died before the death signal was armed (compared with its pid, not with 1: in a container
        # the server itself is pid 1).
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sock = socket.socket(fileno=fd)
    frames = mmap.mmap(memfd, SLOTS * SLOT_BYTES)
    os.close(memfd)
    try:
        worker = _Worker(sock, frames, width, height)
    except Exception as e:
        logger.exception("GL failed to start")
        with contextlib.suppress(OSError):
            sock.sendall(_frame(("error", f"{type(e).__name__}: {e}")))
        return 1
    # EOF: the server closed the socket or went away; nothing is left to render for.
    with contextlib.suppress(EOFError, ConnectionError):
        worker.run()
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy's: pickled frames must name classes the server can
    # import (openrr.render.frame_process.RenderedFrame, not __main__.RenderedFrame).
    from openrr.render import frame_process

    sys.exit(frame_process.main(sys.argv[1:]))
