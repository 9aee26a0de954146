"""The spinal layer: a spiking joint controller at 1 kHz and millisecond collision reflexes.

ROS-free core: :mod:`.lif` (LIF network, numpy), :mod:`.encoding` (per-joint normalisation,
ON/OFF encoder, readout decoder; the model-derived gains are :mod:`neurovla_ros.common.servo`),
:mod:`.reflex` (momentum observer on the robot model's dynamics, collision detector,
withdrawal),
:mod:`.controller` (the whole tick), :mod:`.motion` / :mod:`.evaluate` (reference motions and
closed-loop runs), :mod:`.train` (``neurovla train spinal``). ROS: :mod:`.node`.
"""
