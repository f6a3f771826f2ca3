"""Learning on the robot: the realtime stand-in plays the robot, publishing a real /clock.

Every process is real (rclpy, MuJoCo, torch). The probe listens and publishes with the `ros2`
command line's default QoS (reliable, volatile).
"""

import os
from pathlib import Path
import re
import signal
import sys
import time

from conftest import NodeProcess, rows, shares, wait_until
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
import numpy as np
from std_msgs.msg import UInt8MultiArray
from std_srvs.srv import SetBool

from cpo_ros.deploy.profile import profile_path
from cpo_ros.paths import config_file
from cpo_ros.ros import qos
from cpo_ros.ros.bringup import worker_command
from cpo_ros.ros.conversions import msg_to_arrays, odometry_to_pose_twist

LAB = 'turtlebot3_burger'
X_LIMIT = 0.5  # the lab profile's strip
START_SPREAD = 0.1 + 0.05  # init_position_noise + reset_position_tolerance


class RobotListener:
    """Record chunks on cpo/rollout, gated commands, odometry and the executor's diagnostics."""

    def __init__(self, probe) -> None:
        self.chunks, self.commands, self.odom, self.diags = [], [], [], []
        self.policy_commands, self.bare = [], 0
        probe.create_subscription(UInt8MultiArray, 'cpo/rollout',
                                  lambda m: self.chunks.append(msg_to_arrays(m)), qos.ROLLOUT)
        probe.create_subscription(TwistStamped, 'cmd_vel', self._on_cmd, qos.CLI_DEFAULT)
        probe.create_subscription(
            TwistStamped, 'policy/cmd_vel', lambda m: self.policy_commands.append(
                (time.monotonic(), m.twist.linear.x, m.twist.angular.z)), qos.CLI_DEFAULT)
        probe.create_subscription(Odometry, 'odom', self._on_odom, qos.SENSOR)
        probe.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag,
                                  qos.CLI_DEFAULT)

    def _on_cmd(self, msg) -> None:
        self.commands.append((time.monotonic(), msg.twist.linear.x, msg.twist.angular.z))

    def _on_odom(self, msg) -> None:
        self.odom.append((time.monotonic(), *odometry_to_pose_twist(msg)))

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            # The executor's own status, with its refusal counters.
            if status.name.endswith('policy_executor') and 'phase' in values:
                self.diags.append(values | {'message': status.message})
            elif status.name.endswith('policy_executor'):
                self.bare += 1  # the counters alone: rqt's view flicks between the two

    def phase(self) -> str | None:
        return self.diags[-1]['phase'] if self.diags else None

    def robot_chunks(self) -> list[dict]:
        return [c for c in self.chunks if str(c['executor_id']) == 'robot']

    def at_rest_since(self, t0: float) -> bool:
        late = [o for o in self.odom if o[0] > t0]
        # The lab profile's odometry is noisy (0.01 std): at rest is below 0.05 and 0.1.
        return len(late) >= 5 and all(abs(tw[0]) < 0.05 and abs(tw[1]) < 0.1
                                      for _t, _p, tw in late[-5:])


def bringup(ros_env, out: Path, *params: str) -> NodeProcess:
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'learn_on_robot', '--stand-in',
           '--robot', LAB, '--ros-args', '-p', f'learner:out:={out}',
           '-p', 'policy_executor:diagnostics_rate_hz:=5.0']
    for p in params:
        cmd += ['-p', p]
    return NodeProcess(cmd, ros_env)


def bringup_to_end(ros_env, out: Path, timeout: float, *params: str) -> None:
    """Run the bring-up until the learner's iterations are done; it must exit cleanly."""
    stack = bringup(ros_env, out, *params)
    try:
        assert wait_until(lambda: stack.proc.poll() is not None, timeout), stack.output
    finally:
        stack.stop(timeout=40)
    assert stack.proc.returncode == 0, stack.output


