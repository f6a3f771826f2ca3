"""Deployment as on a real Jazzy base: the stand-in robot, pose sources, frames, fail-safe.

Every process is real (rclpy, MuJoCo, torch); the probe publishes and listens with the `ros2`
command line's default QoS (reliable, volatile).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

from conftest import NodeProcess, wait_until
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped, TwistStamped
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from nav_msgs.msg import Odometry
import numpy as np
import pytest
from rclpy.clock import Clock
from rclpy.duration import Duration
from std_msgs.msg import Bool

from cpo_ros.paths import config_file
from cpo_ros.ros import qos
from cpo_ros.ros.conversions import (
    odometry_to_pose_twist,
    pose_twist_to_odometry,
    yaw_to_quaternion,
)

LAB = 'turtlebot3_burger'


def bringup_deploy(ros_env, policy_dir, *options, params=()):
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'deploy', *options, '--ros-args',
           '-p', f'policy_executor:policy_dir:={policy_dir}']
    for p in params:
        cmd += ['-p', p]
    return NodeProcess(cmd, ros_env)


class Listener:
    """Record cmd_vel (TwistStamped), the stand-in's odometry and /diagnostics."""

    def __init__(self, probe) -> None:
        self.commands, self.odom, self.diags, self.inside = [], [], [], []
        probe.create_subscription(TwistStamped, 'cmd_vel', self._on_cmd, qos.CLI_DEFAULT)
        probe.create_subscription(Odometry, 'odom', self._on_odom, qos.SENSOR)
        probe.create_subscription(DiagnosticArray, '/diagnostics',
                                  lambda m: self.diags.extend(m.status), qos.CLI_DEFAULT)
        probe.create_subscription(Bool, 'safety/in_safe_area',
                                  lambda m: self.inside.append(m.data), qos.CLI_DEFAULT)

    def _on_cmd(self, msg: TwistStamped) -> None:
        self.commands.append((time.monotonic(), msg.twist.linear.x, msg.twist.angular.z,
                              msg.header.frame_id))

    def _on_odom(self, msg: Odometry) -> None:
        self.odom.append((time.monotonic(), *odometry_to_pose_twist(msg)))

    def moving(self) -> bool:
        return bool(self.commands) and (self.commands[-1][1] != 0.0
                                        or self.commands[-1][2] != 0.0)

    def exits(self) -> int:
        s = self.inside
        return sum(1 for a, b in zip(s, s[1:], strict=False) if a and not b)


def child_pid(stack: NodeProcess, name: str) -> int:
    assert stack.wait_for_output(f'started {name} (pid', 30), stack.output
    return int(re.search(rf'started {name} \(pid (\d+)\)', stack.output).group(1))


def test_killed_executor_leaves_the_shield_stopping_the_stand_in(probe, ros_env,
                                                                 unsafe_policy):
    listener = Listener(probe)
    stack = bringup_deploy(ros_env, unsafe_policy, '--stand-in')
    try:
        assert wait_until(listener.moving, 60), stack.output
        assert listener.commands[-1][3] == 'base_link'  # TwistStamped in base_frame
        os.kill(child_pid(stack, 'policy_executor'), signal.SIGKILL)
        t_dead = time.monotonic()
        # Without fresh policy commands the shield sends zero, and the robot comes to rest.
        assert wait_until(lambda: listener.commands[-1][0] > t_dead + 0.6
                          and not listener.moving(), 15), stack.output
        time.sleep(1.5)
        late = [c for c in listener.commands if c[0] > t_dead + 0.7]
        assert late and all(c[1] == 0.0 and c[2] == 0.0 for c in late)
        # The stand-in's odometry from now on (best effort: wait for some, a loaded machine
        # may leave a short window without any).
        t_rest = time.monotonic()
        assert wait_until(lambda: sum(o[0] > t_rest for o in listener.odom) >= 5, 10), \
            'no odometry from the stand-in after the stop'
        rest = [o for o in listener.odom if o[0] > t_rest]
        assert all(abs(twist[0]) < 0.02 and abs(twist[1]) < 0.05
                   for _t, _pose, twist in rest), rest[-1]
        assert wait_until(lambda: any('policy command stale' in d.message
                                      for d in listener.diags[-5:]), 15)
        assert stack.proc.poll() is None  # the shield (and the deploy) keep running
        assert 'policy_executor failed (exit code -9); the shield keeps the robot stopped' in \
            stack.output
    finally:
        # The executor's failure shows in the exit code when the deploy is stopped.
        assert stack.stop(timeout=40) == 1, stack.output


