"""A lossy, delaying link for messages (ROS-free): the core of the ``relay`` node.

Where the kernel has a ``netem`` qdisc, loss and delay between two hosts are injected with
``tc qdisc ... netem loss 10% delay 50ms``; this machine's kernel has none, so the relay node
sits between the cortex and the cerebellum and applies this line to every message it carries.

:class:`LossDelayLine` drops each pushed item with probability ``loss`` (one draw of a seeded
numpy Generator per item, so a run is repeatable) and releases the others ``delay_s`` after they
were pushed, first in, first out. Changing ``delay_s`` acts on the items pushed afterwards;
the line never reorders, so after a shortened delay new items wait behind the older ones (a
link's queue, as netem's without its reorder option).
"""
from __future__ import annotations

import math
import numbers
from collections import deque

import numpy as np

MAX_DELAY_S = 5.0


def _check(loss, delay_s) -> tuple[float, float]:
    for name, v in (('loss', loss), ('delay_s', delay_s)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f'{name}: expected a finite number, got {v!r}')
    if not 0.0 <= loss <= 1.0:
        raise ValueError(f'loss: {loss!r} is not a probability in [0, 1]')
    if not 0.0 <= delay_s <= MAX_DELAY_S:
        raise ValueError(f'delay_s: {delay_s!r} is not in [0, {MAX_DELAY_S}] s')
    return float(loss), float(delay_s)


class LossDelayLine:
    """Items in (``push(t, item)``), the surviving ones out ``delay_s`` later (``pop_due(t)``).

    ``t`` is any monotonic clock in seconds. Counters: ``received`` (pushed), ``dropped``,
    ``forwarded`` (returned by ``pop_due``); ``pending`` are on their way.
    """

    def __init__(self, loss: float = 0.0, delay_s: float = 0.0, seed: int = 0):
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f'seed: expected an integer >= 0, got {seed!r}')
        self.loss, self.delay_s = _check(loss, delay_s)
        self._rng = np.random.default_rng(int(seed))
        self._queue: deque = deque()          # (due time, item), due times non-decreasing
        self.received = self.dropped = self.forwarded = 0

    def configure(self, loss: float | None = None, delay_s: float | None = None) -> None:
        """New loss and/or delay (ValueError, and nothing changed, for an invalid one)."""
        self.loss, self.delay_s = _check(self.loss if loss is None else loss,
                                         self.delay_s if delay_s is None else delay_s)

    def push(self, t: float, item) -> bool:
        """Take ``item`` at time ``t``; False when it is dropped."""
        self.received += 1
        if self._rng.random() < self.loss:
            self.dropped += 1
            return False
        due = t + self.delay_s
        if self._queue and due < self._queue[-1][0]:
            due = self._queue[-1][0]          # never overtake an older item
        self._queue.append((due, item))
        return True

    def pop_due(self, t: float) -> list:
        """The items due at time ``t`` (pushed at least ``delay_s`` before), in order."""
        out = []
        q = self._queue
        while q and q[0][0] <= t:
            out.append(q.popleft()[1])
        self.forwarded += len(out)
        return out

    def next_due(self) -> float | None:
        """When the oldest pending item is due (None: nothing pending)."""
        return self._queue[0][0] if self._queue else None

    @property
    def pending(self) -> int:
        return len(self._queue)