def test_a_robot_alone_trains_and_the_rows_account_for_every_sample(probe, ros_env, tmp_path):
    listener = RobotListener(probe)
    out = tmp_path / 'run'
    bringup_to_end(ros_env, out, 240, 'steps_per_iteration:=300', 'learner:iterations:=3',
                   'real_time_factor:=10.0')
    table = rows(out)
    assert [int(r['iteration']) for r in table] == [1, 2, 3]
    assert all(shares(r) == {'robot': 300} for r in table), [r['executor_shares'] for r in table]
    # Every sample the robot sent for versions 0-2 is in a row: used, surplus or stale.
    sent = sum(int(c['samples']) for c in listener.robot_chunks()
               if int(c['policy_version']) < 3)
    used = sum(int(r['samples']) + int(r['surplus_samples']) + int(r['stale_samples'])
               for r in table)
    assert sent == used == 900
    # Each row counts the late and shield-replaced steps among the samples it used: the
    # flags of its version's chunks, in the order they came, up to its samples.
    for row in table:
        version = int(row['iteration']) - 1
        mine = [c for c in listener.robot_chunks() if int(c['policy_version']) == version]
        late = np.concatenate([c['late'][:, 0] for c in mine])[:int(row['samples'])]
        replaced = np.concatenate([c['intervened'][:, 0] for c in mine])[:int(row['samples'])]
        assert int(row['late_steps']) == int(late.sum()), row
        assert int(row['interventions']) == int(replaced.sum()), row
        assert int(row['dropped_samples']) == 0  # shield_samples keep
    assert listener.diags and sum(int(r['interventions']) for r in table) <= int(
        listener.diags[-1]['interventions'])
    for chunk in listener.robot_chunks():
        # Episodes end truncated (the task's length or a cut), never terminal.
        assert not chunk['terminated'].any() and chunk['truncated'][-1, 0]
    # The reset behaviour brought the robot to a start pose inside the safe area before
    # each episode: the first observation after every stream end (x, y = obs[0:2]).
    chunks = listener.robot_chunks()
    starts = [c['obs'][0, 0, :2] for c in chunks]
    starts += [c['obs'][i + 1, 0, :2] for c in chunks
               for i in np.flatnonzero(c['truncated'][:-1, 0])]
    assert len(starts) >= 6
    assert all(abs(x) <= START_SPREAD and abs(y) <= START_SPREAD for x, y in starts), starts
    assert all(abs(x) <= X_LIMIT for x, _y in starts)
    # Between episodes the robot really drove there: episodes ended away from the start.
    ends = [c['final_obs'][i, 0, :2] for c in chunks for i in np.flatnonzero(
        c['truncated'][:, 0])]
    # (A robot that never moved: the gate refused every command, see the next test.)
    assert max(float(np.hypot(*e)) for e in ends) > START_SPREAD, (
        ends, [r['interventions'] for r in table])


def test_a_stop_in_place_of_the_policys_command_flags_the_samples(probe, ros_env, tmp_path,
                                                                 stranger_node):
    """A second publisher on policy/cmd_vel: the gate refuses every command and the robot
    stands. The executor's samples must not claim it drove: each replaced step is flagged."""
    stranger = stranger_node('stranger')
    stranger.create_publisher(TwistStamped, 'policy/cmd_vel', qos.CLI_DEFAULT)
    out = tmp_path / 'run'
    # The robot stands, so no reset reaches its (random) start pose: each gives up after
    # reset_timeout_s of robot time.
    bringup_to_end(ros_env, out, 240, 'steps_per_iteration:=300', 'learner:iterations:=2',
                   'real_time_factor:=10.0', 'policy_executor:reset_timeout_s:=10.0')
    table = rows(out)
    samples = sum(int(r['samples']) for r in table)
    flagged = sum(int(r['interventions']) for r in table)
    # Nearly every step: the policy's Gaussian commands are never exactly zero; a flag
    # missed is a count that came after the next step (10 ms of wall time at 10x).
    assert flagged >= samples // 2, (flagged, samples)


