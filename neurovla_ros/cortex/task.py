"""Did the arm do what the instruction said? (ROS-free; the bringup summary and the benchmark.)

Success, as in the issue: the tcp within ``SUCCESS_RADIUS`` of the named object's top centre and
still (moved less than ``STILL_MOTION``) for ``STILL_TIME``. The named object is found from the
instruction's colour and shape words (``language.parse`` / ``resolve``) among the scene's objects.
"""
from __future__ import annotations

import numpy as np

from . import language

SUCCESS_RADIUS = 0.03     # [m]
STILL_TIME = 0.5          # [s]
STILL_MOTION = 0.005      # [m] tcp motion allowed while "still"


def top_centre(obj: dict) -> np.ndarray:
    """Top centre of an object dict with ``position`` (centre) and ``size`` (full extents)."""
    return np.asarray(obj['position'], float) + np.array([0.0, 0.0, float(obj['size'][2]) / 2])


def outcome(instruction: str, objects: list[dict], track: list) -> dict:
    """The task result from the scene and the last tcp samples.

    ``objects``: dicts with ``colour``, ``shape``, ``position``, ``size``; ``track``: ``(t [s],
    tcp xyz)`` samples, oldest first, covering at least the last ``STILL_TIME``. Returns a dict
    with ``named`` (``"colour shape"`` or None), ``distance_m``, ``still``, ``success`` and,
    when it cannot be judged, ``reason``.
    """
    out = {'instruction': instruction, 'named': None, 'distance_m': None, 'still': None,
           'success': False}
    idx = language.resolve(language.parse(instruction), objects)
    if not idx:
        return {**out, 'reason': 'the instruction names no object in the scene'}
    if not track:
        return {**out, 'reason': 'no tcp sample (no /joint_states)'}
    t_end, tcp = track[-1][0], np.asarray(track[-1][1], float)
    dists = [float(np.linalg.norm(tcp - top_centre(objects[i]))) for i in idx]
    j = idx[int(np.argmin(dists))]
    window = [np.asarray(p, float) for t, p in track if t >= t_end - STILL_TIME]
    covered = t_end - track[0][0] >= 0.9 * STILL_TIME
    still = bool(covered and max(np.linalg.norm(p - tcp) for p in window) < STILL_MOTION)
    out.update(named=f'{objects[j]["colour"]} {objects[j]["shape"]}', distance_m=min(dists),
               still=still, success=bool(min(dists) <= SUCCESS_RADIUS and still))
    if len(idx) > 1:
        out['reason'] = f'ambiguous: {len(idx)} objects fit; the nearest is taken'
    return out


def describe(result: dict) -> str:
    """One summary line."""
    head = f'task {result["instruction"]!r}'
    if result['named'] is None:
        return f'{head}: not judged ({result.get("reason", "?")}); success: no'
    note = f' ({result["reason"]})' if result.get('reason') else ''
    return (f'{head} names the {result["named"]}{note}: tcp {result["distance_m"] * 100:.1f} cm '
            f'from its top centre, still: {"yes" if result["still"] else "no"} -> success: '
            f'{"yes" if result["success"] else "no"} (within {SUCCESS_RADIUS * 100:.0f} cm and '
            f'still for {STILL_TIME:g} s)')
