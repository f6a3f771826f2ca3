"""sensor_msgs/LaserScan <-> numpy, and the scan input of the deploy's nodes.

`laser_scan_fields` checks a message (a malformed one raises ValueError, which the nodes count
and drop), `laser_scan_to_ranges` resamples any scanner onto the policy's rays
(cpo_ros.tasks.scan.resample, REP 117), `ranges_to_laser_scan` builds the stand-in's message.
`ScanInput` subscribes to `scan` and tells the latest scan points in the robot frame, or why
the robot must stop (no scan, stale by header.stamp or arrival, another frame, malformed,
without measurements, or while another node publishes scans too).
"""

from dataclasses import dataclass
import math

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import LaserScan

from cpo_ros.deploy.scan_guard import scan_points
from cpo_ros.ros import qos
from cpo_ros.ros.pose_input import stamp_seconds
from cpo_ros.ros.sole_publisher import SolePublisher
from cpo_ros.ros.watchdog import InputGate
from cpo_ros.tasks import scan as scan_rays

MAX_RAYS = 100_000
"""Longer scans are refused as malformed (a bound on the work a message can cause)."""


@dataclass(frozen=True)
class ScanFields:
    """A checked LaserScan as numpy: readings and geometry."""

    ranges: np.ndarray
    angle_min: float
    angle_increment: float
    range_min: float
    range_max: float
    stamp: float
    frame_id: str


def laser_scan_fields(msg: LaserScan) -> ScanFields:
    """Return a LaserScan's fields; ValueError naming what is malformed."""
    n = len(msg.ranges)
    if not 1 <= n <= MAX_RAYS:
        raise ValueError(f'LaserScan with {n} ranges (allowed 1 to {MAX_RAYS})')
    a0, inc, a1 = float(msg.angle_min), float(msg.angle_increment), float(msg.angle_max)
    if not (math.isfinite(a0) and math.isfinite(inc) and math.isfinite(a1)) or inc == 0.0:
        raise ValueError(f'LaserScan angles angle_min = {a0}, angle_max = {a1}, '
                         f'angle_increment = {inc}: need finite angles and a non-zero increment')
    if n > 1 and abs(a0 + (n - 1) * inc - a1) > abs(inc) + 1e-6:
        raise ValueError(f'LaserScan of {n} ranges from angle_min = {a0:.4f} by '
                         f'angle_increment = {inc:.6f} does not end at angle_max = {a1:.4f}')
    if abs((n - 1) * inc) > 2 * math.pi + abs(inc) + 1e-6:
        raise ValueError(f'LaserScan spans {abs((n - 1) * inc):.3f} rad, more than a turn')
    r0, r1 = float(msg.range_min), float(msg.range_max)
    if not (math.isfinite(r0) and math.isfinite(r1) and 0.0 <= r0 < r1):
        raise ValueError(f'LaserScan range_min = {r0}, range_max = {r1}: need finite '
                         f'0 <= range_min < range_max')
    return ScanFields(np.asarray(msg.ranges, dtype=np.float64), a0, inc, r0, r1,
                      stamp_seconds(msg.header.stamp), msg.header.frame_id)


def laser_scan_to_ranges(msg: LaserScan, spec: scan_rays.ScanSpec) -> np.ndarray:
    """Return (num_rays,) ranges of a LaserScan on the policy's rays (see scan.resample)."""
    f = laser_scan_fields(msg)
    return scan_rays.resample(f.ranges, f.angle_min, f.angle_increment, spec, f.range_min,
                              f.range_max)


def ranges_to_laser_scan(ranges: np.ndarray, angle_min: float, angle_increment: float,
                         range_min: float, range_max: float, frame_id: str, stamp,
                         scan_time: float = 0.0) -> LaserScan:
    """Return a LaserScan of readings (REP 117 values: +inf no return, -inf too close, NaN)."""
    ranges = np.asarray(ranges, dtype=np.float32).ravel()
    msg = LaserScan(angle_min=float(angle_min),
                    angle_max=float(angle_min + (ranges.size - 1) * angle_increment),
                    angle_increment=float(angle_increment), time_increment=0.0,
                    scan_time=float(scan_time), range_min=float(range_min),
                    range_max=float(range_max))
    msg.ranges = ranges.tolist()
    msg.header.frame_id = frame_id
    msg.header.stamp = stamp
    return msg


