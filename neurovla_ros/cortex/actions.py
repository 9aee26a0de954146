"""Action post-processing for remote policies: unnormalisation, chunk ensembling, state history.

ROS-free. A NeuroVLA/starVLA server answers with actions normalised to [-1, 1]; each dimension is
mapped back with the checkpoint's dataset statistics, ``a = 0.5 (a + 1)(q99 - q01) + q01``
(dimensions whose ``mask`` is false, usually the gripper, are passed through). Consecutive replies
predict overlapping chunks of future steps; :class:`ChunkEnsembler` averages every prediction for
the current step, newer chunks weighted more, as the reference client does.
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
        """Read a statistics JSON: ``{action: {q01, q99, mask?}}``, ``{dataset: {action: ...}}``
        (``key`` picks the dataset; default the only one) or openpi's ``{norm_stats: {actions:
        ...}}``."""
        with open(path, encoding='utf-8') as f:
            doc = json.load(f)
        return cls.from_dict(doc, key, source=path)

    @classmethod
    def from_dict(cls, doc: dict, key: str = '', source: str = 'statistics') -> 'ActionStats':
        if 'norm_stats' in doc:
            doc = doc['norm_stats']
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
    """Temporal ensembling of overlapping action chunks.

    ``add(chunk)`` registers the chunk predicted at the current step (row 0 = this step) and
    advances the step; the returned action averages row ``age`` of each of the last ``horizon``
    chunks still covering this step, with weights ``exp(-decay * age)`` (``decay`` > 0 favours
    the newest prediction).
    """

    def __init__(self, horizon: int = 3, decay: float = 0.5):
        self.chunks: deque = deque(maxlen=max(1, horizon))
        self.decay = decay

    def reset(self) -> None:
        self.chunks.clear()

    def add(self, chunk) -> np.ndarray:
        chunk = np.asarray(chunk, float)
        self.chunks.append([chunk, 0])
        preds, weights = [], []
        for entry in self.chunks:
            c, age = entry
            if age < len(c):
                preds.append(c[age])
                weights.append(np.exp(-self.decay * age))
        for entry in self.chunks:
            entry[1] += 1
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

