"""Deploy a navigation policy on the randomised stand-in for N goals, shield on and off.

Run: nice .venv/bin/python bench/bench_nav_deploy.py [--goals 20] [--policy DIR]
     [--modes gate pass] [--seed 3] [--timeout 60]
`cpo-ros bringup deploy --stand-in` with task goal: the stand-in (realtime sim bridge) has the
Goal arena (walls, 8 obstacles from its seed), randomised dynamics (mass, gain, one step of
latency, odometry noise) and a noisy 360-ray scanner with dropout. The bench reads the arena
from task/markers, sends goals on goal_pose (PoseStamped, the ros2 CLI's default QoS) in free
space, waits for goal/reached (or --timeout), and reports goals reached, time per goal, body
contacts with walls or obstacles (from odometry against the arena, as the stand-in sees them),
and the monitor's interventions per minute. shield_mode gate: the shield and scan guard on;
pass: off. Without --policy it exports a hand-set reactive policy (goal pursuit steered away
from what the scan sees, test/nav_policies.py): it measures the deploy, not learning.
"""

import argparse
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
import numpy as np
import rclpy
from visualization_msgs.msg import MarkerArray

from cpo_ros.ros import qos
from cpo_ros.ros.conversions import odometry_to_pose_twist
from cpo_ros.tasks.goal import GoalParams

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'test'))
from nav_policies import export_with, goal_checkpoint  # noqa: E402

RANDOMISED = ('dr_mass_scale:=[0.8, 1.3]', 'dr_gain_scale:=[0.85, 1.1]',
              'dr_max_latency_steps:=1', 'dr_position_noise:=0.005', 'dr_yaw_noise:=0.01',
              'dr_velocity_noise:=0.01', 'scan_noise_std:=0.01', 'scan_dropout:=0.02')
BODY = 0.1


class Probe:
    """Listen to the deploy; send goals."""

    def __init__(self, node) -> None:
        self.node = node
        self.odom, self.reached, self.obstacles, self.status = [], [], None, {}
        node.create_subscription(Odometry, 'odom', lambda m: self.odom.append(
            (time.monotonic(), odometry_to_pose_twist(m)[0])), qos.SENSOR)
        node.create_subscription(PoseStamped, 'goal/reached', self.reached.append, qos.LATCHED)
        node.create_subscription(MarkerArray, 'task/markers', self._on_markers, qos.METRICS)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag,
                                 qos.CLI_DEFAULT)
        self.goal_pub = node.create_publisher(PoseStamped, 'goal_pose', qos.CLI_DEFAULT)

    def _on_markers(self, msg: MarkerArray) -> None:
        self.obstacles = np.array([[m.pose.position.x, m.pose.position.y]
                                   for m in msg.markers if m.ns == 'obstacles'])

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            self.status[s.name.split('/')[-1]] = {v.key: v.value for v in s.values}

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.02)

    def send(self, goal: np.ndarray) -> None:
        msg = PoseStamped()
        msg.header.frame_id = 'odom'
        msg.pose.position.x, msg.pose.position.y = float(goal[0]), float(goal[1])
        msg.pose.orientation.w = 1.0
        self.goal_pub.publish(msg)


def in_contact(pose: np.ndarray, obstacles: np.ndarray, params: GoalParams) -> bool:
    """Return whether the body touches an obstacle or a wall (5 mm tolerance)."""
    reach = params.obstacle_radius + BODY + 0.005
    near = len(obstacles) and np.hypot(*(obstacles - pose[:2]).T).min() <= reach
    return bool(near or np.abs(pose[:2]).max() >= params.wall_distance - BODY - 0.005)


def free_goal(rng, obstacles: np.ndarray, pose: np.ndarray, params: GoalParams) -> np.ndarray:
    """Return a goal in the square, clear of obstacles, at least 1.5 m from the robot."""
    e = params.placement_extent
    while True:
        g = rng.uniform(-e, e, 2)
        if (not len(obstacles) or np.hypot(*(obstacles - g).T).min()
                > params.obstacle_radius + 0.5) and np.hypot(*(g - pose[:2])) >= 1.5:
            return g


