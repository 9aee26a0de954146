"""The cerebellum: IMU + encoder state estimation, goal shaping, adaptive tremor cancellation.

ROS-free core modules (numpy; the forward model's inertia comes from the robot model's MuJoCo
dynamics, :mod:`neurovla_ros.robot.dynamics`), the tick's arithmetic in C, and one thin
``node.py``:

* :mod:`.filters` - vectorised biquads and their frequency response;
* :mod:`.estimator` - wrist IMU fused with the joint encoders through the URDF kinematics;
* :mod:`.goals` - the goal intakes (joint, pose, trajectory, teleop twist), validated;
* :mod:`.shaping` - sparse, noisy goals to a smooth jerk-limited joint reference;
* :mod:`.forward_model` - the predicted response of the spinal layer + arm to a reference
  (the servo model of the spinal layer);
* :mod:`.adaptive` - the adaptive tremor canceller (frequency tracker + normalised FxLMS);
* :mod:`.core` - :class:`~.core.Cerebellum`, everything above behind one ``tick``;
* ``_tick.c`` - that tick in C, on the same arrays (:mod:`.state`: the scalar state in shared
  arrays; :mod:`.ops`: vector operations in a fixed order), checked bit for bit against the
  numpy code, which stays the reference.
"""
