"""Cortex backends: the policies behind the ``backend`` parameter (ROS-free).

Each has ``name``, ``needs_image``, ``needs_joints`` (``needs_wrist_image`` where true),
``plan(Observation) -> Plan`` (raising
``PlanError`` with a clear message when it cannot plan), ``reset()`` (new instruction),
``diagnostics() -> dict`` and ``close()``.

* ``local``: neurovla's own pointer VLA (``model``), loaded with ``from_pretrained`` from a local
  directory; it names the object's centre, the cortex derives the goal above it.
* ``scripted``: keyword parsing + colour segmentation (``scripted``), the baseline.
* ``neurovla-server``: a NeuroVLA/starVLA policy server (``clients.NeuroVLAClient``): 16-step
  end-effector state history, actions unnormalised with the checkpoint's statistics file,
  overlapping chunks ensembled; the ensembled step is a pose delta from the current tcp pose
  (``translation_scale`` metres and ``rotation_scale`` radians per unit, LIBERO's OSC scale).
  Gripper: above 0.5 OPENS (NeuroVLA's checkpoints use 1 = open; its LIBERO interface
  binarises that way, at 0.5).
* ``openpi``: an openpi policy server, in one of openpi's published layouts
  (:class:`OpenpiBackend`: ``libero``, ``droid``; both need the wrist camera); its ``actions``
  chunk (already unnormalised by the server's output transforms: no statistics here) is
  end-effector deltas (``ee_delta``, ensembled like the above), joint velocities integrated
  into a joint trajectory (``joint_velocity``) or absolute joint positions
  (``joint_position``). Gripper: a high value CLOSES. ``libero``: above 0 (LIBERO's action
  convention, -1 open / +1 close, that openpi's LIBERO policies return; robosuite's Panda
  gripper, which LIBERO drives, moves by the action's sign); ``droid``: above 0.5 (DROID's
  gripper position, 1 = closed, binarised at 0.5 by openpi's DROID example client).

Chunks are aged by time (``action_dt`` per row) and the ensembler is cleared after any failed
call, so the first plans after an outage never blend predictions made before it.
"""
from __future__ import annotations

import os
import time

import numpy as np

from .. import robot
from ..robot.transforms import rotation_from_vector
from . import language
from .actions import ActionStats, ChunkEnsembler, StateHistory, eef_state
from .clients import ACTION_DIM, NeuroVLAClient, OpenpiClient, PolicyError
from .core import Observation, Plan, PlanError
from .params import BACKENDS  # noqa: F401  (re-exported)

CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'checkpoint')
GRIPPER_CONVENTIONS = ('backend', 'high_closes', 'high_opens')


class LocalBackend:
    """The local pointer VLA (transformers ViT + BERT + pointer head), CPU inference."""
    name = 'local'
    needs_image, needs_joints = True, False

    def __init__(self, checkpoint: str = '', threads: int = 1):
        import torch

        from .model import NeuroVLAModel
        torch.set_num_threads(threads)
        path = checkpoint or CHECKPOINT
        if not os.path.isfile(os.path.join(path, 'config.json')):
            raise FileNotFoundError(f'no checkpoint in {path!r} (run `neurovla train cortex`)')
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()   # a carriage-return bar is noise in a node's log
        self.model = NeuroVLAModel.from_pretrained(path).eval()
        self.model.freeze_for_inference()
        self.path = path

    def plan(self, obs: Observation) -> Plan:
        from .model import locate
        if language.parse(obs.instruction).empty:
            raise PlanError(f'the instruction {obs.instruction!r} names no colour or shape I know')
        image, camera = obs.image, obs.camera
        if image.shape[:2] != (240, 320):     # the model's crop is defined on 320x240 images
            import cv2
            image = cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA)
            camera = camera.scaled(320, 240)
        centre, conf = locate(self.model, [image], [obs.instruction], camera)
        return Plan(centre=centre[0], confidence=float(conf[0]))

    def diagnostics(self) -> dict:
        return {'checkpoint': self.path,
                'inference': 'torchscript' if self.model.frozen else 'eager'}