def test_a_navigation_task_learns_from_the_robots_laser_scan(probe, ros_env, tmp_path):
    """Goal on the robot: its readings come from `scan` (the stand-in's LaserScan of its own
    arena, which the executor's task knows nothing of), resampled onto the policy's rays."""
    listener = RobotListener(probe)
    out = tmp_path / 'run'
    bringup_to_end(ros_env, out, 240, 'task:=goal', 'goal.max_episode_steps:=60',
                   'steps_per_iteration:=120', 'learner:iterations:=2', 'real_time_factor:=10.0')
    assert all(shares(r) == {'robot': 120} for r in rows(out)), rows(out)
    chunks = listener.robot_chunks()
    obs = np.concatenate([c['obs'][:, 0] for c in chunks])
    closeness = obs[:, 5:]  # after v, w and the goal's three readings: one per ray
    assert closeness.shape == (len(obs), 16)
    # The stand-in's walls and obstacles were seen, at ranges that changed as it drove.
    assert (closeness > 0).any() and np.ptp(closeness, axis=0).max() > 0.01
    assert int(listener.diags[-1]['scans']) > 0 and listener.diags[-1]['rejected_scans'] == '0'


def test_an_e_stop_truncates_the_episode_and_stops_the_robot(probe, ros_env, tmp_path):
    listener = RobotListener(probe)
    client = probe.create_client(SetBool, 'e_stop')
    # A chunk an episode: the cut one holds no finished episode. Episodes of 60 s of robot
    # time (6 s of wall time): the e-stop lands in one, not in a reset between two.
    stack = bringup(ros_env, tmp_path / 'run', 'steps_per_iteration:=3000',
                    'learner:iterations:=2', 'real_time_factor:=10.0',
                    'policy_executor:chunk_episodes:=1', 'circle.max_episode_steps:=600')
    try:
        assert wait_until(lambda: listener.phase() == 'episode', 60), stack.output
        chunks_before = len(listener.robot_chunks())
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(SetBool.Request(data=True))
        assert wait_until(future.done, 30) and future.result().success
        t_stop = time.monotonic()
        # The episode in progress is cut: its samples go out, truncated, never terminal, and
        # out of J_C (no episode return). An episode that ended just before the e-stop may
        # come first, under load.
        def cut() -> list[dict]:
            return [c for c in listener.robot_chunks()[chunks_before:]
                    if len(c['episode_return']) == 0]
        assert wait_until(cut, 30), [c['episode_return'] for c in listener.robot_chunks()]
        assert cut()[0]['truncated'][-1, 0]
        assert not any(c['terminated'].any() for c in listener.robot_chunks()[chunks_before:])
        assert wait_until(lambda: listener.at_rest_since(t_stop + 1.0), 30)
        assert wait_until(lambda: listener.phase() == 'stopped'
                          and 'e-stop' in listener.diags[-1]['message'], 30)
        assert int(listener.diags[-1]['cut_episodes']) >= 1
        # Released explicitly, the robot resets to a start pose and learns on.
        future = client.call_async(SetBool.Request(data=False))
        assert wait_until(future.done, 30)
        assert wait_until(lambda: listener.phase() == 'episode', 30), listener.diags[-3:]
    finally:
        assert stack.stop(timeout=40) == 0, stack.output
    assert 'e-stop latched by the e_stop service' in stack.output


