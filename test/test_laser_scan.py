"""A real LaserScan onto the policy's rays (REP 117), its checks, and the scan guard's decision."""

import math

from builtin_interfaces.msg import Time
import numpy as np
import pytest

from cpo_ros.deploy.scan_guard import guard_command, scan_points, ScanGuardConfig
from cpo_ros.ros.laser_scan import laser_scan_fields, laser_scan_to_ranges, ranges_to_laser_scan
from cpo_ros.tasks import scan

OBSTACLES = np.array([[1.0, 0.0], [0.0, 2.0], [-2.0, -2.0]])
RADIUS = 0.3
POLICY = scan.ScanSpec(num_rays=8, angle_min=-math.pi, range_max=3.0)  # every 45 degrees


def true_range(angle: float, pose=(0.0, 0.0, 0.0)) -> float:
    """Return the exact distance along one ray to the discs (inf: none)."""
    return float(scan.disc_ranges(np.array([[pose[0], pose[1], pose[2] + angle]]),
                                  OBSTACLES[None], RADIUS, scan.ScanSpec(1, 0.0, 1e9))[0, 0])


def scanner(degrees: np.ndarray, range_min: float, range_max: float) -> np.ndarray:
    """Return what a scanner reports at these angles, as REP 117 says."""
    out = np.array([true_range(math.radians(d)) for d in degrees])
    out[out > range_max] = np.inf
    out[out < range_min] = -np.inf
    return out


def msg_of(ranges, angle_min, increment, range_min, range_max):
    return ranges_to_laser_scan(ranges, angle_min, increment, range_min, range_max, 'base_scan',
                                Time(sec=1))


def test_a_360_ray_scan_with_other_angles_and_either_order_resamples_onto_the_rays():
    degrees = np.arange(360)  # angle_min 0, counter-clockwise: not the policy's -pi start
    ranges = scanner(degrees, 0.12, 3.5)
    ranges[3::5] = np.nan  # dropped readings (none on a policy ray but 135 degrees)
    ranges[135] = np.nan
    ranges[200] = 50.0  # a finite reading above range_max: not a measurement
    forward = laser_scan_to_ranges(msg_of(ranges, 0.0, math.radians(1), 0.12, 3.5), POLICY)
    # The same scan in reverse order (a scanner mounted upside down: clockwise increments).
    backward = laser_scan_to_ranges(
        msg_of(ranges[::-1], math.radians(359), -math.radians(1), 0.12, 3.5), POLICY)
    np.testing.assert_array_equal(forward, backward)
    for ray, angle in enumerate(POLICY.angles()):
        d = int(round(math.degrees(angle))) % 360
        want = true_range(math.radians(d))
        if d == 135:  # dropped: the nearer of the neighbours one degree away
            want = min(true_range(math.radians(134)), true_range(math.radians(136)))
        want = want if want <= POLICY.range_max else math.inf
        assert forward[ray] == pytest.approx(want, abs=1e-5), d
    assert np.isfinite(forward).sum() == 3 and np.isinf(forward).sum() == 5
    # What the policy sees: 1 touching, 0 at range_max or no return.
    closeness = scan.closeness(forward, POLICY)
    assert closeness[4] == pytest.approx(1 - 0.7 / 3.0, abs=1e-5)  # ahead, 0.7 m


def test_too_close_no_return_and_out_of_limits_readings_follow_rep_117():
    # 4 readings at -90, 0, 90, 180 degrees by a scanner with range_min 0.2, range_max 4.
    ranges = np.array([-np.inf, np.inf, 0.1, 5.0])
    got = laser_scan_to_ranges(msg_of(ranges, -math.pi / 2, math.pi / 2, 0.2, 4.0),
                               scan.ScanSpec(num_rays=4, angle_min=-math.pi / 2, range_max=3.0))
    # -inf: an object nearer than range_min, read at range_min; +inf: nothing there; 0.1 and 5.0
    # are not measurements: a neighbour one increment away answers (at 90 degrees the +inf at
    # 0; at 180 the -inf at -90, across the wrap).
    assert got.tolist() == [pytest.approx(0.2), math.inf, math.inf, pytest.approx(0.2)]
    # All NaN: no information, every ray reads no return for the policy.
    nothing = laser_scan_to_ranges(msg_of(np.full(90, np.nan), -math.pi, math.radians(4), 0.1,
                                          4.0), POLICY)
    assert np.isinf(nothing).all()