class ScriptedBackend:
    """Colour segmentation + keyword parsing (the baseline)."""
    name = 'scripted'
    needs_image, needs_joints = True, False

    def __init__(self):
        self._locator = None
        self._camera = None

    def plan(self, obs: Observation) -> Plan:
        from .scripted import ScriptedLocator
        query = language.parse(obs.instruction)
        if query.empty:
            raise PlanError(f'the instruction {obs.instruction!r} names no colour or shape I know')
        if self._locator is None or obs.camera is not self._camera:
            self._locator, self._camera = ScriptedLocator(obs.camera), obs.camera
        centre, conf, note = self._locator.locate(obs.image, query, obs.q)
        if centre is None:
            return Plan(confidence=0.0, note=note)
        return Plan(centre=centre, confidence=conf, note=note)


class _RemoteBase:
    needs_image = needs_joints = True
    HIGH_CLOSES = True     # the backend's gripper convention (module docstring: its source)
    GRIPPER_THRESHOLD = 0.5    # the gripper action's switching value (ditto)

    def __init__(self, translation_scale: float = 0.05, rotation_scale: float = 0.5,
                 ensemble_horizon: int = 3, ensemble_decay: float = 0.5, action_dt: float = 0.1,
                 gripper_opening: float | None = None, gripper_convention: str = 'backend',
                 clock=time.monotonic):
        if gripper_convention not in GRIPPER_CONVENTIONS:
            raise ValueError(f'gripper_convention {gripper_convention!r} not in '
                             f'{GRIPPER_CONVENTIONS}')
        self.translation_scale = translation_scale
        self.rotation_scale = rotation_scale
        self.action_dt = action_dt
        self.ensembler = ChunkEnsembler(ensemble_horizon, ensemble_decay, action_dt)
        self.history = StateHistory()
        self.gripper_opening = (robot.load().gripper_open if gripper_opening is None
                                else gripper_opening)
        self.gripper_high_closes = (self.HIGH_CLOSES if gripper_convention == 'backend'
                                    else gripper_convention == 'high_closes')
        self.gripper_threshold = self.GRIPPER_THRESHOLD
        self.clock = clock
        self.last_kind = ''

    def reset(self) -> None:
        self.ensembler.reset()

    def _delta_plan(self, action, obs: Observation) -> Plan:
        """An ensembled [dpos(3), drot(3), gripper] step -> tcp pose goal from the current pose."""
        a = np.asarray(action, float)
        pos = obs.tcp[:3, 3] + self.translation_scale * a[:3]
        rot = rotation_from_vector(self.rotation_scale * a[3:6]) @ obs.tcp[:3, :3]
        return Plan(position=pos, rotation=rot, gripper=self._gripper(a[6]))

    def _gripper(self, value: float) -> float:
        """The finger opening [m] for a gripper action (the backend's threshold and sign)."""
        closes = (value > self.gripper_threshold) == self.gripper_high_closes
        return 0.0 if closes else self.gripper_opening

    def _state(self, obs: Observation) -> np.ndarray:
        s = eef_state(obs.tcp, obs.fingers if obs.fingers is not None else (0.0, 0.0))
        self.history.push(s)
        return s

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except PolicyError as e:
            self.ensembler.reset()        # predictions made before a failure are stale
            if e.kind != 'backoff':       # the back-off keeps the cause as the last error
                self.last_kind = e.kind
            raise PlanError(f'policy server {e.kind}: {e.message}') from None

    def diagnostics(self) -> dict:
        c = self.client.conn   # self.client: set by the subclass
        kind, message, since = c.outage or ('', '', None)
        return {'server': c.uri, 'connected': c.connected, 'reconnects': c.reconnects,
                'consecutive_failures': c.failures, 'last_error_kind': self.last_kind,
                'outage_cause': f'{kind}: {message}' if kind else '',
                'outage_s': self.clock() - since if since is not None else 0.0,
                'gripper_high_closes': self.gripper_high_closes,
                'gripper_threshold': self.gripper_threshold}

    def close(self) -> None:
        self.client.close()


