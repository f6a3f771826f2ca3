"""A ring of range readings shaped like sensor_msgs/LaserScan, and the policy's view of it.

One definition for simulation and robot: the simulator casts rays from the robot against the
task's discs (`disc_ranges`, pure numpy, robot frame: angle 0 is the heading, angles grow
counter-clockwise as in REP 103); a robot passes the `ranges` of a real LaserScan through
`resample` onto the same rays. Both then go through `closeness`, which is what the policy sees.
Ranges follow the LaserScan convention: +inf where nothing returns within range_max (REP 117).
"""

from dataclasses import dataclass
import math

import numpy as np

from cpo_ros.core.validation import check_range


@dataclass(frozen=True)
class ScanSpec:
    """The rays of a scan, with sensor_msgs/LaserScan's field names (robot frame)."""

    num_rays: int = 16
    """Readings per scan (len(ranges))."""
    angle_min: float = -math.pi
    """Angle of the first ray [rad]; 0 is straight ahead."""
    range_max: float = 5.0
    """Farther returns read +inf [m]."""
    range_min: float = 0.0
    """Nearer returns of a real scan are discarded as invalid [m]; simulated rays start at 0."""

    @property
    def angle_increment(self) -> float:
        """Return the angle between neighbouring rays [rad]: the full circle, evenly split."""
        return 2.0 * math.pi / self.num_rays

    @property
    def angle_max(self) -> float:
        """Return the angle of the last ray [rad]."""
        return self.angle_min + (self.num_rays - 1) * self.angle_increment

    def angles(self) -> np.ndarray:
        """Return (num_rays,) ray angles [rad] in the robot frame."""
        return self.angle_min + self.angle_increment * np.arange(self.num_rays)

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        check_range('num_rays', self.num_rays, 1, 4096, integer=True)
        check_range('angle_min', self.angle_min, -2 * math.pi, 2 * math.pi)
        check_range('range_max', self.range_max, 0.0, 1e4, low_open=True)
        check_range('range_min', self.range_min, 0.0, self.range_max, high_open=True)


def disc_ranges(pose: np.ndarray, centres: np.ndarray, radius: float | np.ndarray,
                spec: ScanSpec, alive: np.ndarray | None = None) -> np.ndarray:
    """Return (N, num_rays) ranges from poses (N, 3) to the discs centres (N, K, 2).

    A ray reads the distance to the first disc boundary it meets, +inf beyond range_max; a robot
    inside a disc reads 0 on every ray (it is in the hazard). radius is one number or (K,) or
    (N, K); alive (N, K) masks discs out.
    """
    pose = np.atleast_2d(np.asarray(pose, dtype=np.float64))
    n = pose.shape[0]
    centres = np.asarray(centres, dtype=np.float64).reshape(n, -1, 2)
    out = np.full((n, spec.num_rays), np.inf)
    if centres.shape[1] == 0:
        return out
    radius = np.broadcast_to(np.asarray(radius, dtype=np.float64), centres.shape[:2])
    rel = centres - pose[:, None, :2]                                   # (N, K, 2) world frame
    theta = pose[:, 2:3] + spec.angles()[None, :]                       # (N, R) world ray angle
    ux, uy = np.cos(theta), np.sin(theta)
    # Ray p + t u meets |p + t u - c| = r where t^2 - 2 t (u . rel) + |rel|^2 - r^2 = 0.
    proj = ux[:, :, None] * rel[:, None, :, 0] + uy[:, :, None] * rel[:, None, :, 1]  # (N,R,K)
    c = (rel ** 2).sum(-1) - radius ** 2                                 # (N, K), < 0: inside
    disc = proj ** 2 - c[:, None, :]
    near = proj - np.sqrt(np.maximum(disc, 0.0))
    hit = (disc >= 0.0) & (near >= 0.0)
    if alive is not None:
        hit &= np.asarray(alive, bool)[:, None, :]
    dist = np.where(hit, near, np.inf).min(axis=2)
    inside = c <= 0.0
    if alive is not None:
        inside &= np.asarray(alive, bool)
    dist[inside.any(axis=1)] = 0.0
    return np.where(dist <= spec.range_max, dist, np.inf)


def closeness(ranges: np.ndarray, spec: ScanSpec) -> np.ndarray:
    """Return float32 1 - range / range_max per ray: 1 touching, 0 at range_max or no return."""
    # fmin treats NaN as no return; negative ranges (invalid) read as touching.
    near = np.maximum(np.fmin(np.asarray(ranges, dtype=np.float64), spec.range_max), 0.0)
    return (1.0 - near / spec.range_max).astype(np.float32)


def resample(ranges: np.ndarray, angle_min: float, angle_increment: float, spec: ScanSpec,
             range_min: float = 0.0, range_max: float = math.inf) -> np.ndarray:
    """Return (num_rays,) ranges on spec's rays from a real LaserScan's fields.

    Each of spec's rays takes the nearest valid reading of the scan within half a ray spacing
    of its angle (a conservative minimum: an obstacle between two rays is not missed). Readings
    that are NaN, below range_min or above range_max of the scan (or of spec) are no return.
    """
    ranges = np.asarray(ranges, dtype=np.float64).ravel()
    if ranges.size == 0 or not math.isfinite(angle_min) or not math.isfinite(angle_increment) \
            or angle_increment == 0.0:
        raise ValueError('scan needs ranges and finite angle_min, non-zero angle_increment')
    valid = np.isfinite(ranges) & (ranges >= max(range_min, spec.range_min)) & (
        ranges <= min(range_max, spec.range_max))
    scan_angles = angle_min + angle_increment * np.arange(ranges.size)
    diff = scan_angles[None, :] - spec.angles()[:, None]
    diff = (diff + math.pi) % (2 * math.pi) - math.pi
    near = np.abs(diff) <= spec.angle_increment / 2 + 1e-12
    return np.where(near & valid[None, :], ranges[None, :], np.inf).min(axis=1)
