"""neurovla: a robot-arm control stack laid out like a nervous system.

Brain: ``cortex`` (VLA planner), ``cerebellum`` (adaptive smoothing), ``spinal`` (spiking
controller + reflexes). Body: ``sim`` (embedded MuJoCo). Shared pieces: ``common``.
"""
