"""A 2D laser scanner simulated by MuJoCo ray casting against each robot's arena.

Rays leave the robot's centre in the plane of the robot (REP 103: angle 0 along the heading,
counter-clockwise positive) and are cast with `mj_multiRay` against the robot's arena (its walls
and obstacles, the geoms it collides with, mirrored in a one-arena scene: Arenas.scenes), so a
robot never sees its own body, the floor or another robot's arena. Readings follow
sensor_msgs/LaserScan and REP 117: +inf where nothing returns within range_max, -inf for a
return nearer than range_min, NaN for a dropped reading; Gaussian noise is added to returns.
"""

from dataclasses import dataclass
import math

import mujoco
import numpy as np

from cpo_ros.sim.arena import ROBOT_HEIGHT
from cpo_ros.sim.robot import PointRobots
from cpo_ros.validation import check_range


@dataclass(frozen=True)
class RangeSensorSpec:
    """The rays and imperfections of a scanner (a robot profile's scan_* keys)."""

    num_rays: int = 16
    """Readings per scan."""
    fov: float = 2 * math.pi
    """Field of view centred on the heading [rad]; 2 pi is a full ring."""
    range_min: float = 0.0
    """Nearer returns read -inf (REP 117: too close to measure) [m]."""
    range_max: float = 4.0
    """Farther returns read +inf (no return) [m]."""
    noise_std: float = 0.0
    """Standard deviation of the Gaussian range noise on a return [m]."""
    dropout: float = 0.0
    """Probability that a reading is lost (NaN)."""
    first_angle: float | None = None
    """Angle of the first ray [rad]; None: -pi for a full ring, else -fov / 2 (centred)."""

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        check_range('num_rays', self.num_rays, 1, 4096, integer=True)
        check_range('fov', self.fov, 0.0, 2 * math.pi, low_open=True)
        check_range('range_max', self.range_max, 0.0, 1e3, low_open=True)
        check_range('range_min', self.range_min, 0.0, self.range_max, high_open=True)
        check_range('noise_std', self.noise_std, 0.0, 10.0)
        check_range('dropout', self.dropout, 0.0, 1.0, high_open=True)
        if self.first_angle is not None:
            check_range('first_angle', self.first_angle, -2 * math.pi, 2 * math.pi)

    @property
    def full_circle(self) -> bool:
        """Return whether the rays cover the whole ring (the last ray is not the first)."""
        return self.fov >= 2 * math.pi - 1e-9

    @property
    def angle_increment(self) -> float:
        """Return the angle between neighbouring rays [rad]."""
        if self.full_circle:
            return 2 * math.pi / self.num_rays
        return self.fov / max(self.num_rays - 1, 1)

    @property
    def angle_min(self) -> float:
        """Return the angle of the first ray [rad] (LaserScan angle_min)."""
        if self.first_angle is not None:
            return self.first_angle
        return -math.pi if self.full_circle else -self.fov / 2 if self.num_rays > 1 else 0.0

    @property
    def angle_max(self) -> float:
        """Return the angle of the last ray [rad] (LaserScan angle_max)."""
        return self.angle_min + (self.num_rays - 1) * self.angle_increment

    def angles(self) -> np.ndarray:
        """Return (num_rays,) ray angles in the robot frame [rad]."""
        return self.angle_min + self.angle_increment * np.arange(self.num_rays)


class RangeSensor:
    """Cast one scan per robot of a PointRobots model built with an arena."""

    def __init__(self, robots: PointRobots, spec: RangeSensorSpec, seed: int = 0) -> None:
        if robots.arenas is None:
            raise ValueError('a range sensor needs robots built with an arena (ArenaSpec)')
        spec.validate()
        if spec.range_max > robots.arenas.spec.sensor_range:
            raise ValueError(f'range_max = {spec.range_max} m reaches beyond the arena spacing '
                             f'(sensor_range = {robots.arenas.spec.sensor_range} m)')
        self.robots, self.spec = robots, spec
        self.rng = np.random.default_rng(seed)
        self._angles = spec.angles()
        n, r = robots.num_robots, spec.num_rays
        self._dist = np.zeros((n, r))
        self._geom = np.zeros((n, r), np.int32)
        self._vec = np.zeros((n, r, 3))

    def ranges(self) -> np.ndarray:
        """Return (N, num_rays) LaserScan ranges from every robot's current pose."""
        robots, spec = self.robots, self.spec
        pose = robots.pose()
        heading = pose[:, 2:3] + self._angles[None, :]
        self._vec[..., 0], self._vec[..., 1] = np.cos(heading), np.sin(heading)
        arenas = robots.arenas
        arenas.refresh()
        point = np.zeros(3)
        point[2] = ROBOT_HEIGHT
        for i in range(robots.num_robots):
            point[:2] = pose[i, :2]
            mujoco.mj_multiRay(arenas.scene, arenas.scenes[i], point, self._vec[i].ravel(),
                               None, 1, -1, self._geom[i], self._dist[i], None,
                               spec.num_rays, spec.range_max)
        out = self._dist.copy()
        hit = self._geom >= 0
        if spec.noise_std > 0.0:
            out[hit] += self.rng.normal(0.0, spec.noise_std, int(hit.sum()))
        out[~hit | (out > spec.range_max)] = np.inf
        out[hit & (out < spec.range_min)] = -np.inf
        if spec.dropout > 0.0:
            out[self.rng.random(out.shape) < spec.dropout] = np.nan
        return out
