"""What the browser shows and what its controls do, on a viser server. ROS-free.

:class:`RobotView` builds the page: the arm from the URDF's shapes (each link placed by
:meth:`~neurovla_ros.robot.model.RobotModel.link_poses`), the sim's objects, the tool goal, a
transform gizmo at the tool, the camera image, jog buttons, commands, an instruction box, a
status line and the live plots (:class:`Plots`). It sends nothing itself: the controls call the
functions the node hands in (``send_twist``, ``send_pose``, ``act``, ``instruct``).

viser runs its callbacks on its own threads; the drag and the jog state are guarded by locks.
"""
from __future__ import annotations

import collections
import math
import threading
import time

import numpy as np

from ..common.teleop import BASE_FRAME, COMMANDS, TOOL_FRAME, PoseDrag
from ..robot.model import RobotModel
from ..robot.transforms import matrix_to_quat_xyzw

JOG = (   # label, linear (unit), angular (unit)
    ('+X', (1, 0, 0), (0, 0, 0)), ('-X', (-1, 0, 0), (0, 0, 0)),
    ('+Y', (0, 1, 0), (0, 0, 0)), ('-Y', (0, -1, 0), (0, 0, 0)),
    ('+Z', (0, 0, 1), (0, 0, 0)), ('-Z', (0, 0, -1), (0, 0, 0)),
    ('Rx+', (0, 0, 0), (1, 0, 0)), ('Rx-', (0, 0, 0), (-1, 0, 0)),
    ('Ry+', (0, 0, 0), (0, 1, 0)), ('Ry-', (0, 0, 0), (0, -1, 0)),
    ('Rz+', (0, 0, 0), (0, 0, 1)), ('Rz-', (0, 0, 0), (0, 0, -1)),
)
JOG_HOLD = 0.15   # [s] a jog button counts as held this long after its last hold message (the
                  # page sends them throttled to one per 50 ms)
# title, [(status name, key, label)]; a status name ending in ':' matches its prefix
PLOTS = (
    ('Tremor band [rad/s]', (('cerebellum', 'disturbance_rms_rad_s', 'measured (uncorrected)'),
                             ('cerebellum', 'tremor_amplitude_rad_s', "cerebellum's estimate"),
                             ('cerebellum', 'residual_rms_rad_s', 'left after cancellation'))),
    ('Spinal firing rate [spikes / neuron / s]',
     (('spinal: controller', 'firing_rate_motion', 'in motion'),
      ('spinal: controller', 'firing_rate_rest', 'at rest'))),
    ('Loop rates [Hz]', (('spinal: controller', 'tick_hz', 'spinal'),
                         ('cerebellum', 'tick_rate_hz_wall', 'cerebellum'),
                         ('sim:', 'real_time_factor', 'sim x 1000'))),
)
COLOURS = ('#1c7ed6', '#e8590c', '#2f9e44', '#862e9c')


def wxyz(rot) -> tuple[float, float, float, float]:
    x, y, z, w = matrix_to_quat_xyzw(rot)
    return float(w), float(x), float(y), float(z)


def _rgb(rgba) -> tuple[int, int, int]:
    return tuple(int(round(255 * min(max(c, 0.0), 1.0))) for c in rgba[:3])


