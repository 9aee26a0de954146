"""rviz teleop: an interactive marker at the tool (``teleop_markers`` node)."""
