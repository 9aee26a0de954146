"""The interactive-markers protocol core, ROS-free: the tool marker, sequence numbers, and
feedback -> goals (rate limit, drag ownership, refusals)."""
import math

import numpy as np
from visualization_msgs.msg import (
    InteractiveMarkerControl,
    InteractiveMarkerFeedback,
    InteractiveMarkerUpdate,
    MenuEntry,
)
from visualization_msgs.srv import GetInteractiveMarkers

from neurovla_ros.markers.protocol import (
    MENU,
    TCP_MARKER,
    DragSession,
    MarkerServer,
    pose_msg,
    tcp_marker,
)
from neurovla_ros.robot.transforms import quat_xyzw_to_matrix

F = InteractiveMarkerFeedback


def test_tool_marker_has_six_axis_controls_and_the_menu():
    m = tcp_marker('base_link', [0.4, 0.0, 0.3], [0.0, 1.0, 0.0, 0.0], scale=0.2)
    assert m.name == TCP_MARKER and m.header.frame_id == 'base_link' and m.scale == 0.2
    axes = {}
    for c in m.controls:
        if c.interaction_mode == InteractiveMarkerControl.MENU:
            menu = c
            continue
        o = c.orientation
        assert math.isclose(o.x ** 2 + o.y ** 2 + o.z ** 2 + o.w ** 2, 1.0)
        # a control acts along its own x axis
        axis = quat_xyzw_to_matrix(o.x, o.y, o.z, o.w)[:, 0]
        axes.setdefault(c.interaction_mode, []).append(np.round(np.abs(axis), 9))
    for mode in (InteractiveMarkerControl.MOVE_AXIS, InteractiveMarkerControl.ROTATE_AXIS):
        got = sorted(tuple(a) for a in axes[mode])
        assert got == [(0, 0, 1), (0, 1, 0), (1, 0, 0)], (mode, got)
    assert menu.always_visible and menu.markers
    assert [(e.id, e.parent_id, e.title, e.command_type) for e in m.menu_entries] == [
        (k, 0, title, MenuEntry.FEEDBACK) for k, (title, _a) in MENU.items()]
    assert {a for _t, a in MENU.values()} >= {'home', 'gripper_open', 'gripper_close',
                                               'reset_reflex', 'release_teleop', 'estop',
                                               'resume'}


def test_updates_are_numbered_consecutively_and_the_response_carries_the_state():
    srv = MarkerServer('/teleop_markers')
    ups = [srv.insert(tcp_marker('base_link', [0.4, 0, 0.3], [0, 0, 0, 1]))]
    ups.append(srv.set_pose(TCP_MARKER, pose_msg([0.5, 0, 0.3], [0, 0, 0, 1])))
    ups.append(srv.set_pose(TCP_MARKER, pose_msg([0.5, 0.1, 0.3], [0, 0, 0, 1])))
    assert [u.seq_num for u in ups] == [1, 2, 3]
    assert all(u.type == InteractiveMarkerUpdate.UPDATE and u.server_id == '/teleop_markers'
               for u in ups)
    assert len(ups[0].markers) == 1 and not ups[0].poses
    assert ups[2].poses[0].name == TCP_MARKER and ups[2].poses[0].pose.position.y == 0.1
    assert ups[2].poses[0].header.frame_id == 'base_link'
    resp = srv.fill_response(GetInteractiveMarkers.Response())
    assert resp.sequence_number == 3 and resp.markers[0].pose.position.y == 0.1
    er = srv.erase(TCP_MARKER)
    assert er.seq_num == 4 and er.erases == [TCP_MARKER]
    assert not srv.fill_response(GetInteractiveMarkers.Response()).markers


def fb(event, t_pose=(0.4, 0.0, 0.3), q=(0.0, 0.0, 0.0, 1.0), client='/rviz2', frame='base_link',
       name=TCP_MARKER, entry=0):
    m = F(client_id=client, marker_name=name, event_type=event, menu_entry_id=entry)
    m.header.frame_id = frame
    m.pose = pose_msg(t_pose, q)
    return m