class Plots:
    """Time series of /diagnostics values over ``window`` [s] (wall-clock x axis) and the
    spinal reflex events, drawn as uPlot charts."""

    def __init__(self, gui, window: float):
        import viser.uplot as up
        self.window = window
        self.t: collections.deque = collections.deque()
        self.rows: collections.deque = collections.deque()
        self.charts = []
        empty = (np.zeros(2), *[np.full(2, np.nan)] * 4)
        for title, series in PLOTS:
            spec = (up.Series(label='time'),
                    *[up.Series(label=label, stroke=COLOURS[i], width=2)
                      for i, (_n, _k, label) in enumerate(series)])
            self.charts.append(gui.add_uplot(empty[:len(spec)], spec, title=title, aspect=2.0))
        self.reflex_t: collections.deque = collections.deque()
        self.reflex_v: collections.deque = collections.deque()
        self.reflex = gui.add_uplot(
            (np.zeros(2), np.full(2, np.nan)),
            (up.Series(label='time'), up.Series(label='reflex (1 = withdrawing)',
                                                stroke='#c92a2a', width=2)),
            title='Reflex events', aspect=3.0)

    @staticmethod
    def _value(latest: dict, name: str, key: str) -> float:
        st = next((v for n, v in latest.items()
                   if (n.startswith(name) if name.endswith(':') else n == name)), None)
        try:
            v = float(st[key])
        except (TypeError, KeyError, ValueError):
            return math.nan
        return v * 1000.0 if key == 'real_time_factor' else v

    def add(self, t: float, latest: dict) -> None:
        """A sample of every series from ``latest`` ({status name: {key: value}})."""
        self.t.append(t)
        self.rows.append([[self._value(latest, n, k) for n, k, _l in s] for _t, s in PLOTS])
        while self.t and self.t[0] < t - self.window:
            self.t.popleft()
            self.rows.popleft()

    def event(self, t: float, reflex: bool) -> None:
        """A reflex started (True) or ended (False) at ``t``: a step on the time line."""
        self.reflex_t.extend((t, t))
        self.reflex_v.extend((0.0 if reflex else 1.0, 1.0 if reflex else 0.0))

    def draw(self, now: float) -> None:
        if len(self.t) >= 2:
            t = np.array(self.t)
            for i, chart in enumerate(self.charts):
                cols = np.array([r[i] for r in self.rows], float).T
                chart.data = (t, *cols)
        while self.reflex_t and self.reflex_t[0] < now - self.window and len(self.reflex_t) > 2:
            self.reflex_t.popleft()
            self.reflex_v.popleft()
        last = self.reflex_v[-1] if self.reflex_v else 0.0
        self.reflex.data = (np.array([now - self.window, *self.reflex_t, now]),
                            np.array([self.reflex_v[0] if self.reflex_v else 0.0,
                                      *self.reflex_v, last]))


