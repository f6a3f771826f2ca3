"""The ROS 2 graph with real rclpy: CPO iterations through the topics, several processes."""

import csv
import sys

from conftest import CONFIG, NodeProcess, wait_until
import numpy as np
import pytest
from std_msgs.msg import UInt8MultiArray

from cpo_ros.ros import qos
from cpo_ros.ros.conversions import msg_to_arrays

SMALL = ['num_envs:=4', 'steps_per_iteration:=400', 'circle.max_episode_steps:=20']


def learner_params(out, iterations=3):
    return [f'out:={out}', f'iterations:={iterations}', 'value_epochs:=2']


def progress_rows(out):
    path = out / 'progress.csv'
    if not path.is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


EXPECTED_TOPICS = {
    '/batch/state': 'std_msgs/msg/Float32MultiArray',
    '/batch/cmd_vel': 'std_msgs/msg/Float32MultiArray',
    '/odom': 'nav_msgs/msg/Odometry',
    '/safety/cost': 'std_msgs/msg/Float32',
    '/clock': 'rosgraph_msgs/msg/Clock',
    '/cpo/rollout': 'std_msgs/msg/UInt8MultiArray',
    '/cpo/policy': 'std_msgs/msg/UInt8MultiArray',
    '/cpo/episode_return': 'std_msgs/msg/Float32',
    '/cpo/episode_cost': 'std_msgs/msg/Float32',
    '/cpo/cost_limit': 'std_msgs/msg/Float32',
    '/cpo/kl': 'std_msgs/msg/Float32',
    '/episode/return': 'std_msgs/msg/Float32',
    '/episode/cost': 'std_msgs/msg/Float32',
    '/safety/in_safe_area': 'std_msgs/msg/Bool',
    '/diagnostics': 'diagnostic_msgs/msg/DiagnosticArray',
    '/safe_area/markers': 'visualization_msgs/msg/MarkerArray',
}


def test_four_node_processes_train_through_the_topics(start_node, probe, tmp_path):
    rollouts = []
    probe.create_subscription(UInt8MultiArray, 'cpo/rollout',
                              lambda m: rollouts.append(int(msg_to_arrays(m)['policy_version'])),
                              qos.ROLLOUT)
    # The learner stays up after its budget, so all four names can be seen together.
    procs = [start_node('sim_bridge', *SMALL), start_node('safe_area_monitor', *SMALL),
             start_node('policy_executor', *SMALL),
             start_node('learner', *SMALL, *learner_params(tmp_path),
                        'shutdown_when_done:=false')]
    names = {'sim_bridge', 'safe_area_monitor', 'policy_executor', 'learner'}
    assert wait_until(lambda: names <= set(probe.get_node_names()), 60), probe.get_node_names()

    def topics():
        return {name: types[0] for name, types in probe.get_topic_names_and_types()}
    assert wait_until(lambda: set(EXPECTED_TOPICS) <= set(topics()), 30), topics()
    for name, kind in EXPECTED_TOPICS.items():
        assert topics()[name] == kind, name

    learner = procs[-1]
    assert learner.wait_for_output('training done', 180), learner.output
    assert [int(r['iteration']) for r in progress_rows(tmp_path)] == [1, 2, 3]
    assert (tmp_path / 'curves.png').is_file() and (tmp_path / 'checkpoints/last.pt').is_file()
    # Three rows: the learner drops stale chunks, so the executor sampled versions 0, 1 and 2.
    # The probe may join after the last rollout (three small iterations take about a second);
    # what it saw must be those versions, or the final policy's (version 3) that the executor,
    # not told that training is over, samples with next.
    assert set(rollouts) <= {0, 1, 2, 3}, rollouts
    for proc in procs:
        assert proc.proc.poll() is None, proc.output  # still serving
        assert proc.stop() == 0, proc.output


@pytest.mark.parametrize('executor', ['events', 'single'])
def test_bringup_runs_the_same_graph_in_one_process(ros_env, tmp_path, executor):
    ros_env = dict(ros_env, CPO_ROS_EXECUTOR=executor)
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'circle_sim', '--ros-args',
           *[x for p in SMALL for x in ('-p', p)],  # "/**" settings: a bare -p reaches all
           '-p', f'learner:out:={tmp_path}', '-p', 'learner:iterations:=2',
           '-p', 'learner:value_epochs:=2']
    bringup = NodeProcess(cmd, ros_env)
    assert bringup.wait(timeout=180) == 0, bringup.output
    assert [int(r['iteration']) for r in progress_rows(tmp_path)] == [1, 2]
    assert 'it    2' in bringup.output and 'training done' in bringup.output
    assert (tmp_path / 'curves.png').is_file()


