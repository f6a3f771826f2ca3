"""Shield decisions and safe-area geometry on hand-placed states (no ROS needed)."""

import math

import numpy as np
import pytest

from cpo_ros.deploy.shield import shield_command, ShieldConfig
from cpo_ros.tasks.safe_area import SafeArea

STRIP = SafeArea.strip(2.5)
CFG = ShieldConfig()


def test_geometry():
    assert STRIP.contains(np.array([[2.5, 3.0], [0.0, 0.0]])).all()
    assert not STRIP.contains(np.array([2.51, 0.0]))[0]
    concave = SafeArea.from_flat([0, 0, 4, 0, 4, 4, 2, 2, 0, 4])
    np.testing.assert_array_equal(concave.contains(np.array([[1, 1], [2, 3], [3, 1]])),
                                  [True, False, True])
    np.testing.assert_array_equal(STRIP.cost(np.array([[3.0, 0], [0, 0]])), [1.0, 0.0])
    with pytest.raises(ValueError, match='3 or more'):
        SafeArea(((0, 0), (1, 1)))
    with pytest.raises(ValueError, match='x_min < x_max'):
        SafeArea.rectangle(1, 0, 0, 1)


def test_a_command_that_stays_inside_passes():
    cmd = np.array([1.0, 0.0])
    out, intervened = shield_command(np.array([0.0, 0.0, math.pi / 2]), cmd, STRIP, CFG)
    assert not intervened and np.array_equal(out, cmd)


def test_a_command_heading_out_is_replaced_by_a_turn_back():
    pose = np.array([2.0, 0.0, 0.0])  # 0.5 m from the edge, heading straight out
    out, intervened = shield_command(pose, np.array([1.5, 0.0]), STRIP, CFG)
    assert intervened and out[0] == 0.0 and abs(out[1]) == CFG.turn_rate


def test_outside_the_shield_brings_the_robot_back():
    out, intervened = shield_command(np.array([3.0, 0.0, math.pi]), np.array([0.0, 0.0]), STRIP,
                                     CFG)
    assert intervened and out[0] > 0.0  # facing inside: creep back in
    out, intervened = shield_command(np.array([3.0, 0.0, 0.0]), np.array([1.0, 0.0]), STRIP,
                                     CFG)
    assert intervened and out[0] == 0.0 and out[1] != 0.0  # facing out: turn first


def test_closed_loop_the_shield_keeps_an_unsafe_policy_inside():
    pose = np.array([0.0, 0.0, 0.3])
    dt = 0.1
    for _ in range(600):
        cmd, _ = shield_command(pose, np.array([1.5, 0.2]), STRIP, CFG)  # drives out
        # One control period of latency: the command acts after the pose was read.
        pose = pose + dt * np.array([cmd[0] * math.cos(pose[2]), cmd[0] * math.sin(pose[2]),
                                     cmd[1]])
        assert STRIP.contains(pose[:2])[0], pose


def test_margin_keeps_commands_off_the_boundary():
    cfg = ShieldConfig(margin=0.1)
    # 0.05 m inside the strip, driving along it: passes without a margin, not with one.
    pose = np.array([2.45, 0.0, math.pi / 2])
    along = np.array([0.5, 0.0])
    assert not shield_command(pose, along, STRIP, CFG)[1]
    out, intervened = shield_command(pose, along, STRIP, cfg)
    assert intervened and out[0] == 0.0 and out[1] > 0.0  # turns toward the inside (left)
    # Facing the inside, within the margin: it creeps inward.
    out, intervened = shield_command(np.array([2.45, 0.0, math.pi]), along, STRIP, cfg)
    assert not intervened or out[0] > 0.0
    np.testing.assert_allclose(STRIP.boundary_distance(np.array([[2.45, 0.0], [0.0, 0.0]])),
                               [0.05, 2.5])