class RobotView:
    """The page on ``server`` for ``model``. ``send_twist(linear, angular, frame)``,
    ``send_pose(position, quat_xyzw)``, ``act(name)`` (a :data:`COMMANDS` action) and
    ``instruct(text)`` are called from viser's threads."""

    def __init__(self, server, model: RobotModel, send_twist, send_pose, act, instruct, *,
                 jog_speed: float = 0.05, jog_turn: float = 0.3, jog_rate_hz: float = 40.0,
                 goal_rate_hz: float = 20.0, plot_window: float = 120.0, camera: bool = True):
        self.server, self.model = server, model
        self.send_twist, self.send_pose, self.act, self.instruct = (send_twist, send_pose, act,
                                                                   instruct)
        self.lock = threading.Lock()
        self.jog_lock = threading.Lock()
        self.drag = PoseDrag(goal_rate_hz)
        self.jogs = 0                           # twists sent by the jog buttons
        self.jog_timeouts = 0                   # jogs ended by JOG_HOLD, not by their release
        self.jog_releases = 0                   # jog button releases taken (each a zero twist)
        self.held = None                        # (linear, angular, time of the last message)
        self.jog_events = collections.deque()   # hold (linear, angular, time) or release None
        self.shown = None                       # the joint positions drawn
        sc, gui = server.scene, server.gui
        # no share button: it would open the arm's controls to the internet through viser's
        # tunnel service
        server.gui.configure_theme(control_width='large', show_share_button=False)
        sc.set_up_direction('+z')
        server.initial_camera.position = (1.25, 0.85, 0.75)
        server.initial_camera.look_at = (0.35, 0.0, 0.2)
        sc.add_grid('/table', width=1.6, height=1.6, cell_size=0.1, section_size=0.5,
                    position=(0.4, 0.0, 0.0))
        self.links = {}
        for link, shapes in model.visuals.items():
            frame = sc.add_frame(f'/arm/{link}', show_axes=False)
            for k, v in enumerate(shapes):
                kw = dict(color=_rgb(v.rgba), position=tuple(v.origin[:3, 3]),
                          wxyz=wxyz(v.origin[:3, :3]), cast_shadow=False, receive_shadow=False)
                if v.shape == 'box':
                    sc.add_box(f'/arm/{link}/shape{k}', dimensions=v.size, **kw)
                else:
                    sc.add_cylinder(f'/arm/{link}/shape{k}', radius=v.size[0], height=v.size[1],
                                    **kw)
            self.links[link] = frame
        self.objects: list = []
        self.goal = sc.add_icosphere('/tool_goal', radius=0.012, color=(240, 140, 0),
                                     opacity=0.6, visible=False)
        self.gizmo = sc.add_transform_controls('/gizmo', scale=0.15, line_width=2.0,
                                               depth_test=False)
        self.gizmo.on_update(self._on_gizmo)
        # controls
        self.status = gui.add_markdown('waiting for /joint_states')
        # the stop functions above the tabs: always in view
        gui.add_button(COMMANDS['estop'], color='red', hint='estop true: the spinal layer '
                       'brakes and holds (category 1)').on_click(lambda _e: self.act('estop'))
        gui.add_button(COMMANDS['resume'], hint='estop false, then spinal/resume').on_click(
            lambda _e: self.act('resume'))
        tabs = gui.add_tab_group()
        with tabs.add_tab('Jog'):
            self.frame = gui.add_dropdown('Frame', (BASE_FRAME, TOOL_FRAME),
                                          initial_value=BASE_FRAME)
            self.speed = gui.add_slider('Speed [m/s]', 0.005, 0.25, 0.005, jog_speed)
            self.turn = gui.add_slider('Turn [rad/s]', 0.05, 1.0, 0.05, jog_turn)
            for label, lin, ang in JOG:
                b = gui.add_button(label)
                b.on_hold(self._on_hold(lin, ang), callback_hz=jog_rate_hz)
                b.on_click(self._on_release)
        with tabs.add_tab('Commands'):
            self.text = gui.add_text('Instruction', '', hint='a task for the cortex')
            gui.add_button('Send to the cortex').on_click(lambda _e: self._send_instruction())
            for name, label in COMMANDS.items():
                if name not in ('estop', 'resume'):
                    gui.add_button(label).on_click(lambda _e, name=name: self.act(name))
            self.result = gui.add_markdown(' ')
        self.image = None
        if camera:
            with tabs.add_tab('Camera'):
                self.image = gui.add_image(np.zeros((60, 80, 3), np.uint8),
                                           label='/camera/image_raw', format='jpeg',
                                           jpeg_quality=80)
        with tabs.add_tab('Plots'):
            self.plots = Plots(gui, plot_window)

    # ---------------------------------------------------------------- inputs of the page
    def _send_instruction(self) -> None:
        text = self.text.value.strip()
        if text:
            self.instruct(text)

    def _jog(self, lin, ang) -> None:
        s, w = float(self.speed.value), float(self.turn.value)
        self.send_twist(tuple(s * v for v in lin), tuple(w * v for v in ang), self.frame.value)
        self.jogs += 1

    # The jog callbacks are coroutines: viser awaits coroutines on its event loop in the order
    # the page sent the messages (all hold messages of a press come before its click), where
    # plain functions go to its thread pool and may run out of order (a hold message run after
    # the release started the jog again). They queue the event; the start of a press and a
    # release are acted on at once (the first twist and the zero twist do not wait for the
    # next tick), the held twist is repeated by :meth:`jog_tick` on the node's thread. Both take
    # ``jog_lock``, held only while the queue is taken and a twist published.
    def _on_hold(self, lin, ang):
        async def hold(_event) -> None:
            with self.jog_lock:
                fresh = self.held is None and not self.jog_events
                self.jog_events.append((lin, ang, time.monotonic()))
                if fresh:
                    self._take_jog_events()
        return hold

    async def _on_release(self, _event) -> None:
        with self.jog_lock:
            self.jog_events.append(None)
            self._take_jog_events()

    def jog_tick(self) -> None:
        """Send the twist due now (call it at the jog rate): the held button's, a zero twist
        on each release (held or not: a release never leaves the arm on an earlier twist), or
        once when a held one has had no message for :data:`JOG_HOLD` (the page went away, or
        its release never came)."""
        with self.jog_lock:
            self._take_jog_events()

    def _take_jog_events(self) -> None:
        events = self.jog_events
        stop = False
        while events:
            ev = events.popleft()
            if ev is None:                       # a release: always a zero twist
                stop = True
                self.jog_releases += 1
            self.held = ev
        if self.held is not None and time.monotonic() - self.held[2] > JOG_HOLD:
            self.held, stop = None, True
            self.jog_timeouts += 1
        if self.held is not None:
            self._jog(*self.held[:2])
        elif stop:
            self._jog((0, 0, 0), (0, 0, 0))      # released: stop (no snap-back)

    def _on_gizmo(self, event) -> None:
        client = f'browser {event.client_id}'
        now = time.monotonic()
        t = event.target
        w, x, y, z = (float(v) for v in t.wxyz)
        with self.lock:
            why = self.drag.other_client(now, client)
            if why:
                self.drag.refuse(why)
                return
            self.drag.touch(now, client, start=event.phase == 'start')
            act = (None if event.phase == 'start' else
                   self.drag.pose(now, t.position, (x, y, z, w), final=event.phase == 'end'))
        if act is not None and act.kind == 'pose' and act.send:
            self.send_pose(act.position, act.quat)

    def due(self) -> None:
        """Send a rate-limited gizmo pose whose turn has come (call it periodically)."""
        with self.lock:
            act = self.drag.due(time.monotonic())
        if act is not None:
            self.send_pose(act.position, act.quat)

    # ---------------------------------------------------------------- what the page shows
    def show_joints(self, positions: dict) -> None:
        """The arm at joint ``positions`` (name -> value), and the gizmo at the tool unless
        it is being dragged."""
        poses = self.model.link_poses(positions)
        with self.server.atomic():
            for link, frame in self.links.items():
                t = poses[link]
                frame.position, frame.wxyz = tuple(t[:3, 3]), wxyz(t[:3, :3])
            with self.lock:
                dragging = self.drag.is_dragging(time.monotonic())
            if not dragging:
                t = poses['tcp_link']
                self.gizmo.position, self.gizmo.wxyz = tuple(t[:3, 3]), wxyz(t[:3, :3])
        self.shown = positions

    def show_goal(self, position) -> None:
        self.goal.position = tuple(float(v) for v in position)
        self.goal.visible = True

    def show_objects(self, objects: list[dict]) -> None:
        """``objects``: dicts with ``shape`` (box | sphere | cylinder), ``position``,
        ``quat`` (x, y, z, w), ``size`` (x, y, z) [m], ``rgba``."""
        for h in self.objects:
            h.remove()
        sc, self.objects = self.server.scene, []
        for i, o in enumerate(objects):
            x, y, z, w = o['quat']
            kw = dict(color=_rgb(o['rgba']), position=tuple(o['position']), wxyz=(w, x, y, z))
            sx, sy, sz = o['size']
            if o['shape'] == 'sphere':
                h = sc.add_icosphere(f'/objects/{i}', radius=sx / 2, **kw)
            elif o['shape'] == 'cylinder':
                h = sc.add_cylinder(f'/objects/{i}', radius=sx / 2, height=sz, **kw)
            else:
                h = sc.add_box(f'/objects/{i}', dimensions=(sx, sy, sz), **kw)
            self.objects.append(h)

    def show_image(self, rgb: np.ndarray) -> None:
        if self.image is not None:
            self.image.image = rgb

    def show_status(self, text: str) -> None:
        self.status.content = text

    def show_result(self, text: str) -> None:
        self.result.content = text
