"""The scan guard: refuse commands that would bring the robot's body too near a scan point.

The scan is in the robot's frame, so the guard needs no map and no global pose: it rolls the
command out from the robot's own origin (a unicycle over a short horizon, as the safe-area
shield does) and measures the distance from the body (a disc of body_radius_m around base_link)
to every scan point. A command passes when that distance stays at least margin_m along the
rollout, or, when the body is already nearer, when the rollout does not bring it nearer still
(so a robot that stopped close to a wall can still back away or drive along it). A refused
command keeps its yaw rate with zero forward speed: turning in place never moves a disc body
toward anything. The caller stops the robot when the scan is stale or missing.
"""

from dataclasses import dataclass
import math

import numpy as np

from cpo_ros.tasks import scan as scan_rays
from cpo_ros.validation import check_range


@dataclass(frozen=True)
class ScanGuardConfig:
    """How far the guard looks ahead and how much room it keeps."""

    margin_m: float = 0.1
    """Free space a passing command keeps between the body and any scan point [m]."""
    body_radius_m: float = 0.1
    """Radius of a disc around base_link that holds the robot's body [m]."""
    horizon_s: float = 0.8
    """Look-ahead of the command rollout [s] (latency plus stopping distance)."""
    step_s: float = 0.05
    """Integration step of the rollout [s]."""

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        check_range('margin_m', self.margin_m, 0.0, 100.0)
        check_range('body_radius_m', self.body_radius_m, 0.0, 100.0)
        check_range('horizon_s', self.horizon_s, 0.0, 10.0, low_open=True)
        check_range('step_s', self.step_s, 0.0, self.horizon_s, low_open=True)


def scan_points(ranges: np.ndarray, angle_min: float, angle_increment: float,
                range_min: float, range_max: float,
                laser_pose: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Return (K, 2) points in the robot frame from a LaserScan's readings.

    REP 117: returns within limits are points, -inf (too close) a point at range_min, +inf and
    unusable readings none. laser_pose is the laser's (x, y, yaw) in the robot frame.
    """
    ranges = np.asarray(ranges, dtype=np.float64).ravel()
    usable, value = scan_rays.classify(ranges, range_min, range_max)
    hit = usable & np.isfinite(value)
    angles = angle_min + angle_increment * np.arange(ranges.size)[hit] + laser_pose[2]
    r = value[hit]
    return np.stack([laser_pose[0] + r * np.cos(angles), laser_pose[1] + r * np.sin(angles)],
                    axis=1)


def body_rollout(cmd: np.ndarray, horizon_s: float, step_s: float) -> np.ndarray:
    """Return (K + 1, 2) positions of base_link from the origin under a constant (v, w)."""
    v, w = float(cmd[0]), float(cmd[1])
    x = y = yaw = 0.0
    out = [(0.0, 0.0)]
    for _ in range(max(1, int(math.ceil(horizon_s / step_s)))):
        x += v * math.cos(yaw) * step_s
        y += v * math.sin(yaw) * step_s
        yaw += w * step_s
        out.append((x, y))
    return np.asarray(out)


def clearance(points: np.ndarray, positions: np.ndarray, body_radius: float) -> np.ndarray:
    """Return (len(positions),) free space between the body at each position and the points."""
    if len(points) == 0:
        return np.full(len(positions), np.inf)
    d = np.hypot(positions[:, None, 0] - points[None, :, 0],
                 positions[:, None, 1] - points[None, :, 1])
    return d.min(axis=1) - body_radius


def guard_command(points: np.ndarray, cmd: np.ndarray,
                  config: ScanGuardConfig) -> tuple[np.ndarray, bool]:
    """Return (command to send, whether the guard replaced it) for scan points (K, 2)."""
    cmd = np.asarray(cmd, dtype=np.float64)
    free = clearance(points, body_rollout(cmd, config.horizon_s, config.step_s),
                     config.body_radius_m)
    if free[1:].min() >= config.margin_m or free[1:].min() >= free[0] - 1e-9:
        return cmd, False
    return np.array([0.0, cmd[1]]), True
