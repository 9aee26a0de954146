"""Pieces shared by every level: robot model and kinematics, limits, parameters, ROS helpers."""
