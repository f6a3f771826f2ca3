"""Navigation through the graph: Goal trains in lock-step, with its scan and arena out."""

import csv
import math
import sys

from conftest import NodeProcess
from sensor_msgs.msg import LaserScan
from visualization_msgs.msg import MarkerArray

from cpo_ros.ros import qos


def test_goal_trains_through_the_graph_and_robot_0s_scan_and_arena_go_out(ros_env, probe,
                                                                         tmp_path):
    scans, markers = [], []
    probe.create_subscription(LaserScan, 'scan', scans.append, qos.SENSOR)
    probe.create_subscription(MarkerArray, 'task/markers', markers.append, qos.METRICS)
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'nav_sim', '--ros-args',
           # Two iterations of one 1000-step episode per robot: time for the probe to join.
           '-p', 'num_envs:=4', '-p', 'steps_per_iteration:=4000',
           '-p', f'learner:out:={tmp_path}', '-p', 'learner:iterations:=2',
           '-p', 'learner:value_epochs:=2']
    bringup = NodeProcess(cmd, ros_env)
    assert bringup.wait(timeout=300) == 0, bringup.output
    with open(tmp_path / 'progress.csv') as f:
        rows = list(csv.DictReader(f))
    assert [int(r['iteration']) for r in rows] == [1, 2]
    assert float(rows[0]['cost_limit']) == 50.0
    assert all(int(r['episode_length']) == 1000 for r in rows)
    config = (tmp_path / 'config.yaml').read_text()
    assert 'task: goal' in config
    # Robot 0's scan: the scanner of nav_sim.yaml (the policy's 16-ray ring), REP 117 values.
    assert scans, bringup.output
    scan = scans[-1]
    assert scan.header.frame_id == 'base_scan' and len(scan.ranges) == 16
    assert math.isclose(scan.angle_min, -math.pi, abs_tol=1e-6)
    assert math.isclose(scan.angle_increment, 2 * math.pi / 16, rel_tol=1e-6)
    assert math.isclose(scan.angle_max, -math.pi + 15 * 2 * math.pi / 16, rel_tol=1e-6)
    assert (scan.range_min, scan.range_max) == (0.0, 4.0)
    # Some rays see a wall or an obstacle, at ranges within the limits; the rest read +inf.
    seen = [r for s in scans for r in s.ranges if math.isfinite(r)]
    assert seen and all(0.0 <= r <= 4.0 for r in seen)
    assert any(r == math.inf for s in scans for r in s.ranges)
    # The arena for RViz: obstacles, the goal and the walls.
    assert markers and {m.ns for m in markers[-1].markers} == {'obstacles', 'goal', 'walls'}
