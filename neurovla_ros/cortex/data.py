"""Demonstrations for the local VLA, generated in the MuJoCo scene (ROS-free).

A scene = the scene-camera image of the table with 2-5 objects (random colours, shapes,
positions) and the arm at a pose it takes while working: at home, hovering over an object at
some height (the gripper partly hides objects, as it does while the cortex re-plans during the
approach) or anywhere above the table. The scripted expert's target for "go to object i" is the
object's centre: its pixel in the image (label for the pointer head) and its height. Instructions
are drawn at training time from the phrasing templates (``language``), so every epoch sees new
phrasings of the same scenes.

Held out of training entirely: the colour-shape combinations in ``HELDOUT_COMBOS`` (no object in a
training scene has one), the phrasings in ``language.HELDOUT_*`` and the world seeds from
``HELDOUT_SEED0`` on (new positions and sizes).

Colours are re-painted per scene (``model.geom_rgba``) so that colour and shape vary
independently of the world's draw, and in ``SAME_COLOUR_P`` of the scenes two objects share a
colour (then only the shape tells them apart; the instruction has to name it).
"""
from __future__ import annotations

import os

import numpy as np

from .. import robot
from . import language
from .camera import Camera

HELDOUT_COMBOS = frozenset({('red', 'ball'), ('green', 'cylinder'), ('purple', 'cube'),
                            ('orange', 'ball'), ('white', 'cylinder')})
CROP = (80, 40, 120, 240)     # top, left, height, width of the 320x240 image the model sees
TRAIN_SEED0 = 1000            # world seeds of training scenes
HELDOUT_SEED0 = 1_000_000     # world seeds of held-out scenes
SAME_COLOUR_P = 0.3
# colours no instruction names (label 'other'): objects painted so are never targets, but they
# show every shape in many colours, so the encoder learns shapes apart from colours
UNNAMED = 'other'
UNNAMED_RGB = ((1.0, 0.65, 0.75), (0.42, 0.25, 0.12), (0.5, 0.5, 0.5), (0.45, 0.45, 0.08),
               (0.1, 0.1, 0.1))     # pink, brown, grey, olive, black
UNNAMED_P = 0.5           # share of training scenes with one or two unnamed-colour objects
MAX_OBJECTS = 5


def arm_pose(model, objects, rng, q_home, lower, upper) -> np.ndarray:
    """A working pose: home (35 %), over an object (45 %) or anywhere above the table (20 %)."""
    from ..robot import ik
    r = rng.random()
    if r < 0.35:
        return q_home
    home = model.fk(q_home)
    target = home.copy()
    if r < 0.8:
        o = objects[int(rng.integers(len(objects)))]
        p = np.asarray(o['position'], float)
        top = p[2] + o['size'][2] / 2
        target[:3, 3] = [p[0] + rng.normal(0, 0.02), p[1] + rng.normal(0, 0.02),
                         top + rng.uniform(0.005, 0.15)]
    else:
        target[:3, 3] = [rng.uniform(0.3, 0.7), rng.uniform(-0.3, 0.3), rng.uniform(0.06, 0.3)]
    res = ik.solve(model, target, q_home, lower, upper, position_tolerance=5e-3,
                   rotation_tolerance=0.05)
    return res.q if res.ok else q_home


def _paint(world, rng, heldout: bool):
    """Colour names and RGB for the world's objects: distinct, or (SAME_COLOUR_P) one shared by
    two objects of different shapes; training scenes avoid the held-out combinations and in
    UNNAMED_P of them one or two objects get a colour no instruction names."""
    from ..sim.world import PALETTE
    rgb = dict(PALETTE)
    names = list(rgb)
    shapes = [o['shape'] for o in world.objects()]
    for _ in range(100):
        cols = list(rng.choice(names, size=len(shapes), replace=False))
        if len(shapes) > 1 and rng.random() < SAME_COLOUR_P:
            i, j = rng.choice(len(shapes), size=2, replace=False)
            if shapes[i] != shapes[j]:
                cols[j] = cols[i]
        colours = [rgb[c] for c in cols]
        if not heldout and len(shapes) > 1 and rng.random() < UNNAMED_P:
            for k in rng.choice(len(shapes), size=min(int(rng.integers(1, 3)), len(shapes) - 1),
                                replace=False):
                cols[k] = UNNAMED
                colours[k] = tuple(np.clip(np.asarray(UNNAMED_RGB[rng.integers(
                    len(UNNAMED_RGB))]) * rng.uniform(0.85, 1.15), 0, 1))
        named = [(c, s) for c, s in zip(cols, shapes) if c != UNNAMED]
        if len(set(named)) == len(named) and (heldout or not set(named) & HELDOUT_COMBOS):
            return cols, colours
    return None


