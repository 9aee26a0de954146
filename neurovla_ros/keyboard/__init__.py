"""Keyboard teleop for the tool (``neurovla teleop``): teleop_twist_keyboard's keys."""
