"""Action post-processing for remote policies: unnormalisation, chunk ensembling, state history.

ROS-free. A NeuroVLA/starVLA server answers with actions normalised to [-1, 1]; each dimension is
mapped back with the checkpoint's dataset statistics, ``a = 0.5 (a + 1)(q99 - q01) + q01``
(dimensions whose ``mask`` is false, usually the gripper, are passed through). Consecutive replies
predict overlapping chunks of future steps; :class:`ChunkEnsembler` averages every prediction for
the current step, newer chunks weighted more, as the reference client does. Statistics apply only
where a server returns normalised actions (NeuroVLA): openpi's servers unnormalise in their own
output transforms, so its ``norm_stats.json`` is refused here.
"""
from __future__ import annotations

import json
from collections import deque

import numpy as np

from ..robot.transforms import rotation_vector
from .clients import STATE_DIM, STATE_HISTORY


class ActionStats:
    """Per-dimension q01 / q99 (and optional mask) of a checkpoint's action statistics."""

    def __init__(self, q01, q99, mask=None):
        self.q01 = np.asarray(q01, float)
        self.q99 = np.asarray(q99, float)
        if self.q01.shape != self.q99.shape or self.q01.ndim != 1:
            raise ValueError(f'q01 {self.q01.shape} and q99 {self.q99.shape} must be equal 1-D')
        if not (np.all(np.isfinite(self.q01)) and np.all(np.isfinite(self.q99))):
            raise ValueError('statistics contain NaN or inf')
        self.mask = (np.ones(self.q01.shape, bool) if mask is None
                     else np.asarray(mask, bool).reshape(self.q01.shape))

    @classmethod
    def identity(cls, dim: int = 7) -> 'ActionStats':
        """Statistics that leave [-1, 1] actions unchanged."""
        return cls(-np.ones(dim), np.ones(dim))

    @classmethod
    def from_file(cls, path: str, key: str = '') -> 'ActionStats':
        """Read a statistics JSON: ``{action: {q01, q99, mask?}}`` or ``{dataset: {action: ...}}``
        (``key`` picks the dataset; default the only one)."""
        with open(path, encoding='utf-8') as f:
            doc = json.load(f)
        return cls.from_dict(doc, key, source=path)

    @classmethod
    def from_dict(cls, doc: dict, key: str = '', source: str = 'statistics') -> 'ActionStats':
        if 'norm_stats' in doc:
            raise ValueError(f'{source} is an openpi norm_stats file: an openpi server returns '
                             f'actions it has already unnormalised (its policy applies the '
                             f'output transforms), so applying these again would scale them '
                             f'twice; statistics are for servers that return normalised '
                             f'actions (neurovla-server)')
        for name in ('action', 'actions'):
            if isinstance(doc.get(name), dict):
                s = doc[name]
                return cls(s['q01'], s['q99'], s.get('mask'))
        names = [k for k, v in doc.items() if isinstance(v, dict)]
        if key:
            if key not in doc:
                raise ValueError(f'{source}: no dataset {key!r} (have {names})')
            return cls.from_dict(doc[key], source=source)
        if len(names) != 1:
            raise ValueError(f'{source}: choose one dataset of {names}')
        return cls.from_dict(doc[names[0]], source=source)

    def unnormalize(self, actions) -> np.ndarray:
        a = np.asarray(actions, float)
        if a.shape[-1] != self.q01.shape[0]:
            raise ValueError(f'actions have {a.shape[-1]} dimensions, statistics '
                             f'{self.q01.shape[0]}')
        out = 0.5 * (np.clip(a, -1.0, 1.0) + 1.0) * (self.q99 - self.q01) + self.q01
        return np.where(self.mask, out, a)


class ChunkEnsembler:
    """Temporal ensembling of overlapping action chunks, aged by time.

    ``add(chunk, t)`` registers the chunk predicted at time ``t`` [s] (row ``k`` is the action
    for ``t + k * step_s``); the returned action averages, over the last ``horizon`` chunks,
    the row each one predicted for ``t`` (its age ``round((t - t_chunk) / step_s)``), weighted
    ``exp(-decay * age)`` (``decay`` > 0 favours the newest). A chunk whose rows end before ``t``
    is dropped: after a pause (an outage) old predictions never blend into new ones.
    """

    def __init__(self, horizon: int = 3, decay: float = 0.5, step_s: float = 0.1):
        if step_s <= 0:
            raise ValueError(f'step_s must be > 0, got {step_s}')
        self.chunks: deque = deque(maxlen=max(1, horizon))
        self.decay, self.step_s = decay, step_s

    def reset(self) -> None:
        self.chunks.clear()

    def add(self, chunk, t: float) -> np.ndarray:
        chunk = np.asarray(chunk, float)
        self.chunks.append((chunk, t))
        preds, weights, live = [], [], []
        for c, t0 in self.chunks:
            age = int(round((t - t0) / self.step_s))
            if 0 <= age < len(c):
                preds.append(c[age])
                weights.append(np.exp(-self.decay * age))
                live.append((c, t0))
        self.chunks = deque(live, maxlen=self.chunks.maxlen)
        w = np.asarray(weights)
        return (np.asarray(preds) * w[:, None]).sum(0) / w.sum()


class StateHistory:
    """The last 16 proprioceptive states (oldest first), padded with the first one."""

    def __init__(self, length: int = STATE_HISTORY, dim: int = STATE_DIM):
        self.buf: deque = deque(maxlen=length)
        self.length, self.dim = length, dim

    def push(self, state) -> None:
        s = np.asarray(state, np.float32)
        if s.shape != (self.dim,):
            raise ValueError(f'state must have {self.dim} values, got {s.shape}')
        self.buf.append(s)

    def array(self) -> np.ndarray:
        if not self.buf:
            return np.zeros((self.length, self.dim), np.float32)
        items = list(self.buf)
        pad = [items[0]] * (self.length - len(items))
        return np.stack(pad + items).astype(np.float32)


def eef_state(tcp_pose: np.ndarray, fingers) -> np.ndarray:
    """The 8-value state of the server protocol: position, axis-angle, two finger positions."""
    return np.concatenate([tcp_pose[:3, 3], rotation_vector(tcp_pose[:3, :3]),
                           np.asarray(fingers, float)[:2]]).astype(np.float32)