def test_simulators_and_a_robot_mix_in_one_iteration(probe, ros_env, tmp_path):
    out = tmp_path / 'run'
    # The robot and a simulator start together: chunks of one episode (150 samples) for the
    # robot; worker 0 of a fleet of 2 sends half an iteration (19 steps of 16 robots), far
    # faster: it fills the first iteration alone, and a new policy cuts the robot's episode.
    # The robot sends that part all the same; the learner drops it as stale but expects the
    # robot from then on and holds the simulator back for it, longer after each miss (a cut
    # in its reset leaves it nothing to send). (Before, the robot was starved: the simulator
    # filled every iteration.)
    stack = bringup(ros_env, out, 'steps_per_iteration:=600', 'learner:iterations:=8',
                    'real_time_factor:=10.0', 'policy_executor:chunk_episodes:=1')
    worker = NodeProcess(worker_command('fleet_sim', 0, 2, ['-p', 'steps_per_iteration:=600'],
                                        str(tmp_path), robot=LAB), ros_env)
    try:
        assert wait_until(lambda: stack.proc.poll() is not None, 180), stack.output
        assert stack.proc.returncode == 0, stack.output
    finally:
        stack.stop(timeout=40)
        worker.stop()
    table = [shares(r) for r in rows(out)]
    assert len(table) == 8 and all(sum(s.values()) == 600 for s in table), table
    # When the robot first delivers depends on how fast it starts and resets (a cold machine
    # may take a few iterations); from then on it is expected, and the rows mix both sources.
    robot = [s.get('robot', 0) > 0 for s in table]
    assert any(robot[:5]), table  # not starved
    since = table[robot.index(True):]
    mixed = [s.get('robot', 0) > 0 and s.get('/worker_0/policy_executor', 0) > 0
             for s in since]
    assert len(since) >= 3 and sum(mixed) >= len(since) - 1, table


def _node(ros_env, module: str, *args: str, extra: tuple[str, ...] = ()) -> NodeProcess:
    return NodeProcess([sys.executable, '-m', f'cpo_ros.nodes.{module}', *args, '--ros-args',
                        '--params-file', str(config_file('learn_on_robot')), '--params-file',
                        str(profile_path(LAB)), '-p', 'use_sim_time:=true',
                        '-p', 'real_time_factor:=10.0',
                        '-p', 'policy_executor:diagnostics_rate_hz:=5.0',
                        '-p', 'policy_executor:max_policy_age_s:=2.0',
                        '-p', 'steps_per_iteration:=3000', *extra], ros_env)


def test_a_killed_learner_stops_the_robot_which_learns_on_when_it_returns(probe, ros_env,
                                                                          tmp_path):
    listener = RobotListener(probe)
    out = tmp_path / 'run'
    learner_args = ('-p', f'learner:out:={out}', '-p', 'learner:iterations:=3')
    nodes = [_node(ros_env, 'sim_bridge'), _node(ros_env, 'safe_area_monitor'),
             _node(ros_env, 'policy_executor', '--robot')]
    learner = _node(ros_env, 'learner', extra=learner_args)
    try:
        assert wait_until(lambda: listener.phase() == 'episode', 60), nodes[2].output
        os.kill(learner.proc.pid, signal.SIGKILL)
        learner.wait(10)
        t_kill = time.monotonic()
        assert wait_until(lambda: 'learner lost' in listener.diags[-1]['message'], 30), \
            listener.diags[-1]
        t_lost = time.monotonic()
        assert listener.phase() == 'stopped'
        assert wait_until(lambda: listener.at_rest_since(t_lost + 0.5), 30)
        # From then on the executor sends zero (the gate may still turn a robot near the edge
        # back inside).
        later = [c for c in listener.policy_commands if c[0] > t_lost + 0.3]
        assert later and all(c[1] == 0.0 and c[2] == 0.0 for c in later)
        assert t_lost - t_kill < 10  # max_policy_age_s 2 s after the last heartbeat
        # The learner returns (resume: auto) and the robot samples for it again.
        learner = _node(ros_env, 'learner', extra=learner_args)
        assert wait_until(lambda: 'learner lost' not in listener.diags[-1]['message']
                          and listener.phase() == 'episode', 60), listener.diags[-1]
        seen = len(listener.robot_chunks())
        assert wait_until(lambda: len(listener.robot_chunks()) > seen, 60)
    finally:
        for node in [learner, *reversed(nodes)]:
            node.stop()
    assert re.search(r'resumed .* at iteration 0|new run', learner.output), learner.output


