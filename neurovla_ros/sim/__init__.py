"""The body: embedded MuJoCo simulator built from the arm URDF (``world.World``) and its node."""
