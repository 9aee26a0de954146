"""The spinal layer: a spiking joint controller at 1 kHz and millisecond collision reflexes.

ROS-free core: :mod:`.lif` (LIF network, numpy), :mod:`.encoding` (per-joint normalisation,
ON/OFF encoder, readout decoder, model-derived gains), :mod:`.dynamics` (the arm's rigid-body
model), :mod:`.reflex` (momentum observer, collision detector, withdrawal),
:mod:`.controller` (the whole tick), :mod:`.motion` / :mod:`.evaluate` (reference motions and
closed-loop runs), :mod:`.train` (``neurovla train spinal``). ROS: :mod:`.node`.
"""