@pytest.mark.parametrize('bad, match', [
    (dict(angle_increment=0.0), 'increment'),
    (dict(angle_min=math.nan), 'finite'),
    (dict(angle_max=3.0), 'does not end'),
    (dict(range_min=5.0), 'range_min'),
    (dict(range_max=math.inf), 'range_min'),
])
def test_a_malformed_scan_is_refused_naming_the_field(bad, match):
    msg = msg_of(np.ones(10), -1.0, 0.2, 0.1, 4.0)
    for key, value in bad.items():
        setattr(msg, key, value)
    with pytest.raises(ValueError, match=match):
        laser_scan_fields(msg)
    msg = msg_of(np.ones(1), 0.0, 0.1, 0.1, 4.0)
    msg.ranges = []
    with pytest.raises(ValueError, match='0 ranges'):
        laser_scan_fields(msg)


def test_the_guard_refuses_commands_that_near_a_scan_point_and_passes_the_rest():
    config = ScanGuardConfig(margin_m=0.2, body_radius_m=0.1, horizon_s=0.8)
    # A wall 1 m ahead seen by a 360-ray scanner mounted 0.05 m behind base_link.
    degrees = np.arange(360) - 180
    wall = np.where(np.abs(degrees) < 60, 1.05 / np.cos(np.radians(degrees)), np.inf)
    points = scan_points(wall, -math.pi, math.radians(1), 0.1, 4.0, (-0.05, 0.0, 0.0))
    assert points[:, 0].min() == pytest.approx(1.0)
    fast, replaced = guard_command(points, np.array([1.5, 0.3]), config)  # 1.2 m in 0.8 s
    assert replaced and fast.tolist() == [0.0, 0.3]
    slow, replaced = guard_command(points, np.array([0.5, 0.0]), config)  # 0.4 m: clear
    assert not replaced and slow.tolist() == [0.5, 0.0]
    away, replaced = guard_command(points, np.array([-1.0, 0.0]), config)
    assert not replaced
    # Already nearer than the margin: backing away and turning pass, closing in does not.
    near = points - [0.75, 0.0]
    assert not guard_command(near, np.array([-0.2, 0.0]), config)[1]
    assert not guard_command(near, np.array([0.0, 1.0]), config)[1]
    assert guard_command(near, np.array([0.05, 0.0]), config)[1]
    # No points (an open space): everything passes.
    assert not guard_command(np.zeros((0, 2)), np.array([1.5, 0.0]), config)[1]


def test_the_scan_tells_a_contact_within_the_body_or_too_near_to_measure(probe):
    """Learning on the robot, a navigation task's collision cost comes from the scan."""
    from conftest import wait_until
    from sensor_msgs.msg import LaserScan

    from cpo_ros.ros import qos
    from cpo_ros.ros.laser_scan import ScanInput

    # The laser sits 3 cm behind the base frame's origin.
    params = {'laser_frame': 'base_scan', 'laser_pose': [-0.03, 0.0, 0.0],
              'scan_timeout_s': 5.0, 'stamp_tolerance_s': 1.0, 'scan_min_valid_share': 0.5}
    reader = ScanInput(probe, params)
    pub = probe.create_publisher(LaserScan, 'scan', qos.CLI_DEFAULT)
    assert wait_until(lambda: pub.get_subscription_count() > 0, 10)

    def send(ranges):
        seen = reader.received
        pub.publish(ranges_to_laser_scan(np.asarray(ranges, float), 0.0, math.pi / 4, 0.05,
                                         3.5, 'base_scan', probe.get_clock().now().to_msg()))
        assert wait_until(lambda: reader.received > seen, 10)

    ranges = np.full(8, np.inf)
    ranges[2] = 1.0
    send(ranges)
    assert not reader.touching(0.1)
    ranges[0] = 0.12  # straight ahead of the laser: 0.09 m from the base frame's origin
    send(ranges)
    assert reader.touching(0.1) and not reader.touching(0.08)
    ranges[0] = -np.inf  # too near to measure: touched, whatever the radius
    send(ranges)
    assert reader.touching(0.0)
    # Fewer measurements than scan_min_valid_share (0.5): refused, counted, no points.
    rejected = reader.rejected
    ranges = np.full(8, np.nan)
    ranges[:3] = 1.0  # 3 of 8
    pub.publish(ranges_to_laser_scan(ranges, 0.0, math.pi / 4, 0.05, 3.5, 'base_scan',
                                     probe.get_clock().now().to_msg()))
    assert wait_until(lambda: reader.rejected > rejected, 10)
    assert reader.points is None and '3 of 8 readings are measurements' in reader.stop_reason()
    ranges[3] = 1.0  # 4 of 8: taken (after the hold of the refusal)
    send(ranges)
    assert reader.points is not None and len(reader.points) == 4