def test_a_late_executor_gets_the_latest_policy_and_training_goes_on(start_node, probe,
                                                                     tmp_path):
    start_node('sim_bridge', *SMALL)
    learner = start_node('learner', *SMALL, *learner_params(tmp_path, iterations=4))
    first = start_node('policy_executor', *SMALL)
    assert wait_until(lambda: len(progress_rows(tmp_path)) >= 2, 120), learner.output
    assert first.stop() == 0
    done = len(progress_rows(tmp_path))
    # A subscriber that arrives late still receives the newest policy (transient local).
    versions = []
    probe.create_subscription(UInt8MultiArray, 'cpo/policy',
                              lambda m: versions.append(int(msg_to_arrays(m)['version'])),
                              qos.LATCHED)
    assert wait_until(lambda: versions, 20)
    assert versions[-1] >= done
    start_node('policy_executor', *SMALL)
    assert learner.wait(timeout=180) == 0, learner.output
    assert [int(r['iteration']) for r in progress_rows(tmp_path)] == [1, 2, 3, 4]


def test_a_bad_parameter_is_refused_at_start_up(start_node, tmp_path):
    learner = start_node('learner', f'out:={tmp_path}', 'cost_limit:=-2.0')
    assert learner.wait(timeout=60) == 2
    assert 'cost_limit' in learner.output and 'allowed' in learner.output
    # A whole number for a float parameter (an integer to rcl) is taken, and range-checked.
    learner = start_node('learner', f'out:={tmp_path}', 'obs_clip:=-1')
    assert learner.wait(timeout=60) == 2
    assert 'obs_clip = -1.0 is out of range' in learner.output, learner.output
    # A parameter declared from AlgoConfig alone is checked by AlgoConfig's own ranges.
    learner = start_node('learner', f'out:={tmp_path}', 'obs_clip:=-1.0')
    assert learner.wait(timeout=60) == 2
    assert 'obs_clip = -1.0 is out of range' in learner.output
    bridge = start_node('sim_bridge', 'num_envs:=0')
    assert bridge.wait(timeout=60) == 2
    assert 'num_envs' in bridge.output and '[1, 1024]' in bridge.output
    bridge = start_node('sim_bridge', 'mode:=fast')
    assert bridge.wait(timeout=60) == 2
    assert 'mode' in bridge.output and 'lockstep' in bridge.output
    # A misspelt parameter is refused before the run directory is written: no blank run for a
    # corrected restart (resume: auto) to resume.
    learner = start_node('learner', f'out:={tmp_path / "typo"}', 'iteratons:=5')
    assert learner.wait(timeout=60) == 2
    assert "'iteratons'" in learner.output and 'did you mean iterations' in learner.output
    assert not (tmp_path / 'typo' / 'checkpoints').exists()
    # A section for a misspelt node is refused, not skipped: its settings would fall back to
    # their defaults. A section for another package's node is no error.
    config = tmp_path / 'typo.yaml'
    config.write_text(CONFIG.read_text() + '\n/**/safe_area_moniter:\n  ros__parameters:\n'
                      '    shield_mode: gate\n/**/diff_drive_controller:\n'
                      '  ros__parameters:\n    wheel_separation: 0.16\n')
    monitor = start_node('safe_area_monitor', config=config)
    assert monitor.wait(timeout=60) == 2
    assert "section '/**/safe_area_moniter'" in monitor.output, monitor.output
    assert 'did you mean safe_area_monitor' in monitor.output


def test_malformed_messages_are_dropped_and_the_graph_keeps_running(start_node, probe,
                                                                   tmp_path):
    from std_msgs.msg import Float32MultiArray

    from cpo_ros.ros.conversions import decode_batch, encode_batch
    from cpo_ros.wire import CMD_FIELDS, STATE_FIELDS

    bridge = start_node('sim_bridge', 'num_envs:=2', 'resend_period_s:=0.2')
    learner = start_node('learner', 'num_envs:=2', *learner_params(tmp_path))
    states = []
    probe.create_subscription(Float32MultiArray, 'batch/state',
                              lambda m: states.append(decode_batch(m, STATE_FIELDS)),
                              qos.LOCKSTEP)
    cmd_pub = probe.create_publisher(Float32MultiArray, 'batch/cmd_vel', qos.LOCKSTEP)
    rollout_pub = probe.create_publisher(UInt8MultiArray, 'cpo/rollout', qos.ROLLOUT)
    assert wait_until(lambda: states, 60), bridge.output
    seq = states[-1][1]
    # Three robots' commands for a two-robot bridge, then a message with a foreign layout.
    cmd_pub.publish(encode_batch(np.zeros((3, 2)), CMD_FIELDS, seq))
    cmd_pub.publish(Float32MultiArray(data=[1.0, 2.0, 3.0]))
    assert bridge.wait_for_output('dropped a malformed batch/cmd_vel', 20), bridge.output
    # Garbage and a wrongly shaped rollout for the learner.
    assert wait_until(lambda: rollout_pub.get_subscription_count() > 0, 60), learner.output
    rollout_pub.publish(UInt8MultiArray(data=b'not an npz file'))
    assert learner.wait_for_output('dropped a malformed rollout', 20), learner.output
    from cpo_ros.ros.conversions import arrays_to_msg
    rollout_pub.publish(arrays_to_msg({'obs': np.zeros((2, 2, 9), np.float32),
                                       'policy_version': np.asarray(0)}))
    assert learner.wait_for_output('dropped a malformed rollout (field u)', 20), learner.output
    # Both still serve: the bridge steps on a well-formed command.
    cmd_pub.publish(encode_batch(np.zeros((2, 2)), CMD_FIELDS, seq))
    assert wait_until(lambda: states[-1][1] == seq + 1, 20)
    assert bridge.proc.poll() is None and learner.proc.poll() is None
    assert CONFIG.is_file()


