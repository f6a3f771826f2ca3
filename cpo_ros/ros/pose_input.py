"""The robot's pose as the task sees it: checked, placed in the task frame, with velocities.

`pose_source: odom` reads nav_msgs/Odometry on `odom` (velocities from its twist);
`pose_source: pose` reads geometry_msgs/PoseWithCovarianceStamped on `pose` (AMCL,
slam_toolbox, motion capture; velocities from differences of successive poses by their
header stamps). The task sits in `task_frame` with its origin at `task_origin` [x, y, yaw]:
the pose is expressed relative to that origin, so wheel odometry's drift cannot carry the safe
area along when the pose comes from a fixed frame such as map.

A pose in another frame than task_frame is refused (stop), as is one whose header.stamp is older
than pose_timeout_s (plus stamp_tolerance_s for clock offset between machines) or ahead of the
clock by more than the tolerance, or that stopped arriving, or that came while another node
publishes on the topic too (cpo_ros.ros.sole_publisher). Arrival is timed on the steady clock
on a robot, on the simulation clock in training (cpo_ros.ros.watchdog.ArrivalClock).
"""

import math

from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
import numpy as np
from rclpy.node import Node

from cpo_ros.ros import qos
from cpo_ros.ros.conversions import odometry_to_pose_twist, quaternion_to_yaw
from cpo_ros.ros.sole_publisher import SolePublisher
from cpo_ros.ros.watchdog import InputGate


def to_task_frame(pose: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Return pose (x, y, yaw) in a frame whose origin sits at `origin` (x, y, yaw)."""
    dx, dy = pose[0] - origin[0], pose[1] - origin[1]
    c, s = math.cos(origin[2]), math.sin(origin[2])
    yaw = (pose[2] - origin[2] + math.pi) % (2.0 * math.pi) - math.pi
    return np.array([c * dx + s * dy, -s * dx + c * dy, yaw])


def from_task_frame(xy: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Return points (N, 2) of the task's coordinates in the frame holding the task."""
    c, s = math.cos(origin[2]), math.sin(origin[2])
    xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
    return np.stack([origin[0] + c * xy[:, 0] - s * xy[:, 1],
                     origin[1] + s * xy[:, 0] + c * xy[:, 1]], axis=1)


def twist_from_poses(previous: np.ndarray, current: np.ndarray, dt: float) -> np.ndarray:
    """Return (forward velocity, yaw rate) between two poses dt seconds apart."""
    heading = previous[2]
    forward = ((current[0] - previous[0]) * math.cos(heading)
               + (current[1] - previous[1]) * math.sin(heading))
    dyaw = (current[2] - previous[2] + math.pi) % (2.0 * math.pi) - math.pi
    return np.array([forward / dt, dyaw / dt])


def stamp_seconds(stamp) -> float:
    """Return a builtin_interfaces/Time in seconds; ValueError for one that is no time."""
    if stamp.sec < 0 or stamp.nanosec >= 1_000_000_000:
        raise ValueError(f'header.stamp sec = {stamp.sec}, nanosec = {stamp.nanosec} is no time '
                         f'(need sec >= 0 and nanosec < 1e9)')
    return stamp.sec + stamp.nanosec * 1e-9


class PoseInput:
    """Subscribe to the configured pose topic and tell the pose, or why it cannot be used."""

    def __init__(self, node: Node, p: dict) -> None:
        self.node = node
        self.source = p['pose_source']
        self.task_frame = p['task_frame']
        origin = p['task_origin']
        if len(origin) != 3:
            raise ValueError(f'{node.get_name()}: parameter task_origin = {list(origin)!r} needs '
                             f'3 values [x, y, yaw] in task_frame')
        self.origin = np.asarray(origin, dtype=np.float64)
        self.timeout = p['pose_timeout_s']
        self.pose: np.ndarray | None = None
        """Latest pose in task coordinates (x, y, yaw)."""
        self.twist: np.ndarray | None = None
        self._previous: tuple[float, np.ndarray] | None = None
        self.topic = 'odom' if self.source == 'odom' else 'pose'
        self.gate = InputGate(node, self.topic, self.timeout, p['stamp_tolerance_s'],
                              'pose_timeout_s')
        msg_type = Odometry if self.source == 'odom' else PoseWithCovarianceStamped
        self.sole = SolePublisher(node, self.topic, self.timeout)
        # Best effort matches reliable and best-effort drivers alike.
        self.sole.subscription = node.create_subscription(
            msg_type, self.topic, self._on_msg, qos.SENSOR,
            event_callbacks=self.sole.event_callbacks())
        self.callbacks: list = []

    @property
    def rejected(self) -> int:
        """Messages refused so far."""
        return self.gate.rejected

    def _refuse(self, reason: str, count: bool = True) -> None:
        # Held still for pose_timeout_s (InputGate); fail safe: never act on the last good pose.
        self.gate.refuse(reason, count)
        self.pose = self.twist = None

    def _on_msg(self, msg) -> None:
        frame = msg.header.frame_id
        if frame != self.task_frame:
            self._refuse(f"frame mismatch: {self.topic} is in frame '{frame}', task_frame is "
                         f"'{self.task_frame}'")
        else:
            try:
                self._accept(msg)
            except ValueError as exc:
                self._refuse(str(exc))
            else:
                self._refuse_unless_sole()
        for callback in self.callbacks:
            callback()

    def _refuse_unless_sole(self) -> None:
        """Drop the pose just taken while another node publishes there too (held, not counted)."""
        reason = self.sole.check()
        if reason is not None:
            self._refuse(reason, count=False)
            self._previous = None  # a velocity never starts from a pose not taken

    def _accept(self, msg) -> None:
        stamp = stamp_seconds(msg.header.stamp)
        # Refused (counted, held) rather than taken and found stale: fresh poses between old
        # ones must not move the robot, and a pose from the future must not become the
        # reference of the next ones.
        self.gate.check_stamp(stamp)
        if self.source == 'odom':
            raw, twist = odometry_to_pose_twist(msg)
        else:
            p, o = msg.pose.pose.position, msg.pose.pose.orientation
            raw = np.array([p.x, p.y, quaternion_to_yaw(o.x, o.y, o.z, o.w)])
            if not np.all(np.isfinite(raw)):
                raise ValueError('pose holds non-finite values')
            twist = self.twist
            previous, self._previous = self._previous, (stamp, raw)
            if previous is not None and stamp > previous[0]:
                twist = twist_from_poses(previous[1], raw, stamp - previous[0])
            elif previous is not None and stamp < previous[0]:
                # Refused, but the reference of the next pose: a source that restarted its
                # clock (a localisation restart, a replayed bag) is followed again after the
                # refusal's hold (pose_timeout_s).
                raise ValueError('header.stamp went back in time')
            if twist is None:
                self.gate.take(stamp)
                self.gate.refused = 'one pose so far: velocity from pose differences needs two'
                return
        self.pose = to_task_frame(raw, self.origin)
        self.twist = twist
        self.gate.take(stamp)

    def stop_reason(self) -> str | None:
        """Return why the pose cannot be used now (stop), or None when it is fresh and valid."""
        return self.gate.stop_reason()