def _alive(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'  # a zombie has ended
    except OSError:
        return False


def _describe(pid: int) -> str:
    """Return a process's command line and state (what a failed wait reports)."""
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            cmd = f.read().replace(b'\0', b' ').decode(errors='replace')
        with open(f'/proc/{pid}/status') as f:
            state = next((line.strip() for line in f if line.startswith('State:')), '?')
        with open(f'/proc/{pid}/wchan') as f:
            return f'{cmd} [{state}, waiting in {f.read() or "-"}]'
    except OSError as exc:
        return f'gone ({exc})'


def test_sigkilled_bringup_stops_its_nodes_and_the_robot(probe, ros_env, unsafe_policy):
    """SIGKILL of `cpo-ros bringup deploy`: its node processes stop, the last command is zero.

    The bring-up cannot forward a signal it never sees; each node process asks Linux for
    SIGTERM when the bring-up dies, and stops as on Ctrl-C.
    """
    listener = Listener(probe)
    stack = bringup_deploy(ros_env, unsafe_policy, '--stand-in')
    try:
        assert wait_until(listener.moving, 60), stack.output
        pids = [int(p) for p in re.findall(r'started \S+ \(pid (\d+)\)', stack.output)]
        assert len(pids) >= 3 and all(_alive(p) for p in pids), stack.output
        stack.proc.kill()
        stack.proc.wait()
        assert wait_until(lambda: not any(_alive(p) for p in pids), 60), (
            {p: _describe(p) for p in pids if _alive(p)}, stack.output[-4000:])
        time.sleep(0.5)
        assert listener.commands[-1][1:3] == (0.0, 0.0), listener.commands[-5:]
    finally:
        for line in re.findall(r'started \S+ \(pid (\d+)\)', stack.output):
            if _alive(int(line)):
                os.kill(int(line), signal.SIGKILL)
        stack.stop()


def test_sigint_of_the_deploy_ends_with_a_zero_command(start_node, probe, ros_env,
                                                       unsafe_policy):
    start_node('sim_bridge', 'mode:=realtime', 'odom_rate_hz:=25.0',
               'seed:=4')
    listener = Listener(probe)
    stack = bringup_deploy(ros_env, unsafe_policy)
    assert wait_until(listener.moving, 60), stack.output
    assert stack.stop(timeout=40) == 0, stack.output
    time.sleep(0.5)
    assert listener.commands[-1][1:3] == (0.0, 0.0), listener.commands[-5:]


def pose_msg(x, y, yaw, frame, age_s=0.0):
    msg = PoseWithCovarianceStamped()
    msg.header.frame_id = frame
    msg.header.stamp = (Clock().now() - Duration(seconds=age_s)).to_msg()
    msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
    o = msg.pose.pose.orientation
    o.x, o.y, o.z, o.w = yaw_to_quaternion(yaw)
    return msg


def test_pose_source_in_a_map_frame_with_frame_and_stamp_checks(start_node, probe):
    """PoseWithCovarianceStamped in map, task origin at (3, 1): inside, outside, refused."""
    monitor = start_node('safe_area_monitor', 'shield_mode:=gate', 'pose_source:=pose',
                         'task_frame:=map', 'task_origin:=[3.0, 1.0, 0.0]',
                         'cmd_timeout_s:=5.0', 'pose_timeout_s:=1.0', 'diagnostics_rate_hz:=10.0',
                         'command_source:=test_probe')  # the probe plays the executor
    listener = Listener(probe)
    pose_pub = probe.create_publisher(PoseWithCovarianceStamped, 'pose', qos.CLI_DEFAULT)
    cmd_pub = probe.create_publisher(TwistStamped, 'policy/cmd_vel', qos.CLI_DEFAULT)
    assert wait_until(lambda: pose_pub.get_subscription_count() > 0, 60), monitor.output
    forward = TwistStamped()
    forward.twist.angular.z = 0.5

    def feed(x, frame='map', age_s=0.0, n=6):
        for i in range(n):
            pose_pub.publish(pose_msg(x, 1.0 + 0.01 * i, 0.5 * 0.05 * i, frame, age_s))
            cmd_pub.publish(forward)
            time.sleep(0.05)

    # Map x 4.0 is task x 1.0: inside the strip, the command passes (velocity from differences).
    # Fed until the monitor's answer arrives: the probe's readers may match a moment later.
    assert wait_until(lambda: feed(4.0, n=2) or (listener.inside and listener.inside[-1] is True),
                      30), monitor.output
    # Fed until it moves: the gate takes commands once the ROS graph names their publisher
    # (the probe, command_source), which may come a moment after the first pose.
    assert wait_until(lambda: feed(4.0, n=2) or listener.moving(), 10), monitor.output
    # Map x 6.0 is task x 3.0: outside |x| <= 2.5.
    feed(6.0)
    assert wait_until(lambda: listener.inside[-1] is False, 15)
    # A pose in another frame is refused: stop, and diagnostics name both frames.
    feed(4.0, frame='odom')
    assert wait_until(lambda: not listener.moving(), 15)
    assert wait_until(lambda: any("'odom'" in d.message and "'map'" in d.message
                                  for d in listener.diags[-3:]), 15), [
        d.message for d in listener.diags[-3:]]
    # Good poses between refused ones (a failing driver, or a stranger's forged poses) move
    # nothing: each refusal holds the robot still for pose_timeout_s (1 s here).
    for _ in range(20):
        feed(4.0, frame='odom', n=1)
        feed(4.0, n=1)
    assert wait_until(lambda: any('held still' in d.message for d in listener.diags[-5:]), 15)
    assert not listener.moving()
    # Back in map: moving again; then a stamp 3 s old is stale by header.stamp: stop.
    feed(4.0, n=30)
    assert wait_until(listener.moving, 15)
    feed(4.0, age_s=3.0)
    assert wait_until(lambda: not listener.moving(), 15)
    assert wait_until(lambda: any('header.stamp' in d.message for d in listener.diags[-3:]), 15)
    # One pose from the future (its machine's clock jumped) is refused: stop. It must not
    # become the reference that refuses every later pose: the next good ones move again.
    feed(4.0)
    assert wait_until(listener.moving, 15)
    feed(4.0, age_s=-3600.0, n=1)
    assert wait_until(lambda: any('ahead of this clock' in d.message
                                  for d in listener.diags[-3:]), 15)
    assert wait_until(lambda: not listener.moving(), 15)
    assert wait_until(lambda: feed(4.0, n=2) or listener.moving(), 15), monitor.output[-3000:]
    # A non-finite command from the executor itself: a stop, counted; the next good one moves.
    forward.twist.angular.z = float('nan')
    feed(4.0, n=3)
    assert wait_until(lambda: not listener.moving(), 15)
    assert wait_until(lambda: any(kv.key == 'rejected_commands' and int(kv.value) >= 1
                                  for d in listener.diags[-3:] for kv in d.values), 15)
    forward.twist.angular.z = 0.5
    assert wait_until(lambda: feed(4.0, n=2) or listener.moving(), 15), monitor.output[-3000:]


@pytest.fixture(scope='module')
def lab_policy(tmp_path_factory):
    """Train briefly with the TurtleBot3-Burger-class profile (randomised) and export."""
    run = tmp_path_factory.mktemp('lab')
    subprocess.run([sys.executable, '-m', 'cpo_ros.cli', 'train', '--robot', LAB,
                    '--iterations', '2', '--steps-per-iteration', '1200', '--num-envs', '4',
                    '--out', str(run), '--quiet'], check=True, timeout=300)
    subprocess.run([sys.executable, '-m', 'cpo_ros.cli', 'export', '--checkpoint',
                    str(run / 'checkpoints' / 'last.pt'), '--out', str(run / 'policy')],
                   check=True, timeout=300)
    return run / 'policy'


def test_lab_profile_trained_exported_and_deployed_on_the_stand_in(probe, ros_env,
                                                                   lab_policy):
    meta = json.loads((lab_policy / 'policy.json').read_text())
    assert meta['robot'] == {'profile': LAB, 'control_dt': 0.1, 'max_linear_velocity': 0.22,
                             'max_angular_velocity': 2.84, 'max_linear_accel': 2.5,
                             'max_angular_accel': 3.2}
    assert meta['task']['x_limit'] == 0.5 and meta['task']['target_radius'] == 1.5
    # The point robot's settings (5 Hz, 1.5 m/s) differ: refused, both figures named.
    refused = bringup_deploy(ros_env, lab_policy)
    assert refused.wait(60) == 2, refused.output
    assert 'control_dt is 0.2 s here but 0.1 s in training' in refused.output
    assert 'max_linear_velocity is 1.5 m/s here but 0.22 m/s' in refused.output
    assert "trained with robot profile 'turtlebot3_burger'" in refused.output
    # With the profile: deployed on the stand-in (randomised too), no exit with the shield.
    listener = Listener(probe)
    stack = bringup_deploy(ros_env, lab_policy, '--robot', LAB, '--stand-in')
    try:
        assert wait_until(lambda: len(listener.odom) > 20 and listener.moving(), 60), \
            stack.output
        time.sleep(6.0)
        speeds = [abs(c[1]) for c in listener.commands]
        assert max(speeds) <= 0.22 + 1e-6
        assert len(listener.inside) > 60 and listener.exits() == 0
        assert all(listener.inside)
    finally:
        assert stack.stop(timeout=40) == 0, stack.output


@pytest.mark.parametrize('transition,reason', [
    (Transition.TRANSITION_DEACTIVATE, 'not active'),
    # Shut down while active (ros2 lifecycle set ... shutdown): the same zero, then silence.
    (Transition.TRANSITION_ACTIVE_SHUTDOWN, 'shut down'),
])
def test_deactivate_or_shutdown_sends_a_zero_command_and_nothing_after(probe, ros_env,
                                                                       unsafe_policy,
                                                                       transition, reason):
    executor = NodeProcess([sys.executable, '-m', 'cpo_ros.nodes.policy_executor', '--deploy',
                            '--ros-args', '--params-file', str(config_file('deploy')), '-p',
                            f'policy_executor:policy_dir:={unsafe_policy}'], ros_env)
    commands, diags = [], []
    probe.create_subscription(TwistStamped, 'policy/cmd_vel',
                              lambda m: commands.append(m.twist.linear.x), qos.CLI_DEFAULT)
    probe.create_subscription(DiagnosticArray, '/diagnostics',
                              lambda m: diags.extend(m.status), qos.CLI_DEFAULT)
    odom_pub = probe.create_publisher(Odometry, 'odom', qos.CLI_DEFAULT)
    try:
        def feed():
            odom_pub.publish(pose_twist_to_odometry(np.zeros(3), np.zeros(2),
                                                    Clock().now().to_msg(), 'odom',
                                                    'base_link'))
            return bool(commands) and commands[-1] > 0.0
        assert wait_until(feed, 60), executor.output
        client = probe.create_client(ChangeState, 'policy_executor/change_state')
        assert client.wait_for_service(timeout_sec=10)
        reply = client.call(ChangeState.Request(transition=Transition(id=transition)),
                            timeout_sec=10)
        assert reply is not None and reply.success
        time.sleep(0.5)
        sent = len(commands)
        for _ in range(10):
            feed()
            time.sleep(0.05)
        # The stop sent on the transition, and nothing after it.
        assert commands[-1] == 0.0 and len(commands) == sent, commands[-5:]
        assert wait_until(lambda: any(d.message == f'robot stopped: {reason}'
                                      for d in diags[-3:]), 15), [d.message for d in diags[-3:]]
    finally:
        assert executor.stop() == 0, executor.output
