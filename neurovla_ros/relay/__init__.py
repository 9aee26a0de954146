"""The loss/delay relay between the cortex and the body-side nodes (``bringup relay:=true``).

ROS-free: :mod:`.params` (its parameters) and ``common/relay.py`` (the lossy, delaying line).
ROS: :mod:`.node` (the ``relay`` node).
"""
