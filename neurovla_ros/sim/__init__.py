"""The body: embedded MuJoCo simulator built from the arm URDF and its node.

ROS-free: :mod:`.scene` (the MuJoCo model of the arm on its table), :mod:`.drives`
(ros2_control-like drives), :mod:`.disturbances` (pushes, tremor, base vibration),
:mod:`.world` (all of it stepped at 1 ms, with sensors and cameras), :mod:`.camera` (the
rendering side). ROS: :mod:`.node` (the ``sim`` node), :mod:`.pacing` (its real-time loop),
:mod:`.camera_node` (the camera's own process and node).
"""
