"""Navigation deployed on the stand-in: RViz-style goals, arrival, the scan and the scan guard.

Every process is real (rclpy, MuJoCo, torch); the probe publishes goals as the `ros2` command
line does (reliable, volatile) and listens to what a user's tools would.
"""

import sys
import time

from conftest import NodeProcess, wait_until
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from nav_policies import export_with, goal_checkpoint
import numpy as np
import pytest
from sensor_msgs.msg import LaserScan

from cpo_ros.ros import qos
from cpo_ros.ros.conversions import odometry_to_pose_twist


@pytest.fixture(scope='session')
def nav_policies(tmp_path_factory):
    out = tmp_path_factory.mktemp('nav')
    ckpt = goal_checkpoint(out / 'run')
    return {kind: export_with(ckpt, out, kind) for kind in ('pursuit', 'straight')}


def deploy(ros_env, policy_dir, *params):
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'deploy', '--stand-in', '--ros-args',
           '-p', f'policy_executor:policy_dir:={policy_dir}', '-p', 'task:=goal']
    for p in params:
        cmd += ['-p', p]
    return NodeProcess(cmd, ros_env)


class Robot:
    """What the probe hears of the deployed stand-in."""

    def __init__(self, probe) -> None:
        self.odom, self.scans, self.reached, self.diags = [], [], [], []
        probe.create_subscription(Odometry, 'odom', lambda m: self.odom.append(
            odometry_to_pose_twist(m)), qos.SENSOR)
        probe.create_subscription(LaserScan, 'scan', self.scans.append, qos.SENSOR)
        probe.create_subscription(PoseStamped, 'goal/reached', self.reached.append,
                                  qos.LATCHED)
        probe.create_subscription(DiagnosticArray, '/diagnostics',
                                  lambda m: self.diags.extend(m.status), qos.CLI_DEFAULT)
        self.goal_pub = probe.create_publisher(PoseStamped, 'goal_pose', qos.CLI_DEFAULT)

    def send_goal(self, x: float, y: float, frame: str = 'odom') -> None:
        msg = PoseStamped()
        msg.header.frame_id = frame
        msg.pose.position.x, msg.pose.position.y = x, y
        msg.pose.orientation.w = 1.0
        self.goal_pub.publish(msg)

    def pose(self) -> np.ndarray:
        return self.odom[-1][0]

    def still_for(self, seconds: float) -> bool:
        start = len(self.odom)
        time.sleep(seconds)
        twists = [t for _, t in self.odom[start:]]
        return bool(twists) and max(abs(t[0]) for t in twists) < 0.02

    def value(self, status_name: str, key: str):
        for status in reversed(self.diags):
            if status.name.endswith(status_name):
                return next((v.value for v in status.values if v.key == key), None)
        return None


def test_a_goal_from_the_command_line_qos_is_reached_reported_and_the_robot_stops(
        probe, ros_env, nav_policies):
    robot = Robot(probe)
    # An arena with walls and no obstacles: the pursuit policy's straight way to the goal.
    stack = deploy(ros_env, nav_policies['pursuit'], 'sim_bridge:goal.n_obstacles:=0')
    try:
        assert wait_until(lambda: robot.odom and robot.scans
                          and robot.goal_pub.get_subscription_count() > 0, 120), stack.output
        # The stand-in's scanner: 360 rays of deploy.yaml, resampled onto the policy's 16.
        assert len(robot.scans[-1].ranges) == 360
        assert robot.scans[-1].header.frame_id == 'base_scan'
        # No goal yet: the robot waits.
        assert robot.still_for(1.0)
        # A goal in another frame is refused, naming both frames.
        robot.send_goal(0.0, 0.0, frame='map')
        assert stack.wait_for_output("goal in frame 'map', the task is in frame 'odom'", 20), \
            stack.output
        start = robot.pose()
        # 2 m toward the arena's centre (inside the walls whatever the random start).
        toward = -start[:2] / max(np.linalg.norm(start[:2]), 1e-6)
        goal = start[:2] + 2.0 * toward
        robot.send_goal(float(goal[0]), float(goal[1]))
        assert wait_until(lambda: robot.reached, 120), stack.output
        reached = robot.reached[-1].pose.position
        assert (reached.x, reached.y) == pytest.approx((goal[0], goal[1]), abs=1e-6)
        assert np.hypot(*(robot.pose()[:2] - goal)) < 0.4 + 0.15  # goal_radius, plus stopping
        assert wait_until(lambda: robot.still_for(0.5), 15)  # it stops there ...
        assert robot.still_for(1.5)  # ... until the next goal
        assert wait_until(lambda: robot.value('policy_executor', 'goals_reached') == '1', 10)
        assert robot.value('policy_executor', 'rejected_goals') == '1'
        # The next goal: driving again.
        robot.send_goal(float(start[0]), float(start[1]))
        assert wait_until(lambda: len(robot.reached) == 2, 120), stack.output
    finally:
        stack.stop()


def test_the_scan_guard_stops_a_straight_ahead_policy_short_of_the_obstacle(
        probe, ros_env, nav_policies):
    robot = Robot(probe)
    # Only the scan guard stands between the robot and the walls and obstacles: the safe area
    # is made far larger than the arena.
    stack = deploy(ros_env, nav_policies['straight'], 'safe_area_monitor:area_type:=rectangle',
                   'safe_area_monitor:area_rectangle:=[-100.0, 100.0, -100.0, 100.0]')
    try:
        assert wait_until(lambda: robot.odom and robot.goal_pub.get_subscription_count() > 0,
                          120), stack.output
        robot.send_goal(50.0, 50.0)  # a goal it never reaches: it just drives straight on
        assert wait_until(lambda: robot.odom and abs(robot.odom[-1][1][0]) > 0.3, 30), \
            stack.output
        # It drives until something is ahead, then stands: no contact, the guard says so.
        assert wait_until(lambda: robot.still_for(1.0), 90), stack.output
        ahead = np.asarray(robot.scans[-1].ranges)
        ahead = ahead[np.abs(np.arange(360) - 180) <= 30]  # within 30 degrees of the heading
        near = float(np.nanmin(np.where(np.isfinite(ahead), ahead, np.inf)))
        # The body (0.1 m) keeps clear of what it headed for: stopped before it, not on it.
        assert 0.1 + 0.05 < near < 1.5, near
        assert wait_until(
            lambda: int(robot.value('safe_area_monitor', 'scan_blocks') or 0) > 0, 10)
    finally:
        stack.stop()
