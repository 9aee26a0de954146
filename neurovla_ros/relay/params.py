"""Parameters of the ``relay`` node (ROS-free schema; see docs/parameters.md)."""
from __future__ import annotations

from ..common.params import Param
from ..common.relay import MAX_DELAY_S

NODE_NAME = 'relay'
IN_PREFIX = 'relay_in/'       # the relay subscribes to IN_PREFIX + topic, publishes topic
# what the cortex sends to the body side: `bringup relay:=true` remaps these cortex outputs
TOPICS = ('cortex/goal_pose@geometry_msgs/msg/PoseStamped',
          'cortex/joint_goal@trajectory_msgs/msg/JointTrajectory',
          'gripper_controller/commands@std_msgs/msg/Float64MultiArray')

PARAMS: list[Param] = [
    Param('loss', 0.0, 'Probability that a message is dropped (each message drawn on its own, '
          'seeded)', 0.0, 1.0),
    Param('delay_s', 0.0, 'Delay added to every message that is not dropped [s] (first in, '
          'first out: a shortened delay lets no message overtake an older one)', 0.0,
          MAX_DELAY_S),
    Param('seed', 0, 'Seed of the drop draws', 0, 2**31 - 1, read_only=True),
    Param('topics', list(TOPICS), 'Relayed topics, each TOPIC@TYPE (relative names): '
          'subscribes relay_in/TOPIC, publishes TOPIC, the serialized message unchanged',
          read_only=True),
]


def parse_topics(entries) -> list[tuple[str, str]]:
    """``[(topic, 'pkg/msg/Type'), ...]`` from TOPIC@TYPE entries; ValueError naming a bad one."""
    out = []
    for e in entries:
        topic, sep, kind = str(e).partition('@')
        parts = kind.split('/')
        if not sep or not topic or topic.startswith('/') or len(parts) != 3 or not all(parts):
            raise ValueError(f'topics: {e!r} is not TOPIC@pkg/msg/Type with a relative topic')
        out.append((topic, kind))
    if len({t for t, _ in out}) != len(out):
        raise ValueError(f'topics: a topic is listed twice in {list(entries)}')
    return out
