"""The robot: one model of the arm for every layer (cortex, cerebellum, spinal) and every body.

ROS-free. :mod:`.model` (the URDF's kinematic tree, joint and gripper limits, drive properties,
home pose, forward kinematics and Jacobians; :func:`.model.load`), :mod:`.dynamics` (mass
matrix, bias forces, inverse dynamics on MuJoCo), :mod:`.ik` (damped-least-squares inverse
kinematics) and :mod:`.transforms` (rotation and pose conversions). A layer imports these; it
does not keep a copy of the robot.
"""

from .model import (
    ARM_JOINTS,
    FINGER_JOINTS,
    GRIPPER_JOINT,
    STATE_JOINTS,
    Joint,
    RobotModel,
    load,
    urdf_dir,
    urdf_xml,
)

__all__ = ['ARM_JOINTS', 'FINGER_JOINTS', 'GRIPPER_JOINT', 'STATE_JOINTS', 'Joint', 'RobotModel',
           'load', 'urdf_dir', 'urdf_xml']
