"""Rendering away from the 1 kHz loop: the physics process shares its state, a worker renders.

ROS-free. The physics process owns a :class:`StateShare` (shared memory, created before the
worker starts) and, at the camera rate, writes the joint/object positions with the stamp they
belong to, then wakes the worker through a pipe. The worker (its own process, so neither the GIL
nor OpenGL touch the physics loop) keeps a copy of the same :class:`~.world.World` (same seed,
so the same objects), reads the newest state, renders and hands the image on. If rendering is
slower than the rate, frames are dropped, never queued.
"""
from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np

SPAWN = mp.get_context('spawn')  # a clean interpreter: no inherited DDS / GL state


class StateShare:
    """Seqlock-protected ``qpos`` + stamp in shared memory (one writer, one reader)."""

    def __init__(self, nq: int):
        self._hdr_raw = SPAWN.RawArray('q', 2)   # sequence (odd while writing), stamp [ns]
        self._q_raw = SPAWN.RawArray('d', nq)
        self._views()

    def _views(self):
        self._hdr = np.frombuffer(self._hdr_raw, dtype=np.int64)
        self._q = np.frombuffer(self._q_raw, dtype=np.float64)

    def __getstate__(self):
        return {'_hdr_raw': self._hdr_raw, '_q_raw': self._q_raw}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._views()

    def write(self, qpos, stamp_ns: int) -> None:
        hdr = self._hdr
        hdr[0] += 1
        self._q[:] = qpos
        hdr[1] = stamp_ns
        hdr[0] += 1

    @property
    def sequence(self) -> int:
        return int(self._hdr[0])

    def read(self, out: np.ndarray) -> tuple[int, int]:
        """Copy the newest consistent state into ``out``; return (sequence, stamp_ns)."""
        hdr = self._hdr
        while True:
            s1 = int(hdr[0])
            if s1 & 1:
                continue
            out[:] = self._q
            stamp = int(hdr[1])
            if int(hdr[0]) == s1:
                return s1, stamp


def render_loop(world, share: StateShare, conn, cameras: list[str], publish,
                alive=lambda: True, poll_s: float = 0.5) -> int:
    """Worker body: wait for a wake-up, render the newest state from each of ``cameras``,
    ``publish(camera, image, stamp_ns)``.

    Returns the number of frames when the pipe closes (the physics process ended) or
    ``alive()`` turns false.
    """
    import mujoco
    q = np.zeros(world.model.nq)
    last = -1
    frames = 0
    parent = os.getppid()
    while alive() and os.getppid() == parent:
        try:
            if not conn.poll(poll_s):
                continue
            while conn.poll(0):  # drain: only the newest state matters
                conn.recv_bytes()
        except (EOFError, OSError):
            break
        seq, stamp = share.read(q)
        if seq == last:
            continue
        last = seq
        world.data.qpos[:] = q
        mujoco.mj_forward(world.model, world.data)
        for camera in cameras:
            publish(camera, world.render(camera), stamp)
        frames += 1
    return frames
