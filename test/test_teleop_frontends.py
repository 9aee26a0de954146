"""The keyboard tool (tmux) and the browser view (headless Chromium) against a running graph:
the fixture of test_teleop_graph (its own graph for this module). They run on a fresh graph:
after test_teleop_graph's rviz drag and menu, the same twists did not move the arm in one run
(the cerebellum stayed on its pose trajectory; not understood yet, see the branch report)."""
import math
import os
import re
import subprocess
import sys
import time

import numpy as np
from conftest import REPO
from test_teleop_graph import NS, T, graph  # noqa: F401 - the module-scoped graph fixture


# ---------------------------------------------------------------- the keyboard, in tmux
class Tmux:
    """A private tmux server (its own socket) running one command in a detached session."""

    def __init__(self, command, width=120, height=30):
        self.base = ['tmux', '-L', f'neurovla-test-{os.getpid()}']
        subprocess.run(self.base + ['new-session', '-d', '-s', 'kb', '-x', str(width), '-y',
                                    str(height), '-c', REPO, command], check=True, env=os.environ)

    def keys(self, *keys, literal=True):
        subprocess.run(self.base + ['send-keys', '-t', 'kb', *(['-l'] if literal else []), *keys],
                       check=True)

    def screen(self):
        r = subprocess.run(self.base + ['capture-pane', '-p', '-t', 'kb'], capture_output=True,
                           text=True)
        return r.stdout if r.returncode == 0 else ''

    def alive(self):
        return subprocess.run(self.base + ['has-session', '-t', 'kb'],
                              capture_output=True).returncode == 0

    def close(self):
        subprocess.run(self.base + ['kill-server'], capture_output=True)


def test_keyboard_teleop_in_tmux_jogs_the_tool_and_toggles_the_gripper(graph):  # noqa: F811
    g = graph
    assert g.go_home(), 'the arm did not reach home'
    g.spin(1.0)
    tm = Tmux(f'{sys.executable} -m neurovla_ros.cli teleop --speed 0.05 --namespace {NS}')
    try:
        assert g.spin(30.0, lambda: 'frame base_link' in tm.screen()), tm.screen()
        assert 'u    i    o' in tm.screen()              # the key map is shown
        # its publisher discovered (the probe's own TeleopCommands has one too)
        assert g.spin(20.0, lambda: g.node.count_publishers(T.TWIST_TOPIC) >= 2)
        # the cerebellum takes the tool's twists (seen once: the probe had discovered the
        # tool's publisher, the cerebellum not yet, on a loaded machine; the arm stayed on
        # its pose trajectory): tap 'i' until it servos
        cb = lambda: g.diag.get('cerebellum', {})                    # noqa: E731
        end = time.monotonic() + 30.0
        while cb().get('source') != 'servo' and time.monotonic() < end:
            tm.keys('i')
            g.spin(0.5)
        assert cb().get('source') == 'servo', {k: cb().get(k) for k in (
            'source', 'control', 'stopped', 'goals_rejected', 'last_rejection')}
        assert g.spin(5.0, lambda: g.twists and g.twists[-1][1] == (0.0, 0.0, 0.0))
        g.spin(1.0)
        p0 = g.tcp()[:3, 3]
        g.twists.clear()
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:               # hold 'i': auto-repeat at 30 Hz
            tm.keys('i')
            g.spin(1 / 30)
        assert "moving ('i')" in tm.screen()
        assert g.spin(5.0, lambda: g.twists and g.twists[-1][1] == (0.0, 0.0, 0.0)), (
            len(g.twists), tm.screen())
        g.spin(0.5)
        # the twists while held: +x at the tool speed, >= 30 Hz, never a gap the cerebellum
        # would take for a timeout (0.1 s)
        held = [tw for tw in g.twists if tw[1] != (0.0, 0.0, 0.0)]
        stamps = np.array([tw[0] for tw in held])
        assert all(tw[1] == (0.05, 0.0, 0.0) for tw in held)
        rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        assert rate >= 29.5 and np.max(np.diff(stamps)) < 0.1, (rate, np.diff(stamps))
        span = stamps[-1] - stamps[0]
        assert span > 1.4, span
        # the tool went +x by what a person holding the key expects: at least 60 % of the
        # speed times the time the twists came (the rest is the jerk-limited start and stop),
        # and never less than 30 mm
        moved = g.tcp()[:3, 3] - p0
        assert (moved[0] > max(0.03, 0.6 * 0.05 * span) and abs(moved[1]) < 0.01
                and abs(moved[2]) < 0.01), (
            moved, span, len(g.twists), {k: g.diag['cerebellum'].get(k) for k in (
                'source', 'control', 'stopped', 'holding', 'goals_rejected', 'last_rejection')},
            g.diag.get('spinal: controller', {}).get('_msg'),
            {k: v.get('real_time_factor') for k, v in g.diag.items() if k.startswith('sim')})
        assert 'stopped' in tm.screen()
        # g: the gripper closes, g again: it opens; q: faster
        tm.keys('g')
        assert g.spin(10.0, lambda: g.finger() < 0.005), g.finger()
        tm.keys('g')
        assert g.spin(10.0, lambda: g.finger() > 0.035), g.finger()
        tm.keys('q')
        assert g.spin(5.0, lambda: 'speed 0.055 m/s' in tm.screen()), tm.screen()
        tm.keys('C-c', literal=False)
        end = time.monotonic() + 10.0
        while tm.alive() and time.monotonic() < end:
            time.sleep(0.1)
        assert not tm.alive(), tm.screen()
    finally:
        tm.close()