def test_ctrl_c_under_ros2_launch_stops_the_robot_and_saves_the_run(probe, ros_env, tmp_path):
    # Ctrl-C under `ros2 launch` reaches every node twice: from the terminal (its process
    # group) and from launch, which forwards it. The second must not break the shutdown.
    listener = RobotListener(probe)
    out = tmp_path / 'run'
    nodes = [_node(ros_env, 'sim_bridge'), _node(ros_env, 'safe_area_monitor'),
             _node(ros_env, 'policy_executor', '--robot'),
             _node(ros_env, 'learner', extra=('-p', f'learner:out:={out}',
                                               '-p', 'steps_per_iteration:=300'))]
    try:
        assert wait_until(lambda: len(rows(out)) >= 1 and listener.phase() == 'episode', 90), \
            nodes[3].output
        for _ in range(2):
            for node in nodes:
                node.proc.send_signal(signal.SIGINT)
            time.sleep(0.02)
        codes = [node.wait(75) for node in nodes]
    finally:
        for node in nodes:
            node.stop()
    assert codes == [0, 0, 0, 0], [n.output[-2000:] for n in nodes]
    assert 'training stopped' in nodes[3].output and (out / 'curves.png').is_file()
    assert (out / 'checkpoints' / 'last.pt').is_file()
    # The last command each sent: zero from the executor to the gate, zero from the gate.
    assert listener.policy_commands[-1][1:] == (0.0, 0.0)
    assert listener.commands[-1][1:] == (0.0, 0.0)


def test_a_forged_policy_never_drives_the_robot_and_learning_goes_on(probe, ros_env, stranger_node,
                                                                     tmp_path):
    """A well-formed policy of version 10**9 in the learner's own session (issue 18).

    The robot executor refuses it unread (it was not announced on cpo/iteration), counts it,
    never loads it, and learns on with the learner's policies. Before, it loaded it, drove
    the robot with it, and refused the learner's lower versions until it was restarted.
    """
    from test_fuzz import forged_policy, Latched, Stranger

    from cpo_ros.ros.conversions import arrays_to_msg

    listener = RobotListener(probe)
    latched = Latched(probe)
    out = tmp_path / 'run'
    stack = bringup(ros_env, out, 'steps_per_iteration:=300', 'learner:iterations:=100',
                    'real_time_factor:=10.0')
    stranger = Stranger(stranger_node('stranger'))
    try:
        assert wait_until(lambda: listener.phase() == 'episode' and len(latched.arrays) == 2,
                          90), stack.output
        session = int(latched.arrays['cpo/iteration']['session'])
        forged, _action = forged_policy(latched.arrays['cpo/policy'], session)
        # The learner's, the probe's and the robot executor's readers.
        assert wait_until(lambda: stranger.pubs['cpo/policy'].get_subscription_count() >= 2,
                          30)
        done = len(rows(out))
        stranger.pubs['cpo/policy'].publish(arrays_to_msg(forged))
        assert wait_until(lambda: listener.diags and listener.diags[-1].get(
            'refused_policy.announcement') == '1', 30), listener.diags[-1:]
        assert wait_until(lambda: len(rows(out)) >= done + 2, 120), stack.output[-3000:]
    finally:
        stranger.stop()
        stack.stop(timeout=40)
    versions = [int(d['policy_version']) for d in listener.diags if 'policy_version' in d]
    assert versions and max(versions) < 10 ** 9
    # The refusal went out inside the executor's own status, never as a bare list of counters.
    assert listener.bare == 0
    assert all(int(c['policy_version']) < 10 ** 9 for c in listener.robot_chunks())
