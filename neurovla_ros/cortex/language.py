"""Instructions: the words the cortex understands, phrasing templates and a keyword parser.

ROS-free. Objects are named by colour and shape (canonical names as the simulator uses them,
e.g. ``red`` / ``cube``); people use synonyms ("block", "sphere") and many phrasings. Templates are
split in two disjoint sets: ``TRAIN_TEMPLATES`` (used to make training data) and
``HELDOUT_TEMPLATES`` (only in evaluation), so the benchmark measures phrasings never seen.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

COLOUR_WORDS = {
    'red': ('red',), 'green': ('green',), 'blue': ('blue',), 'yellow': ('yellow',),
    'orange': ('orange',), 'purple': ('purple', 'violet'), 'cyan': ('cyan', 'turquoise'),
    'white': ('white',),
}
SHAPE_WORDS = {'cube': ('cube', 'block', 'box'), 'ball': ('ball', 'sphere'),
               'cylinder': ('cylinder', 'tube')}
_COLOUR_OF = {w: c for c, ws in COLOUR_WORDS.items() for w in ws}
_SHAPE_OF = {w: s for s, ws in SHAPE_WORDS.items() for w in ws}
_WORD = re.compile(r"[a-z]+")

# {obj} is a referring expression such as "red cube", "ball that is blue", "green one".
TRAIN_TEMPLATES = (
    'touch the {obj}', 'go to the {obj}', 'move above the {obj}', 'move to the {obj}',
    'reach the {obj}', 'reach for the {obj}', 'point at the {obj}', 'hover over the {obj}',
    'go above the {obj}', 'put the gripper on the {obj}', 'tap the {obj}', 'find the {obj}',
    'approach the {obj}', 'please touch the {obj}', 'go touch the {obj}', 'the {obj}',
    'can you reach the {obj}?', 'move the arm to the {obj}', 'touch the {obj} please',
    'place the gripper over the {obj}', 'go over to the {obj}', 'reach towards the {obj}',
)
HELDOUT_TEMPLATES = (
    'bring the gripper to the {obj}', 'head for the {obj}', 'could you go to the {obj}',
    'position the tool above the {obj}', 'get close to the {obj}', 'now touch the {obj}',
    'move your hand over the {obj}', 'I want you to reach the {obj}',
)
# referring expressions: (pattern, needs) where needs says which attributes must be unique
TRAIN_REFERENCES = (
    ('{colour} {shape}', ''), ('{shape} that is {colour}', ''), ('{colour} {shape}', ''),
    ('{colour} one', 'colour'), ('{colour} object', 'colour'), ('{shape}', 'shape'),
)
HELDOUT_REFERENCES = (
    ('{colour} {shape}', ''), ('{colour} coloured {shape}', ''), ('{colour} thing', 'colour'),
    ('{shape}', 'shape'),
)


@dataclass(frozen=True)
class Query:
    """What an instruction names: a colour and/or a shape (canonical names), or neither."""
    colour: str | None
    shape: str | None

    @property
    def empty(self) -> bool:
        return self.colour is None and self.shape is None

    def matches(self, colour: str, shape: str) -> bool:
        return ((self.colour is None or self.colour == colour)
                and (self.shape is None or self.shape == shape))


def words(text: str) -> list[str]:
    return _WORD.findall(str(text).lower())


def parse(text: str) -> Query:
    """The first colour word and the first shape word of ``text`` (synonyms mapped)."""
    colour = shape = None
    for w in words(text):
        if colour is None and w in _COLOUR_OF:
            colour = _COLOUR_OF[w]
        if shape is None and w in _SHAPE_OF:
            shape = _SHAPE_OF[w]
    return Query(colour, shape)


def resolve(query: Query, objects) -> list[int]:
    """Indices of ``objects`` (dicts with colour, shape) that fit the query."""
    if query.empty:
        return []
    return [i for i, o in enumerate(objects) if query.matches(o['colour'], o['shape'])]


def describe(target: int, objects, rng: np.random.Generator, heldout: bool = False,
             shape_weight: float = 1.0) -> str:
    """An instruction that names ``objects[target]`` unambiguously among ``objects``.

    ``shape_weight``: relative weight of shape-only references ("the ball") among the valid
    ones (training raises it: a colour word alone usually suffices, so shapes are learnt only
    from instructions that need them).
    """
    obj = objects[target]
    others = [o for i, o in enumerate(objects) if i != target]
    unique = {'': True,
              'colour': all(o['colour'] != obj['colour'] for o in others),
              'shape': all(o['shape'] != obj['shape'] for o in others)}
    valid = [(p, need) for p, need in (HELDOUT_REFERENCES if heldout else TRAIN_REFERENCES)
             if unique[need]]
    refs = [p for p, _ in valid]
    w = np.array([shape_weight if need == 'shape' else 1.0 for _, need in valid])
    templates = HELDOUT_TEMPLATES if heldout else TRAIN_TEMPLATES
    colours = COLOUR_WORDS.get(obj['colour'], (obj['colour'],))
    shapes = SHAPE_WORDS.get(obj['shape'], (obj['shape'],))
    u = rng.random(4)
    ref = refs[min(int(np.searchsorted(np.cumsum(w) / w.sum(), u[0], side='right')),
                   len(refs) - 1)]
    ref = ref.format(colour=colours[int(u[1] * len(colours))],
                     shape=shapes[int(u[2] * len(shapes))])
    return templates[int(u[3] * len(templates))].format(obj=ref)


def ambiguous(objects) -> bool:
    """True if two objects share both colour and shape (no instruction can tell them apart)."""
    seen = {(o['colour'], o['shape']) for o in objects}
    return len(seen) != len(objects)