# ---------------------------------------------------------------- the browser view
CAMERA = (1.25, 0.85, 0.75), (0.35, 0.0, 0.2), math.radians(75.0)   # ui.view's initial camera


def project(p, width, height):
    """Pixel of point ``p`` (base_link) in the page's initial view (three.js perspective,
    vertical field of view, +z up)."""
    pos, at, fov = (np.array(v, float) if i < 2 else v for i, v in enumerate(CAMERA))
    f = (at - pos) / np.linalg.norm(at - pos)
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    d = np.asarray(p, float) - pos
    fy = height / 2 / math.tan(fov / 2)
    return np.array([width / 2 + fy * (d @ r) / (d @ f), height / 2 - fy * (d @ u) / (d @ f)])


def arm_blue(img):
    """Pixels of the URDF's blue links (rgba 0.25 0.45 0.75, shaded) in the 3-D view (the
    control panel on the right and the axes in the corner left out)."""
    v = img[:, :860].astype(int)
    r, g, b = v[..., 0], v[..., 1], v[..., 2]
    mask = (b > r + 60) & (b > g + 25) & (b > 110)
    mask[-90:, :90] = False
    return mask


def jog_moves(g, seconds):
    """Twists up at 5 cm/s from the probe for ``seconds``: how far the tool went [m]."""
    g.spin(0.3)
    z0 = g.tcp()[2, 3]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        g.cmd.twist([0.0, 0.0, 0.05], [0.0, 0.0, 0.0])
        g.spin(1 / 30)
    g.spin(0.5)
    return abs(g.tcp()[2, 3] - z0)


