"""The browser view of the robot (pip mode, no rviz): the ``ui`` node on viser."""
