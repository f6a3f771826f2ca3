"""MuJoCo arenas and the ray-cast scan: analytic distances on fixed layouts, contacts per robot."""

import math

import numpy as np
import pytest

from cpo_ros.sim.arena import ArenaSpec
from cpo_ros.sim.range_sensor import RangeSensor, RangeSensorSpec
from cpo_ros.sim.robot import PointRobots
from cpo_ros.tasks import scan

ARENA = ArenaSpec(half_size=3.0, max_obstacles=4, obstacle_radius=0.4, sensor_range=5.0)


def analytic_ranges(pose, obstacles, spec: RangeSensorSpec, arena: ArenaSpec) -> np.ndarray:
    """Return the exact ranges from pose to discs and the square's walls (+inf beyond range)."""
    x, y, yaw = pose
    angles = spec.angles() + yaw
    dx, dy = np.cos(angles), np.sin(angles)
    h = arena.half_size
    with np.errstate(divide='ignore'):
        tx = np.where(dx > 0, (h - x) / dx, np.where(dx < 0, (-h - x) / dx, np.inf))
        ty = np.where(dy > 0, (h - y) / dy, np.where(dy < 0, (-h - y) / dy, np.inf))
    walls = np.minimum(tx, ty)
    # disc_ranges (the numpy disc scan) cast one ray per angle, along the heading.
    discs = np.array([scan.disc_ranges(np.array([[x, y, a]]), np.asarray(obstacles)[None],
                                       arena.obstacle_radius,
                                       scan.ScanSpec(1, 0.0, 1e9))[0, 0] for a in angles])
    out = np.minimum(walls, discs)
    out[out > spec.range_max] = np.inf
    return out


@pytest.mark.parametrize('spec', [RangeSensorSpec(num_rays=16, range_max=4.0),
                                  RangeSensorSpec(num_rays=90, fov=math.radians(270),
                                                  range_max=5.0),
                                  RangeSensorSpec(num_rays=7, fov=1.0, range_max=3.5)])
def test_scan_matches_analytic_distances_on_a_fixed_layout(spec):
    robots = PointRobots(3, arena=ARENA)
    layouts = [np.array([[1.5, 0.0], [-1.0, 1.2], [0.3, -2.0]]),
               np.array([[2.0, 2.0]]),
               np.zeros((0, 2))]
    poses = [(0.0, 0.0, 0.0), (-1.0, 0.5, 2.0), (2.2, -1.7, -0.7)]
    for i, (layout, pose) in enumerate(zip(layouts, poses, strict=True)):
        robots.arenas.place(i, layout)
        robots.set_pose(i, *pose)
    got = RangeSensor(robots, spec).ranges()
    for i, (layout, pose) in enumerate(zip(layouts, poses, strict=True)):
        want = analytic_ranges(pose, layout, spec, ARENA)
        assert np.isinf(got[i]).tolist() == np.isinf(want).tolist()
        finite = np.isfinite(want)
        assert finite.sum() >= 1
        np.testing.assert_allclose(got[i][finite], want[finite], atol=1e-6)
    assert spec.angle_max == pytest.approx(spec.angles()[-1])


def test_the_robot_sees_neither_itself_nor_another_arena():
    # No walls and no obstacles of its own: every ray reads +inf, though the neighbouring
    # arenas hold obstacles and robots within the grid.
    open_arena = ArenaSpec(half_size=0.0, max_obstacles=2, obstacle_radius=0.3, sensor_range=4.0)
    robots = PointRobots(4, arena=open_arena)
    for i in (1, 2, 3):
        robots.arenas.place(i, [[1.0, 0.0], [0.0, -1.0]])
    ranges = RangeSensor(robots, RangeSensorSpec(num_rays=64, range_max=4.0)).ranges()
    assert np.isinf(ranges[0]).all() and (ranges[0] > 0).all()
    assert np.isfinite(ranges[1:]).any(axis=1).all()


def test_range_limits_noise_and_dropout():
    robots = PointRobots(2, arena=ArenaSpec(half_size=0.0, max_obstacles=1, obstacle_radius=0.2,
                                            sensor_range=4.0))
    robots.arenas.place(0, [[0.5, 0.0]])  # 0.3 m ahead
    robots.arenas.place(1, [[3.0, 0.0]])  # 2.8 m ahead
    near = RangeSensor(robots, RangeSensorSpec(num_rays=4, range_min=0.5, range_max=2.0))
    r = near.ranges()
    assert r[0, 2] == -np.inf  # too close to measure (REP 117)
    assert r[1, 2] == np.inf   # beyond range_max: no return
    noisy = RangeSensor(robots, RangeSensorSpec(num_rays=4, range_max=4.0, noise_std=0.05,
                                                dropout=0.2), seed=3)
    ahead = np.array([noisy.ranges()[1, 2] for _ in range(2000)])
    lost = np.isnan(ahead)
    assert 0.15 < lost.mean() < 0.25
    assert np.mean(ahead[~lost]) == pytest.approx(2.8, abs=0.01)
    assert np.std(ahead[~lost]) == pytest.approx(0.05, rel=0.15)
    # Misses stay misses: noise is added to returns only.
    assert np.isinf(noisy.ranges()[1, 0]) or np.isnan(noisy.ranges()[1, 0])


def test_the_body_stops_at_an_obstacle_and_the_contact_is_its_own():
    robots = PointRobots(3, arena=ARENA)
    robots.arenas.place(0, [[1.5, 0.0]])
    robots.arenas.place(1, [[0.0, 1.5]])  # beside robot 1's path: never touched
    sensor = RangeSensor(robots, RangeSensorSpec(num_rays=16, range_max=4.0))
    ahead = sensor.ranges()[0, 8]
    assert ahead == pytest.approx(1.5 - ARENA.obstacle_radius)
    touched = np.zeros(3, bool)
    for _ in range(30):
        robots.step(np.tile([1.0, 0.0], (3, 1)))
        touched |= robots.arenas.collisions()
    pose = robots.pose()
    # Robot 0 rests against the obstacle: its body (radius 0.1) where the scan said.
    assert pose[0, 0] == pytest.approx(ahead - 0.1, abs=0.03)
    # Robot 1 drives on to the wall at x = 3 and robot 2 too; all three report their contacts.
    assert pose[1, 0] == pytest.approx(ARENA.half_size - 0.1, abs=0.03)
    assert touched.all()
    robots.set_pose([0, 1, 2], 0.0, 0.0, 0.0)
    robots.step(np.zeros((3, 2)))
    assert not robots.arenas.collisions().any()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match='dropout'):
        RangeSensorSpec(dropout=1.0).validate()
    with pytest.raises(ValueError, match='arena'):
        RangeSensor(PointRobots(1), RangeSensorSpec())
    with pytest.raises(ValueError, match='sensor_range'):
        RangeSensor(PointRobots(1, arena=ARENA), RangeSensorSpec(range_max=6.0))
    robots = PointRobots(1, arena=ARENA)
    with pytest.raises(ValueError, match='slots'):
        robots.arenas.place(0, np.zeros((5, 2)))