def test_browser_view_shows_the_arm_and_moves_it_from_the_page(graph, tmp_path):  # noqa: F811
    """The ui node against the running graph in headless Chromium: the arm is drawn (pixels),
    a held jog button moves it (>= 30 Hz twists, a zero twist on release), the gizmo dragged
    with the mouse moves the tool there, the emergency stop and resume buttons stop the arm
    (estop, spinal/resume) and let it move again. (The Commands and Camera tabs are not driven yet:
    viser's dock tabs did not switch on a scripted press or Enter.)"""
    from PIL import Image as PilImage

    from neurovla_ros.ui.browser import Browser
    g = graph
    assert g.go_home(), 'the arm did not reach home'
    g.start('ui', overrides={'port': 0})
    key = 'ui: browser view'
    assert g.spin(60.0, lambda: key in g.diag), g.log('ui')
    url = g.diag[key]['url']
    assert url.startswith('http://127.0.0.1:'), url          # this machine only by default
    with Browser(url) as b:
        assert b.wait_for('document.querySelectorAll("button").length > 10', 60.0)
        assert g.spin(30.0, lambda: g.diag[key].get('clients') == '1'), g.diag[key]
        end = time.monotonic() + 30.0      # the scene arrives and renders (its lights and
        while True:                        # materials too: a loaded machine takes seconds)
            g.spin(1.0)
            shot = b.screenshot()
            before = arm_blue(shot)
            if before.sum() > 1500 or time.monotonic() > end:
                break
        PilImage.fromarray(shot).save(tmp_path / 'ui.png')
        assert before.sum() > 1500, f'{before.sum()} arm pixels ({tmp_path / "ui.png"})'
        assert g.spin(10.0, lambda: re.search(r'(teleop|cortex) has it; spinal following',
                                              b.evaluate('document.body.innerText')))
        # hold '+Z' for 1 s
        z0 = g.tcp()[2, 3]
        g.twists.clear()
        b.press('+Z', 1.0, during=lambda: g.spin(0.02))
        # the release reaches the ui (jog_releases) and ends in a zero twist, the last one the
        # probe gets (a loaded machine delays the page's process, at normal priority behind the
        # control loops and Chromium: the twists may come late, never lost)
        assert g.spin(20.0, lambda: g.diag[key].get('jog_releases') == '1' and g.twists
                      and g.twists[-1][1] == (0.0, 0.0, 0.0)), (
            len(g.twists), g.twists[-3:], g.diag[key], g.log('ui'))
        g.spin(0.5)
        assert g.twists[-1][1] == (0.0, 0.0, 0.0), g.twists[-3:]
        # which path ended the jog: the release, or (the page's hold messages paused for
        # more than view.JOG_HOLD, seen on a loaded machine) the ui's hold timeout first
        path = ('release' if g.diag[key].get('jog_timeouts') == '0' else
                f"hold timeout ({g.diag[key].get('jog_timeouts')}) before the release")
        print(f'browser jog ended by: {path}; {len(g.twists)} twists')
        held = [tw for tw in g.twists if tw[1] != (0.0, 0.0, 0.0)]
        stamps = np.array([tw[0] for tw in held])
        rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        assert rate >= 30.0 and np.max(np.diff(stamps)) < 0.1, (rate, np.diff(stamps))
        assert all(tw[1] == (0.0, 0.0, 0.05) for tw in held)
        dz = g.tcp()[2, 3] - z0
        assert dz > 0.025, (dz, path)
        # after the zero twist the arm stays where it halted (no snap-back, no drift)
        z1 = g.tcp()[2, 3]
        g.spin(0.5)
        assert abs(g.tcp()[2, 3] - z1) < 0.001, (z1, g.tcp()[2, 3], path)
        g.spin(2.0)
        moved = b.screenshot()
        assert (arm_blue(moved) ^ before).sum() > 300        # the drawn arm moved too
        # drag the gizmo's z arrow (the tool's z axis, down at home) by 12 px on the screen
        tcp = g.tcp()
        h, w = moved.shape[:2]
        o, tip = project(tcp[:3, 3], w, h), project(tcp[:3, 3] + 0.12 * tcp[:3, 2], w, h)
        a, d = o + 0.8 * (tip - o), (tip - o) / np.linalg.norm(tip - o)
        b.mouse('mouseMoved', *a)
        b.mouse('mousePressed', *a)
        for k in range(1, 13):
            p = a + d * k
            b.send('Input.dispatchMouseEvent', type='mouseMoved', x=p[0], y=p[1],
                   button='left', buttons=1)
            g.spin(0.05)
        b.mouse('mouseReleased', *p)
        assert g.spin(10.0, lambda: int(g.diag[key].get('poses', 0)) >= 3), g.diag[key]
        g.spin(1.0)
        goal = g.diag[key]
        target_z = tcp[2, 3] - 0.005                          # it went down along the tool z
        assert g.spin(15.0, lambda: g.tcp()[2, 3] < target_z and
                      np.linalg.norm(g.tcp()[:2, 3] - tcp[:2, 3]) < 0.01), (g.tcp(), goal)
        # emergency stop from the page: estop true (latched), the spinal layer stops, the
        # cerebellum refuses goals, the page says so; twists then move nothing
        safety = lambda: g.diag.get('spinal: safety', {})             # noqa: E731
        stopped = lambda: g.diag.get('cerebellum', {}).get('stopped')  # noqa: E731
        assert safety().get('stop') == 'run' and stopped() == 'false', (safety(), stopped())
        b.click('Emergency stop')
        assert g.spin(10.0, lambda: safety().get('estop') == 'true' and
                      safety().get('stop') == 'stopped' and stopped() == 'true'), (
            safety(), stopped(), g.diag[key])
        assert g.spin(10.0, lambda: 'STOPPED' in b.evaluate('document.body.innerText'))
        assert jog_moves(g, 0.6) < 0.002, 'a twist moved the arm while stopped'
        # resume from the page: estop false and spinal/resume; twists move it again
        b.click('Resume')
        assert g.spin(10.0, lambda: safety().get('estop') == 'false' and
                      safety().get('stop') == 'run' and stopped() == 'false'), (
            safety(), stopped(), g.diag[key])
        assert g.spin(10.0, lambda: 'ok' in g.diag[key].get('service_resume', '')), g.diag[key]
        assert jog_moves(g, 0.6) > 0.01, 'twists did not move the arm after the resume'
    assert g.procs['ui'].poll() is None, g.log('ui')
    g.stop('ui')
