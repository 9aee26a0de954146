"""Scalar state kept in one float64 array per object, so that the C tick shares it. ROS-free.

The cerebellum's per-tick arithmetic exists twice: the numpy reference (the readable code in
:mod:`.shaping`, :mod:`.estimator`, :mod:`.forward_model`, :mod:`.adaptive`, :mod:`.core`)
and its C twin (``_tick.c``), which works on the same arrays. Arrays are shared as they are;
the scalars (times, counters, flags, modes) of an object live in its ``_s`` array, one slot
each, named by the class's ``SLOTS``. A slot reads and writes like a plain attribute:

    class Filter(Shared):
        SLOTS = ('t', 'active:bool', 'resets:int')

``Shared.__init__`` allocates ``_s``; ``obj.t = 1.5`` writes ``obj._s[0]``. The C code has
the same names in the same order and refuses to bind arrays whose layout differs
(:func:`layout`).
"""
from __future__ import annotations

import numpy as np

KINDS = {'float': float, 'bool': bool, 'int': int}


def _slot(i: int, kind):
    def get(self):
        return kind(self._s[i])

    def put(self, value):
        self._s[i] = value
    return property(get, put)


class Shared:
    """Base class: the names in ``SLOTS`` (``name`` or ``name:kind``, kind float, bool or
    int) become attributes stored in ``self._s``."""

    SLOTS: tuple[str, ...] = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for i, spec in enumerate(cls.SLOTS):
            name, _, kind = spec.partition(':')
            setattr(cls, name, _slot(i, KINDS[kind or 'float']))

    def __init__(self):
        self._s = np.zeros(len(self.SLOTS))


def layout(cls) -> tuple[str, ...]:
    """The slot names of a :class:`Shared` class, in order (what the C code must agree on)."""
    return tuple(s.partition(':')[0] for s in cls.SLOTS)