def test_a_drag_becomes_rate_limited_goals_and_the_release_pose_always_goes():
    d = DragSession('base_link', goal_rate_hz=10.0, drag_timeout=2.0)
    assert d.feedback(0.0, fb(F.MOUSE_DOWN)).kind == 'none' and d.is_dragging(0.0)
    sent = []
    for k in range(1, 21):                      # 20 pose updates at 50 Hz over 0.4 s
        act = d.feedback(0.02 * k, fb(F.POSE_UPDATE, (0.4, 0.005 * k, 0.3)))
        assert act.kind == 'pose'               # the marker pose, for the echo
        if act.send:
            sent.append(act.position[1])
        late = d.due(0.02 * k + 0.001)
        if late is not None:
            sent.append(late.position[1])
    assert 4 <= len(sent) <= 5                  # at most 10 Hz
    up = d.feedback(0.41, fb(F.MOUSE_UP, (0.4, 0.1, 0.3), q=(0, 0, 0, 1.05)))
    assert up.kind == 'pose' and up.send and up.position[1] == 0.1
    np.testing.assert_allclose(up.quat, [0, 0, 0, 1.0])      # normalised
    assert not d.is_dragging(0.41)


def test_quaternion_far_from_unit_and_bad_frames_are_refused_with_a_reason():
    d = DragSession('base_link')
    cases = [(fb(F.POSE_UPDATE, q=(0, 0, 0, 2.0)), 'quaternion norm'),
             (fb(F.POSE_UPDATE, t_pose=(math.nan, 0, 0)), 'NaN or inf'),
             (fb(F.POSE_UPDATE, frame='map'), "'map'"),
             (fb(F.POSE_UPDATE, name='other'), 'unknown marker'),
             (fb(F.MENU_SELECT, entry=99), 'unknown menu entry')]
    for msg, word in cases:
        assert d.feedback(1.0, msg).kind == 'none'
        assert word in d.last_rejection
    assert d.rejected == len(cases) and d.received == len(cases)
    assert d.feedback(1.0, fb(F.MENU_SELECT, entry=4)).name == 'reset_reflex'


def test_a_second_client_cannot_take_over_a_drag_until_it_times_out():
    d = DragSession('base_link', drag_timeout=1.0)
    d.feedback(0.0, fb(F.MOUSE_DOWN, client='/rviz_a'))
    assert d.feedback(0.5, fb(F.POSE_UPDATE, client='/rviz_b')).kind == 'none'
    assert '/rviz_b' in d.last_rejection
    assert d.feedback(0.9, fb(F.KEEP_ALIVE, client='/rviz_a')).kind == 'none'
    assert d.is_dragging(1.8)                   # kept alive at 0.9
    assert not d.is_dragging(2.0)               # the drag timed out
    assert d.feedback(2.1, fb(F.POSE_UPDATE, client='/rviz_b')).kind == 'pose'


def test_the_rviz_layout_shows_the_marker_robot_tf_and_camera():
    import yaml

    from neurovla_ros import graph
    from neurovla_ros.markers.params import NODE_NAME
    cfg = yaml.safe_load(open(graph.data_file('config', 'neurovla.rviz')))
    displays = {d['Class'].split('/')[1]: d for d in cfg['Visualization Manager']['Displays']}
    assert displays['InteractiveMarkers']['Interactive Markers Namespace'] == '/' + NODE_NAME
    assert displays['RobotModel']['Description Topic']['Value'] == '/robot_description'
    assert displays['TF']['Enabled'] and displays['Image']['Topic']['Value'] == '/camera/image_raw'
    assert all(displays[k]['Enabled'] for k in ('InteractiveMarkers', 'RobotModel', 'Image'))
    tools = [t['Class'] for t in cfg['Visualization Manager']['Tools']]
    assert tools[0] == 'rviz_default_plugins/Interact'     # the default tool drags markers
