"""The sim's camera: a small rclpy node in its own process, rendering what the physics shares.

The physics process (the ``sim`` node) owns a :class:`CameraProcess`: it starts the renderer
(``multiprocessing`` spawn, a clean interpreter with no inherited DDS or GL state), shares the
joint/object positions at the camera rate (:class:`.camera.StateShare`) and wakes it through a
pipe. The renderer keeps a copy of the same :class:`~.world.World` (same seed, so the same
objects), renders the newest state from each of its cameras and publishes each one's
``sensor_msgs/Image`` (rgb8) and ``CameraInfo`` under the node name ``<sim node>_camera``. It
ends when the pipe closes.
"""
from __future__ import annotations

import array
import os
import signal
import threading

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from . import camera as camera_mod

IMAGE_QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE,
                       history=HistoryPolicy.KEEP_LAST)


class CameraProcess:
    """The renderer's process, seen from the physics process."""

    def __init__(self, nq: int, seed: int, n_objects: int, width: int, height: int,
                 cameras: list[tuple[str, tuple[str, str]]], node_name: str):
        """``cameras``: (MuJoCo camera name, (image topic, camera_info topic)) each."""
        self.share = camera_mod.StateShare(nq)
        reader, self._conn = camera_mod.SPAWN.Pipe(duplex=False)
        self._proc = camera_mod.SPAWN.Process(
            target=camera_process, name='sim_camera', daemon=True,
            args=(seed, n_objects, width, height, list(cameras), self.share, reader, node_name))
        # the child ignores SIGINT from its first instruction (a Ctrl-C reaches the whole
        # process group: during its imports it would print a KeyboardInterrupt traceback);
        # SIG_IGN is inherited through the spawn's exec and kept by the new interpreter
        main = threading.current_thread() is threading.main_thread()  # signal.signal's rule
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            self._proc.start()
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        reader.close()

    def frame(self, qpos, stamp_ns: int) -> bool:
        """Hand the renderer the state ``qpos`` of time ``stamp_ns``; False if it has died."""
        self.share.write(qpos, stamp_ns)
        try:
            self._conn.send_bytes(b'1')
        except (BrokenPipeError, OSError):
            return False
        return True

    def stop(self) -> None:
        self._conn.close()  # the worker sees EOF and exits
        self._proc.join(timeout=3.0)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=2.0)


def _stamp(t, ns: int) -> None:
    t.sec, t.nanosec = ns // 1_000_000_000, ns % 1_000_000_000


def _publisher(node, world, camera_name: str, topics, width: int, height: int):
    """``publish(image, stamp_ns)`` of one camera: its Image and CameraInfo, messages made
    once and written in place."""
    pub_img = node.create_publisher(Image, topics[0], IMAGE_QOS)
    pub_info = node.create_publisher(CameraInfo, topics[1], IMAGE_QOS)
    info_d = world.camera_info(camera_name)
    info = CameraInfo()
    info.header.frame_id = info_d['frame_id']
    info.width, info.height = info_d['width'], info_d['height']
    info.distortion_model = info_d['distortion_model']
    info.d = info_d['d']
    info.k, info.r, info.p = (np.array(info_d[x], float) for x in ('k', 'r', 'p'))
    img = Image()
    img.header.frame_id = info.header.frame_id
    img.height, img.width, img.encoding, img.step = height, width, 'rgb8', 3 * width
    img.data = array.array('B', bytes(3 * width * height))
    view = np.frombuffer(img.data, dtype=np.uint8).reshape(height, width, 3)

    def publish(image, stamp_ns):
        view[:] = image
        _stamp(img.header.stamp, stamp_ns)
        info.header.stamp = img.header.stamp
        pub_img.publish(img)
        pub_info.publish(info)
    return publish


def camera_process(seed, n_objects, width, height, cameras, share, conn, node_name):
    """Body of the rendering process: a World copy, a small rclpy node, Image + CameraInfo for
    each of ``cameras``."""
    os.environ.setdefault('LP_NUM_THREADS', '0')  # llvmpipe renders in this thread: no helper
    # threads waking on both cores at 15 Hz (they delayed the 1 kHz loops' wake-ups)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ends when the physics process closes the pipe
    from rclpy.signals import SignalHandlerOptions

    from .world import World
    ctx = rclpy.Context()
    # args=[]: the spawned interpreter carries the parent's sys.argv, whose --ros-args
    # (e.g. -r __node:=sim) would rename this node too
    rclpy.init(args=[], context=ctx, signal_handler_options=SignalHandlerOptions.NO)
    node = Node(node_name, context=ctx)
    try:
        # no sleeping: this copy only poses bodies (sleeping ones would keep stale poses)
        world = World(seed=seed, n_objects=n_objects, cameras=True, width=width, height=height,
                      sleep=False)
        publishers = {name: _publisher(node, world, name, topics, width, height)
                      for name, topics in cameras}

        def publish(name, image, stamp_ns):
            publishers[name](image, stamp_ns)

        camera_mod.render_loop(world, share, conn, list(publishers), publish,
                               alive=lambda: ctx.ok())
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
