"""The cerebellum: IMU + encoder state estimation, goal shaping, adaptive tremor cancellation.

ROS-free core modules (numpy only) and one thin ``node.py``:

* :mod:`.filters` - vectorised biquads and their frequency response;
* :mod:`.estimator` - wrist IMU fused with the joint encoders through the URDF kinematics;
* :mod:`.ik` - damped-least-squares inverse kinematics and teleop twist mapping;
* :mod:`.shaping` - sparse, noisy goals to a smooth jerk-limited joint reference;
* :mod:`.forward_model` - the predicted response of the spinal layer + arm to a reference;
* :mod:`.adaptive` - the adaptive tremor canceller (frequency tracker + normalised FxLMS);
* :mod:`.core` - :class:`~.core.Cerebellum`, everything above behind one ``tick``.
"""