def generate(n_scenes: int, heldout: bool = False, seed: int = 0, scenes_per_world: int = 120,
             repaint: bool = True, progress=None) -> dict:
    """Render ``n_scenes`` scenes; arrays: images (N, crop h, crop w, 3) uint8, count (N),
    colour/shape (N, MAX_OBJECTS) str, position and size (N, MAX_OBJECTS, 3) [m],
    uv (N, MAX_OBJECTS, 2) [px of the 320x240 image], arm joints q (N, 6); plus the camera
    intrinsics ``k``."""
    from ..sim.world import PALETTE, World
    rgb = dict(PALETTE)
    rng = np.random.default_rng(seed + (7 if heldout else 0))
    model = robot.load()
    lim = model.limits()
    q_home = model.home_pose()
    top, left, ch, cw = CROP
    out = {'images': np.zeros((n_scenes, ch, cw, 3), np.uint8),
           'count': np.zeros(n_scenes, np.int64),
           'colour': np.full((n_scenes, MAX_OBJECTS), '', dtype='<U8'),
           'shape': np.full((n_scenes, MAX_OBJECTS), '', dtype='<U8'),
           'position': np.zeros((n_scenes, MAX_OBJECTS, 3)),
           'size': np.zeros((n_scenes, MAX_OBJECTS, 3)),
           'uv': np.zeros((n_scenes, MAX_OBJECTS, 2)),
           'q': np.zeros((n_scenes, 6))}
    seed0 = (HELDOUT_SEED0 if heldout else TRAIN_SEED0) + seed * 10_000
    i, w_index = 0, 0
    cam = None
    while i < n_scenes:
        world = World(seed=seed0 + w_index, n_objects=int(rng.integers(2, MAX_OBJECTS + 1)),
                      cameras=True)
        w_index += 1
        if cam is None:
            info = world.camera_info('scene_camera')
            cam = Camera.from_info(info['k'], info['width'], info['height'], model=model)
            out['k'] = np.asarray(info['k'])
        geoms = [world.model.geom(o['name']).id for o in world.objects()]
        original = world.model.geom_rgba[geoms].copy()
        for _ in range(min(scenes_per_world, n_scenes - i)):
            painted = _paint(world, rng, heldout) if repaint else \
                ([o['colour'] for o in world.objects()], [rgb[o['colour']]
                                                          for o in world.objects()])
            if painted is None:
                break
            cols, colours = painted
            for g, c in zip(geoms, colours):
                world.model.geom_rgba[g, :3] = c
            layout = int(rng.integers(2**31))
            world.reset(seed=layout)
            q = arm_pose(model, world.objects(), rng, q_home, lim['lower'], lim['upper'])
            world.reset(q=q, seed=layout)
            objs = world.objects()
            img = world.render('scene_camera')
            n = len(objs)
            out['images'][i] = img[top:top + ch, left:left + cw]
            out['count'][i] = n
            out['colour'][i, :n] = cols
            out['shape'][i, :n] = [o['shape'] for o in objs]
            out['position'][i, :n] = [o['position'] for o in objs]
            out['size'][i, :n] = [o['size'] for o in objs]
            out['uv'][i, :n] = cam.project([o['position'] for o in objs])
            out['q'][i] = q
            i += 1
            if progress is not None:
                progress.update(1)
        world.model.geom_rgba[geoms] = original
        world.close()
    return out


def cached(path: str, n_scenes: int, heldout: bool = False, seed: int = 0,
           progress=None) -> dict:
    """``generate`` once, then load from ``path`` (an .npz under the git-ignored data/)."""
    if os.path.isfile(path):
        with np.load(path) as z:
            data = {k: z[k] for k in z.files}
        if len(data['count']) >= n_scenes:
            return {k: (v[:n_scenes] if k != 'k' else v) for k, v in data.items()}
    data = generate(n_scenes, heldout=heldout, seed=seed, progress=progress)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp.npz'
    np.savez_compressed(tmp, **data)
    os.replace(tmp, path)
    return data


def scene_objects(data: dict, i: int) -> list[dict]:
    """The objects of scene ``i`` as dicts (colour, shape, position, size)."""
    n = int(data['count'][i])
    return [{'colour': str(data['colour'][i, j]), 'shape': str(data['shape'][i, j]),
             'position': data['position'][i, j], 'size': data['size'][i, j]} for j in range(n)]


def instruction_for(data: dict, i: int, rng, heldout: bool = False,
                    target: int | None = None, hard: float = 0.0,
                    shape_weight: float = 1.0) -> tuple[int, str]:
    """A target object of scene ``i`` and an instruction naming it.

    Held-out scenes prefer targets with a held-out colour-shape combination. ``hard``: the
    probability of picking, when there is one, a target that shares its colour with another
    object (only its shape tells it apart).
    """
    objs = scene_objects(data, i)
    if target is None:
        pool = [j for j, o in enumerate(objs) if o['colour'] != UNNAMED]
        if heldout:
            special = [j for j in pool if (objs[j]['colour'], objs[j]['shape']) in HELDOUT_COMBOS]
            pool = special or pool
        elif hard > 0 and rng.random() < hard:
            shared = [j for j in pool
                      if sum(o['colour'] == objs[j]['colour'] for o in objs) > 1]
            pool = shared or pool
        target = int(rng.choice(pool))
    return target, language.describe(target, objs, rng, heldout=heldout,
                                     shape_weight=shape_weight)