def test_a_killed_learner_resumes_from_its_checkpoint(start_node, tmp_path):
    import signal

    start_node('sim_bridge', *SMALL)
    start_node('policy_executor', *SMALL)
    learner = start_node('learner', *SMALL, *learner_params(tmp_path, iterations=5))
    assert wait_until(lambda: len(progress_rows(tmp_path)) >= 2, 120), learner.output
    learner.proc.send_signal(signal.SIGKILL)
    learner.wait(timeout=10)
    again = start_node('learner', *SMALL, *learner_params(tmp_path, iterations=5),
                       'resume:=true')
    assert again.wait(timeout=180) == 0, again.output
    # Nothing lost, nothing repeated: one row per iteration, in order.
    assert [int(r['iteration']) for r in progress_rows(tmp_path)] == [1, 2, 3, 4, 5]
    steps = [int(r['env_steps']) for r in progress_rows(tmp_path)]
    assert steps == [400 * i for i in range(1, 6)]


def test_gather_trains_through_the_graph_with_sensor_and_marker_topics(ros_env, probe,
                                                                        tmp_path):
    from std_msgs.msg import Float32MultiArray
    from visualization_msgs.msg import MarkerArray

    from cpo_ros.ros.conversions import decode_batch

    readings, markers = [], []
    labels = tuple(f'{k}_{i}' for k in ('apple', 'bomb') for i in range(10)) + ('seq',)
    probe.create_subscription(Float32MultiArray, 'task/sensors',
                              lambda m: readings.append(decode_batch(m, labels)[0]),
                              qos.METRICS)
    probe.create_subscription(MarkerArray, 'task/markers', markers.append, qos.METRICS)
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'gather_sim', '--ros-args',
           # Enough steps (two iterations of 1,000 per robot) for the probe to join in time.
           '-p', 'num_envs:=4', '-p', 'steps_per_iteration:=4000',
           '-p', f'learner:out:={tmp_path}', '-p', 'learner:iterations:=2',
           '-p', 'learner:value_epochs:=2']
    bringup = NodeProcess(cmd, ros_env)
    assert bringup.wait(timeout=180) == 0, bringup.output
    rows = progress_rows(tmp_path)
    assert [int(r['iteration']) for r in rows] == [1, 2]
    assert float(rows[0]['cost_limit']) == 0.1
    assert readings and readings[-1].shape == (1, 20)
    assert markers and {m.ns for m in markers[-1].markers} == {'apples', 'bombs'}
    import yaml
    recorded = yaml.safe_load((tmp_path / 'config.yaml').read_text())
    assert recorded['config']['task'] == 'gather'
    # Every task option in effect, as `cpo-ros train` records them (docs/training.md).
    assert {'n_apples', 'n_bombs', 'max_episode_steps'} <= set(recorded['task_options'])


def test_a_second_constraint_trains_through_the_graph_with_per_constraint_topics(ros_env, probe,
                                                                                 tmp_path):
    from std_msgs.msg import Float32

    seen = {}
    wanted = {f'/cpo/{name}_{i}' for i in (0, 1) for name in ('episode_cost', 'cost_limit')}
    for topic in wanted:
        probe.create_subscription(Float32, topic,
                                  lambda m, t=topic: seen.setdefault(t, m.data), qos.METRICS)

    def advertised() -> set[str]:
        return {name for name, types in probe.get_topic_names_and_types()
                if name in wanted and types == ['std_msgs/msg/Float32']}
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'circle_sim', '--ros-args',
           *[x for p in SMALL for x in ('-p', p)], '-p', 'circle.speed_limit:=0.5',
           '-p', 'learner:cost_limit:=[5.0, 4.0]', '-p', f'learner:out:={tmp_path}',
           '-p', 'learner:iterations:=2', '-p', 'learner:value_epochs:=2',
           '-p', 'learner:shutdown_when_done:=false']
    bringup = NodeProcess(cmd, ros_env)
    try:
        # The learner stays up: its per-constraint publishers stay in the graph. Two small
        # iterations may end before the probe joins, so values are checked when they came.
        assert wait_until(lambda: len(progress_rows(tmp_path)) >= 2 and advertised() == wanted,
                          180), bringup.output
    finally:
        bringup.stop()
    rows = progress_rows(tmp_path)
    assert float(rows[0]['cost_limit_1']) == 4.0 and rows[-1]['episode_cost_1'] != ''
    assert seen.get('/cpo/cost_limit_1', 4.0) == 4.0 and seen.get('/cpo/cost_limit_0', 5.0) == 5.0
    assert 'cost   ' in bringup.output and '/ 4.00' in bringup.output