class ScanInput:
    """Subscribe to `scan`; keep the latest points (robot frame) and ranges on the policy's rays.

    p holds laser_frame, laser_pose, scan_timeout_s, scan_min_valid_share and
    stamp_tolerance_s. spec (the policy's
    rays) may be None when only the points are needed (the scan guard).
    """

    def __init__(self, node: Node, p: dict, spec: scan_rays.ScanSpec | None = None,
                 topic: str = 'scan') -> None:
        self.node = node
        self.frame = p['laser_frame']
        pose = list(p['laser_pose'])
        if len(pose) != 3:
            raise ValueError(f'{node.get_name()}: parameter laser_pose = {pose!r} needs 3 values '
                             f'[x, y, yaw] of the laser in the robot frame')
        self.laser_pose = tuple(float(v) for v in pose)
        self.timeout = p['scan_timeout_s']
        self.min_valid_share = p['scan_min_valid_share']
        self.spec = spec
        self.topic = topic
        self.gate = InputGate(node, topic, self.timeout, p['stamp_tolerance_s'], 'scan_timeout_s')
        self.points: np.ndarray | None = None
        self.ranges: np.ndarray | None = None
        self.too_close = False
        """The latest scan holds a reading nearer than its range_min (-inf, REP 117)."""
        self.received = 0
        self.callbacks: list = []
        self.sole = SolePublisher(node, topic, self.timeout)
        # Best effort takes reliable and best-effort publishers alike (drivers, the ros2 CLI).
        self.sole.subscription = node.create_subscription(
            LaserScan, topic, self._on_msg, qos.SENSOR,
            event_callbacks=self.sole.event_callbacks())

    def _on_msg(self, msg: LaserScan) -> None:
        try:
            if msg.header.frame_id != self.frame:
                raise ValueError(f"frame mismatch: {self.topic} is in frame "
                                 f"'{msg.header.frame_id}', laser_frame is '{self.frame}'")
            f = laser_scan_fields(msg)
            self.gate.check_stamp(f.stamp)
            valid = int(np.count_nonzero(scan_rays.classify(f.ranges, f.range_min,
                                                            f.range_max)[0]))
            if valid == 0 or valid < self.min_valid_share * f.ranges.size:
                # All NaN, 0 or beyond the limits: no sight of anything, not free space.
                raise ValueError(f'{valid} of {f.ranges.size} readings are measurements (the '
                                 f'rest NaN or outside [range_min, range_max]); '
                                 f'scan_min_valid_share is {self.min_valid_share:g}')
            points = scan_points(f.ranges, f.angle_min, f.angle_increment, f.range_min,
                                 f.range_max, self.laser_pose)
            ranges = None
            if self.spec is not None:
                ranges = scan_rays.resample(f.ranges, f.angle_min + self.laser_pose[2],
                                            f.angle_increment, self.spec, f.range_min,
                                            f.range_max)
        except ValueError as exc:
            # Held still for scan_timeout_s (InputGate); fail safe: never guard with an old scan.
            self.gate.refuse(str(exc))
            self.points = self.ranges = None
        else:
            self.points, self.ranges = points, ranges
            self.too_close = bool(np.any(f.ranges == -np.inf))
            self.received += 1
            self.gate.take(f.stamp)
            sole = self.sole.check()
            if sole is not None:  # another node publishes scans too: held, not counted
                self.gate.refuse(sole, count=False)
                self.points = self.ranges = None
        for callback in self.callbacks:
            callback()

    @property
    def rejected(self) -> int:
        """Scans refused so far."""
        return self.gate.rejected

    def touching(self, radius: float) -> bool:
        """Return whether the latest scan shows the body touched.

        Touched: a return within radius of the base frame's origin, or a reading too near to
        measure (the cautious reading).
        """
        if self.points is None:
            return False
        return self.too_close or bool(
            len(self.points) and np.min(np.hypot(*self.points.T)) <= radius)

    def stop_reason(self) -> str | None:
        """Return why the scan cannot be used now (stop), or None when it is fresh and valid."""
        return self.gate.stop_reason()
