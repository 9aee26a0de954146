"""Pinhole camera geometry: project base_link points to pixels and pixels back onto planes.

ROS-free. Intrinsics come from the camera_info (K, width, height); the pose of the optical frame
(z forward, x right, y down) in base_link comes from the URDF through ``neurovla_ros.robot`` (the
scene camera hangs off base_link on fixed joints, so it does not depend on the arm's joints).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import robot


@dataclass
class Camera:
    K: np.ndarray          # 3x3 intrinsics [px]
    width: int
    height: int
    pose: np.ndarray       # 4x4 optical frame in base_link

    @classmethod
    def from_info(cls, k, width: int, height: int, frame: str = 'scene_camera_optical_frame',
                  model: robot.RobotModel | None = None) -> 'Camera':
        """Intrinsics ``k`` (9 values, row-major, as in sensor_msgs/CameraInfo.k) and the URDF pose
        of ``frame``."""
        k = np.asarray(k, float).reshape(3, 3)
        if not (np.all(np.isfinite(k)) and k[0, 0] > 0 and k[1, 1] > 0):
            raise ValueError(f'invalid intrinsics {k.ravel().tolist()}')
        m = model or robot.load()
        return cls(k, int(width), int(height), m.fk(m.home_pose(), tip=frame))

    def scaled(self, width: int, height: int) -> 'Camera':
        """The same camera seen at another resolution."""
        s = np.diag([width / self.width, height / self.height, 1.0])
        return Camera(s @ self.K, width, height, self.pose)

    def project(self, points) -> np.ndarray:
        """N x 3 base_link points -> N x 2 pixel coordinates (u right, v down)."""
        p = np.atleast_2d(np.asarray(points, float))
        inv = np.linalg.inv(self.pose)
        pc = p @ inv[:3, :3].T + inv[:3, 3]
        uvw = pc @ self.K.T
        return uvw[:, :2] / uvw[:, 2:3]

    def ray(self, uv) -> tuple[np.ndarray, np.ndarray]:
        """Origin and unit direction (base_link) of the ray through pixel(s) ``uv`` (N x 2)."""
        uv = np.atleast_2d(np.asarray(uv, float))
        d = np.stack([(uv[:, 0] - self.K[0, 2]) / self.K[0, 0],
                      (uv[:, 1] - self.K[1, 2]) / self.K[1, 1], np.ones(len(uv))], 1)
        d = d @ self.pose[:3, :3].T
        return self.pose[:3, 3], d / np.linalg.norm(d, axis=1, keepdims=True)

    def backproject(self, uv, z) -> np.ndarray:
        """Points (N x 3) where the rays through ``uv`` meet the horizontal planes at height ``z``
        [m]; NaN for rays that point away from the plane."""
        origin, d = self.ray(uv)
        z = np.broadcast_to(np.asarray(z, float), (len(d),))
        with np.errstate(divide='ignore', invalid='ignore'):
            t = (z - origin[2]) / d[:, 2]
        t = np.where(t > 0, t, np.nan)
        return origin + t[:, None] * d