def run_mode(mode: str, policy: Path, args, env: dict[str, str]) -> dict:
    """Deploy with shield_mode `mode`; drive to args.goals goals; return the figures."""
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'deploy', '--stand-in', '--ros-args',
           '-p', f'policy_executor:policy_dir:={policy}', '-p', 'task:=goal',
           '-p', f'seed:={args.seed}', '-p', f'safe_area_monitor:shield_mode:={mode}']
    for p in RANDOMISED:
        cmd += ['-p', p]
    stack = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = rclpy.create_node(f'nav_bench_{mode}')
    probe = Probe(node)
    params = GoalParams()
    rng = np.random.default_rng(args.seed)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
                probe.odom and probe.obstacles is not None
                and probe.goal_pub.get_subscription_count() > 0):
            probe.spin(0.1)
        if not probe.odom:
            raise SystemExit('the deploy did not come up')
        times, contacts, touching = [], 0, False
        start = time.monotonic()
        for _ in range(args.goals):
            goal = free_goal(rng, probe.obstacles, probe.odom[-1][1], params)
            n = len(probe.reached)
            probe.send(goal)
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.timeout and len(probe.reached) == n:
                seen = len(probe.odom)
                probe.spin(0.05)
                for _, pose in probe.odom[seen:]:
                    now = in_contact(pose, probe.obstacles, params)
                    contacts += int(now and not touching)
                    touching = now
            if len(probe.reached) > n:
                times.append(time.monotonic() - t0)
        minutes = (time.monotonic() - start) / 60.0
        probe.spin(1.0)  # the last diagnostics
        monitor = probe.status.get('safe_area_monitor', {})
        interventions = int(monitor.get('interventions', 0) or 0)
        takeovers = int(monitor.get('takeovers', 0) or 0)
        return {'mode': mode, 'reached': len(times), 'goals': args.goals,
                'time_mean': float(np.mean(times)) if times else float('nan'),
                'time_median': float(np.median(times)) if times else float('nan'),
                'contacts': contacts, 'minutes': minutes,
                'interventions_per_min': interventions / minutes,
                'takeovers_per_min': takeovers / minutes,
                'scan_blocks': monitor.get('scan_blocks')}
    finally:
        node.destroy_node()
        stack.terminate()
        stack.wait(timeout=30)


def main() -> None:
    """Deploy per shield mode; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--goals', type=int, default=20)
    parser.add_argument('--policy', default=None, help='exported Goal policy directory')
    parser.add_argument('--modes', nargs='+', default=['gate', 'pass'])
    parser.add_argument('--seed', type=int, default=3, help="the stand-in's arena and goals")
    parser.add_argument('--timeout', type=float, default=60.0, help='seconds per goal')
    parser.add_argument('--domain', default=os.environ.get('ROS_DOMAIN_ID', '85'))
    args = parser.parse_args()
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    os.environ.update(env)
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(args.policy) if args.policy else export_with(
            goal_checkpoint(Path(tmp) / 'run'), Path(tmp), 'pursuit')
        rclpy.init(domain_id=int(args.domain))
        rows = [run_mode(mode, policy, args, env) for mode in args.modes]
        rclpy.shutdown()
    print(f"policy: {args.policy or 'hand-set reactive pursuit (test/nav_policies.py)'}; "
          f'stand-in seed {args.seed}, randomised: {", ".join(RANDOMISED)}')
    for r in rows:
        print(f"shield {'on ' if r['mode'] == 'gate' else 'off'} ({r['mode']}): "
              f"{r['reached']}/{r['goals']} goals reached, time per goal mean "
              f"{r['time_mean']:.1f} s (median {r['time_median']:.1f} s), "
              f"{r['contacts']} collisions, {r['takeovers_per_min']:.1f} interventions/min "
              f"(takeovers: the shield taking over from the policy; "
              f"{r['interventions_per_min']:.0f} replaced commands/min at the gate's rate, scan "
              f"guard blocks {r['scan_blocks']}), {r['minutes']:.1f} min")


if __name__ == '__main__':
    main()
