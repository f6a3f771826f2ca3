"""Hardware-in-the-loop: the real-time sim bridge as the robot, an exported policy deployed
with `cpo-ros bringup deploy`, and the safe-area monitor as the shield.
"""

import sys
import time

from conftest import NodeProcess, wait_until
from geometry_msgs.msg import TwistStamped
import pytest
from std_msgs.msg import Bool, Float32
from std_srvs.srv import SetBool

from cpo_ros.ros import qos

ROBOT = ['mode:=realtime', 'odom_rate_hz:=25.0',
         'cmd_timeout_s:=0.5', 'seed:=4']


def deploy(ros_env, policy_dir, shield_mode):
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'deploy', '--ros-args',
           '-p', f'policy_executor:policy_dir:={policy_dir}',
           '-p', f'safe_area_monitor:shield_mode:={shield_mode}']
    return NodeProcess(cmd, ros_env)


def count_exits(probe, seconds):
    states = []
    probe.create_subscription(Bool, 'safety/in_safe_area', lambda m: states.append(m.data),
                              qos.METRICS)
    time.sleep(seconds)
    exits = sum(1 for a, b in zip(states, states[1:], strict=False) if a and not b)
    return exits + (1 if states and not states[0] else 0), len(states)


@pytest.mark.parametrize('shield_mode,expect_exits', [('gate', False), ('pass', True)])
def test_shield_keeps_an_unsafe_policy_inside(start_node, probe, ros_env, unsafe_policy,
                                              shield_mode, expect_exits):
    robot = start_node('sim_bridge', *ROBOT)
    stack = deploy(ros_env, unsafe_policy, shield_mode)
    try:
        assert stack.wait_for_output('policy from', 60), stack.output
        interventions = []
        probe.create_subscription(Float32, 'shield/interventions',
                                  lambda m: interventions.append(m.data), qos.METRICS)
        exits, samples = count_exits(probe, 12.0)
        assert samples > 100, (samples, robot.output, stack.output)
        if expect_exits:
            assert exits > 0  # the same run without the shield leaves the area
        else:
            assert exits == 0
            # The shield's count comes at its own rate: wait for a report that it acted.
            assert wait_until(lambda: bool(interventions) and interventions[-1] > 0, 30), \
                interventions
    finally:
        assert stack.stop(timeout=40) == 0, stack.output


def test_stale_odometry_and_e_stop_mean_stop(start_node, probe, ros_env, unsafe_policy):
    robot = start_node('sim_bridge', *ROBOT)
    stack = deploy(ros_env, unsafe_policy, 'gate')
    commands = []
    probe.create_subscription(TwistStamped, 'cmd_vel',
                              lambda m: commands.append((time.monotonic(), m.twist.linear.x,
                                                         m.twist.angular.z)), qos.CLI_DEFAULT)
    e_stop = probe.create_publisher(Bool, 'e_stop', qos.CLI_DEFAULT)  # as `ros2 topic pub`
    try:
        assert wait_until(lambda: any(abs(c[1]) > 0.1 or abs(c[2]) > 0.1 for c in commands),
                          60), stack.output
        # E-stop latches a stop until released.
        assert wait_until(lambda: e_stop.get_subscription_count() > 0, 10)
        e_stop.publish(Bool(data=True))
        time.sleep(1.0)
        t0 = time.monotonic()
        time.sleep(1.0)
        latched = [c for c in commands if c[0] > t0]
        assert latched and all(c[1] == 0.0 and c[2] == 0.0 for c in latched)
        # Released by the service alone (a false on the topic releases nothing).
        client = probe.create_client(SetBool, 'e_stop')
        assert client.wait_for_service(timeout_sec=10)
        assert client.call(SetBool.Request(data=False), timeout_sec=10).success
        assert wait_until(lambda: commands[-1][1] != 0.0 or commands[-1][2] != 0.0, 10)
        # The robot's odometry stops (driver dead): zero velocity within the timeout.
        robot.stop()
        t_dead = time.monotonic()
        assert wait_until(lambda: commands[-1][0] > t_dead + 0.5 and commands[-1][1] == 0.0
                          and commands[-1][2] == 0.0, 5)
        time.sleep(1.0)
        stopped = [c for c in commands if c[0] > t_dead + 0.6]
        assert stopped and all(c[1] == 0.0 and c[2] == 0.0 for c in stopped)
    finally:
        assert stack.stop(timeout=40) == 0, stack.output


def test_deploy_refuses_a_missing_or_mismatched_policy(ros_env, tmp_path, unsafe_policy):
    # A deploy that cannot configure ends by itself, saying why (exit code 2).
    missing = deploy(ros_env, tmp_path / 'nowhere', 'gate')
    assert missing.wait(60) == 2, missing.output
    assert f'{tmp_path / "nowhere"}' in missing.output and 'no such file' in missing.output
    assert 'policy_executor could not configure' in missing.output
    altered = tmp_path / 'altered'
    altered.mkdir()
    (altered / 'policy.json').write_text((unsafe_policy / 'policy.json').read_text())
    (altered / 'policy.pt').write_bytes((unsafe_policy / 'policy.pt').read_bytes()[:-10])
    stack = deploy(ros_env, altered, 'gate')
    assert stack.wait(60) == 2, stack.output
    assert 'SHA-256 does not match' in stack.output
