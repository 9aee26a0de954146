"""Pieces shared by every level: input validation and limits, the joint servo law, parameter
schemas, real-time scheduling, serialized-message helpers and the rclpy helpers (``rosutil``,
the only module here that imports rclpy). The robot model is :mod:`neurovla_ros.robot`."""
