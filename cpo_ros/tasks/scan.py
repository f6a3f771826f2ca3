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

from cpo_ros.validation import check_range


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
    if centres.shape[1] == 0:
        return np.full((n, spec.num_rays), np.inf)
    rel = centres - pose[:, None, :2]
    cos_yaw, sin_yaw = np.cos(pose[:, 2:3]), np.sin(pose[:, 2:3])
    fx = rel[..., 0] * cos_yaw + rel[..., 1] * sin_yaw     # (N, K) centres in the robot frame
    fy = rel[..., 1] * cos_yaw - rel[..., 0] * sin_yaw
    c = fx * fx + fy * fy - np.asarray(radius, dtype=np.float64) ** 2  # < 0: robot inside
    if alive is not None:
        c = np.where(np.asarray(alive, bool), c, np.inf)
    angles = spec.angles()
    # Ray t (cos a, sin a) meets the circle where t^2 - 2 t proj + c = 0: the nearer root.
    proj = (fx[:, None, :] * np.cos(angles)[None, :, None]
            + fy[:, None, :] * np.sin(angles)[None, :, None])   # (N, R, K)
    disc = proj * proj - c[:, None, :]
    near = proj - np.sqrt(np.maximum(disc, 0.0))
    near[(disc < 0.0) | (near < 0.0)] = np.inf
    dist = near.min(axis=2)
    dist[(c <= 0.0).any(axis=1)] = 0.0
    dist[dist > spec.range_max] = np.inf
    return dist


def closeness(ranges: np.ndarray, spec: ScanSpec) -> np.ndarray:
    """Return float32 1 - range / range_max per ray: 1 touching, 0 at range_max or no return."""
    # fmin treats NaN as no return; negative ranges (invalid) read as touching.
    near = np.maximum(np.fmin(np.asarray(ranges, dtype=np.float64), spec.range_max), 0.0)
    return (1.0 - near / spec.range_max).astype(np.float32)


def classify(ranges: np.ndarray, range_min: float,
             range_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Return (usable, value) of LaserScan readings as REP 117 defines them.

    A finite reading within [range_min, range_max] is a return at that range; -inf (too close
    to measure) a return at range_min; +inf no return within range (value +inf). NaN and finite
    readings outside the limits are not measurements (usable False).
    """
    ranges = np.asarray(ranges, dtype=np.float64)
    finite = np.isfinite(ranges)
    usable = (finite & (ranges >= range_min) & (ranges <= range_max)) | np.isinf(ranges)
    value = np.where(ranges == -np.inf, range_min, ranges)
    return usable, value


def resample(ranges: np.ndarray, angle_min: float, angle_increment: float, spec: ScanSpec,
             range_min: float = 0.0, range_max: float = math.inf) -> np.ndarray:
    """Return (num_rays,) ranges on spec's rays from a real LaserScan's fields.

    Any ray count, angle range and direction (a negative angle_increment runs clockwise). Each
    of spec's rays reads the usable reading nearest to it in angle, within one of the scan's
    own increments (the nearer return of two equally near): what a simulated ray along it
    measures, up to the scanner's resolution; a NaN or out-of-limits reading is thus bridged by
    its neighbour (see classify). A ray that no
    reading covers (outside the scanner's field of view) or that reads beyond spec.range_max
    has no return (+inf).
    """
    ranges = np.asarray(ranges, dtype=np.float64).ravel()
    if ranges.size == 0 or not math.isfinite(angle_min) or not math.isfinite(angle_increment) \
            or angle_increment == 0.0:
        raise ValueError('scan needs ranges and finite angle_min, non-zero angle_increment')
    if not (math.isfinite(range_min) and range_min >= 0.0 and range_max > range_min):
        raise ValueError(f'scan needs 0 <= range_min < range_max, got range_min = {range_min}, '
                         f'range_max = {range_max}')
    usable, value = classify(ranges, range_min, range_max)
    scan_angles = angle_min + angle_increment * np.arange(ranges.size)
    gap = np.abs((scan_angles[None, :] - spec.angles()[:, None] + math.pi) % (2 * math.pi)
                 - math.pi)
    gap = np.where(usable[None, :] & (gap <= abs(angle_increment) + 1e-9), gap, np.inf)
    # Between two readings equally near in angle, the nearer return (the cautious choice).
    tied = gap <= gap.min(axis=1, keepdims=True) + 1e-9
    out = np.where(tied & np.isfinite(gap), value[None, :], np.inf).min(axis=1)
    out[out > spec.range_max] = np.inf
    return out
