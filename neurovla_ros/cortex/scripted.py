"""The classical baseline every model has to beat: keyword parsing + colour segmentation.

ROS-free, OpenCV only. The instruction is reduced to a colour and/or shape (``language.parse``);
the image is segmented by hue/saturation (HSV) for the named colour inside the table's
workspace, pixels where the arm is (projected from the joint angles) are masked out, blobs are
found with connected components, a blob's shape is told from its outline (how round, how tall)
when the instruction names one, and the chosen blob's centroid is back-projected through the
camera onto the horizontal plane at a typical object-centre height.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import language
from .camera import Camera

# nominal hue of each colour name, OpenCV units (degrees / 2); white = unsaturated and bright
COLOUR_HUES = {'red': 0, 'orange': 18, 'yellow': 30, 'green': 64, 'cyan': 90, 'blue': 111,
               'purple': 141}
HUE_TOLERANCE = 7
MIN_SATURATION = 150    # the table is ~115: anything this saturated is an object (or the arm)
MIN_VALUE = 60
WHITE_MAX_SATURATION = 40
WHITE_MIN_VALUE = 200
MIN_AREA = 12           # [px] smaller blobs are noise or slivers next to the arm
OBJECT_CENTRE_Z = 0.023  # [m] typical centre height of a table-top object
WORKSPACE = ((0.22, 0.78), (-0.38, 0.38))   # table area searched, base_link x, y [m]
ARM_POINTS = ('tcp_link', 'left_finger_link', 'right_finger_link', 'gripper_base_link',
              'tool0', 'wrist_3_link', 'wrist_2_link', 'wrist_1_link', 'forearm_link')


@dataclass
class Detection:
    centre: np.ndarray     # base_link [m]
    uv: np.ndarray         # pixel
    area: float            # [px]
    shape: str             # best-guess shape of the blob
    confidence: float


def colour_mask(hsv: np.ndarray, colour: str) -> np.ndarray:
    """uint8 mask (255 = pixel of that colour name) of an HSV (OpenCV) image."""
    h, s, v = hsv[..., 0].astype(np.int16), hsv[..., 1], hsv[..., 2]
    if colour == 'white':
        m = (s <= WHITE_MAX_SATURATION) & (v >= WHITE_MIN_VALUE)
    else:
        d = np.abs(h - COLOUR_HUES[colour])
        d = np.minimum(d, 180 - d)
        m = (d <= HUE_TOLERANCE) & (s >= MIN_SATURATION) & (v >= MIN_VALUE)
    return m.astype(np.uint8) * 255


def blob_shape(contour, area: float) -> str:
    """cube | ball | cylinder from a blob outline, seen by the scene camera from ~40 deg above.

    A ball looks round (circularity high, as wide as tall); a standing cylinder looks taller than
    wide and fills its bounding box; a cube shows an irregular hexagon. Thresholds calibrated on
    rendered training scenes (85 % of blobs right; pixel outlines make small blobs' circularity
    exceed 1).
    """
    perim = cv2.arcLength(contour, True)
    x, y, w, h = cv2.boundingRect(contour)
    circ = 4 * np.pi * area / max(perim * perim, 1e-9)
    aspect = h / max(w, 1)
    fill = area / max(w * h, 1)
    if aspect >= 1.22 and fill >= 0.70:
        return 'cylinder'
    if circ >= 0.95 and aspect < 1.12:
        return 'ball'
    return 'cube'


class ScriptedLocator:
    """Find the named object in an image of the scene camera."""

    def __init__(self, camera: Camera, model=None):
        from .. import robot
        self.camera = camera
        self.model = model or robot.load()
        (x0, x1), (y0, y1) = WORKSPACE
        corners = np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]], float)
        poly = np.round(camera.project(corners)).astype(np.int32)
        self.workspace = np.zeros((camera.height, camera.width), np.uint8)
        cv2.fillPoly(self.workspace, [poly], 255)

    def arm_mask(self, q) -> np.ndarray:
        """255 where the gripper and the lower arm are seen (discs around projected links)."""
        mask = np.zeros_like(self.workspace)
        if q is None:
            return mask
        pts = [self.model.fk(q, tip=link)[:3, 3] for link in ARM_POINTS]
        for link, p in zip(ARM_POINTS, pts):
            uv = self.camera.project([p])[0]
            depth = np.linalg.norm(p - self.camera.pose[:3, 3])
            r = int(np.ceil(self.camera.K[0, 0] * 0.06 / max(depth, 0.1)))
            if np.all(np.isfinite(uv)):
                cv2.circle(mask, (int(uv[0]), int(uv[1])), r, 255, -1)
        return mask

    def detect(self, image: np.ndarray, colour: str, q=None) -> list[Detection]:
        """Blobs of ``colour`` in the workspace, largest first."""
        if colour not in COLOUR_HUES and colour != 'white':
            return []
        hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
        m = cv2.bitwise_and(colour_mask(hsv, colour), self.workspace)
        if q is not None:
            m[self.arm_mask(q) > 0] = 0
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        n, labels, stats, cents = cv2.connectedComponentsWithStats(m, connectivity=8)
        out = []
        for k in range(1, n):
            area = float(stats[k, cv2.CC_STAT_AREA])
            if area < MIN_AREA:
                continue
            contours, _ = cv2.findContours((labels == k).astype(np.uint8), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_NONE)
            shape = blob_shape(max(contours, key=cv2.contourArea), area)
            centre = self.camera.backproject(cents[k][None], OBJECT_CENTRE_Z)[0]
            out.append(Detection(centre, np.asarray(cents[k]), area, shape, 1.0))
        return sorted(out, key=lambda d: -d.area)

    def locate(self, image: np.ndarray, query: language.Query, q=None):
        """(centre [m] or None, confidence 0..1, note) of the object the query names."""
        if query.empty:
            return None, 0.0, 'no colour or shape word in the instruction'
        colours = [query.colour] if query.colour else [*COLOUR_HUES, 'white']
        found = [d for c in colours for d in self.detect(image, c, q)]
        if query.shape:
            same = [d for d in found if d.shape == query.shape]
            if same:
                found = same
            elif query.colour is None:
                return None, 0.0, f'no {query.shape} found'
        if not found:
            return None, 0.0, f'no {query.colour or ""} object found'.replace('  ', ' ')
        best = max(found, key=lambda d: d.area)
        conf = 1.0 / len(found)
        return best.centre, conf, f'{len(found)} candidate(s)'