class NeuroVLABackend(_RemoteBase):
    """Client of a NeuroVLA / starVLA websocket policy server."""
    name = 'neurovla-server'
    HIGH_CLOSES = False

    def __init__(self, uri: str, stats: ActionStats, client_options: dict | None = None, **kw):
        super().__init__(**kw)
        self.stats = stats
        self.client = NeuroVLAClient(uri, clock=self.clock, **(client_options or {}))

    def plan(self, obs: Observation) -> Plan:
        self._state(obs)
        acts = self._call(self.client.infer, [[obs.image]], [obs.instruction],
                          self.history.array()[None])
        chunk = self.stats.unnormalize(acts[0])
        return self._delta_plan(self.ensembler.add(chunk, self.clock()), obs)


def resize_with_pad(image: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` uint8: scaled to fit (aspect kept), centred, padded with black (what
    openpi's clients do before sending an image)."""
    import cv2
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.zeros((size, size, 3), np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = cv2.resize(image, (nw, nh),
                                                   interpolation=cv2.INTER_AREA)
    return out


class OpenpiBackend(_RemoteBase):
    """Client of an openpi websocket policy server, in one of openpi's published layouts.

    ``LAYOUTS`` (openpi's ``LiberoInputs`` / ``DroidInputs`` and their example clients):

    * ``libero``: ``observation/image`` (scene camera) and ``observation/wrist_image``, both
      224x224x3 uint8 (resized with padding), ``observation/state`` (8: tcp position,
      axis-angle, two finger positions), ``prompt``; actions H x 7 end-effector deltas +
      gripper (above 0 closes: robosuite moves LIBERO's gripper by the action's sign).
    * ``droid``: ``observation/exterior_image_1_left`` and ``observation/wrist_image_left``
      (224x224x3 uint8), ``observation/joint_position`` (7: DROID's arm has 7 joints; this arm's
      6, then 0), ``observation/gripper_position`` (1: 0 open .. 1 closed), ``prompt``; actions
      H x 8: 7 joint velocities in DROID's normalised units (its controller,
      ``RobotIKSolver.joint_velocity_to_delta``, scales the 7 so that none exceeds 1 and moves
      each joint by 0.2 rad x v per 15 Hz step; the 7th is ignored here after the scaling) +
      gripper position (above 0.5 closes, the client's binarisation), one step per
      ``action_dt`` (DROID's rate: 1/15 s) into a joint trajectory.

    ``action_space`` ``layout`` takes the layout's meaning; ``ee_delta``, ``joint_position``
    (absolute joints, first 6, gripper at index 6) or ``joint_velocity`` override it.
    """
    name = 'openpi'
    needs_wrist_image = True
    LAYOUTS = {'libero': {'image': 'observation/image', 'wrist': 'observation/wrist_image',
                          'size': 224, 'actions': 'ee_delta', 'gripper_threshold': 0.0},
               'droid': {'image': 'observation/exterior_image_1_left',
                         'wrist': 'observation/wrist_image_left', 'size': 224,
                         'actions': 'joint_velocity', 'gripper_threshold': 0.5}}
    DROID_MAX_JOINT_DELTA = 0.2  # [rad] per step at v = 1 (DROID's RobotIKSolver, 15 Hz)
    ACTION_SPACES = ('layout', 'ee_delta', 'joint_position', 'joint_velocity')
    ACTION_DIMS = {'ee_delta': ACTION_DIM, 'joint_position': 6, 'joint_velocity': 8}

    def __init__(self, uri: str, layout: str = 'libero', action_space: str = 'layout',
                 client_options: dict | None = None, **kw):
        super().__init__(**kw)
        if layout not in self.LAYOUTS:
            raise ValueError(f'layout {layout!r} not in {tuple(self.LAYOUTS)}')
        if action_space not in self.ACTION_SPACES:
            raise ValueError(f'action_space {action_space!r} not in {self.ACTION_SPACES}')
        self.layout = layout
        self.gripper_threshold = self.LAYOUTS[layout]['gripper_threshold']
        self.action_space = (self.LAYOUTS[layout]['actions'] if action_space == 'layout'
                             else action_space)
        self.client = OpenpiClient(uri, action_dim=self.ACTION_DIMS[self.action_space],
                                   clock=self.clock, **(client_options or {}))

    def observation(self, obs: Observation) -> dict:
        """The observation map of this backend's layout."""
        lay = self.LAYOUTS[self.layout]
        state = self._state(obs)
        out = {lay['image']: resize_with_pad(obs.image, lay['size']),
               lay['wrist']: resize_with_pad(obs.wrist_image, lay['size'])}
        if self.layout == 'libero':
            out['observation/state'] = state
        else:
            closed = 1.0 - float(np.clip(np.mean(state[6:8]) / self.gripper_opening, 0.0, 1.0))
            out['observation/joint_position'] = np.r_[obs.q, 0.0]
            out['observation/gripper_position'] = np.array([closed])
        out['prompt'] = obs.instruction
        return out

    def plan(self, obs: Observation) -> Plan:
        reply = self._call(self.client.infer, self.observation(obs))
        acts = reply['actions']
        if self.action_space == 'joint_position':
            traj = [((k + 1) * self.action_dt, a[:6]) for k, a in enumerate(acts)]
            grip = self._gripper(acts[0, 6]) if acts.shape[1] > 6 else None
            return Plan(trajectory=traj, gripper=grip)
        if self.action_space == 'joint_velocity':
            v = acts[:, :7] / np.maximum(1.0, np.abs(acts[:, :7]).max(axis=1, keepdims=True))
            q = np.asarray(obs.q, float) + np.cumsum(v[:, :6] * self.DROID_MAX_JOINT_DELTA,
                                                     axis=0)
            traj = [((k + 1) * self.action_dt, qk) for k, qk in enumerate(q)]
            return Plan(trajectory=traj, gripper=self._gripper(acts[0, 7]))
        return self._delta_plan(self.ensembler.add(acts[:, :ACTION_DIM], self.clock()), obs)


def make(name: str, *, checkpoint: str = '', server_uri: str = '', statistics_file: str = '',
         statistics_key: str = '', openpi_layout: str = 'libero',
         openpi_action_space: str = 'layout',
         action_dt: float = 0.1, connect_timeout: float = 2.0, reply_timeout: float = 1.0,
         backoff_initial: float = 0.25, backoff_max: float = 1.0,
         max_reply_bytes: int = 16_000_000, max_array_elements: int = 1_000_000,
         translation_scale: float = 0.05, rotation_scale: float = 0.5,
         ensemble_horizon: int = 3,
         gripper_opening: float | None = None, gripper_convention: str = 'backend',
         threads: int = 1):
    """The backend called ``name`` (one of ``BACKENDS``)."""
    if name == 'local':
        return LocalBackend(checkpoint, threads)
    if name == 'scripted':
        return ScriptedBackend()
    if name in ('neurovla-server', 'openpi'):
        if not server_uri:
            raise ValueError(f'backend {name} needs server_uri (ws://host:port)')
        kw = dict(client_options=dict(connect_timeout=connect_timeout,
                                      reply_timeout=reply_timeout,
                                      backoff_initial=backoff_initial, backoff_max=backoff_max,
                                      max_reply_bytes=max_reply_bytes,
                                      max_array_elements=max_array_elements),
                  translation_scale=translation_scale, rotation_scale=rotation_scale,
                  ensemble_horizon=ensemble_horizon, action_dt=action_dt,
                  gripper_opening=gripper_opening, gripper_convention=gripper_convention)
        if name == 'openpi':
            if statistics_file:
                raise ValueError('statistics_file is for servers that return normalised actions '
                                 '(neurovla-server): an openpi server unnormalises its actions '
                                 'itself (its policy applies the output transforms), so a '
                                 'statistics file would scale them twice')
            return OpenpiBackend(server_uri, layout=openpi_layout,
                                 action_space=openpi_action_space, **kw)
        stats = (ActionStats.from_file(statistics_file, statistics_key) if statistics_file
                 else ActionStats.identity())
        return NeuroVLABackend(server_uri, stats, **kw)
    raise ValueError(f'unknown backend {name!r}; one of {BACKENDS}')
