"""neurovla: a robot-arm control stack laid out like a nervous system.

Brain: ``cortex`` (VLA planner), ``cerebellum`` (adaptive smoothing), ``spinal`` (spiking
controller + reflexes). Body: ``sim`` (embedded MuJoCo). The arm: ``robot`` (one model for
every layer and body). Shared pieces: ``common``.
"""
import os

# MuJoCo picks its OpenGL back-end when it is first imported: rendering here is offscreen (EGL)
# unless the user chose another back-end.
os.environ.setdefault('MUJOCO_GL', 'egl')
