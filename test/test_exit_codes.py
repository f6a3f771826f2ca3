"""A failed node shows in the exit code of `ros2 launch` and of `cpo-ros bringup`.

launch is not on PyPI, so the launch files' exit handling is exercised through its callback
with launch's two action classes stood in (records of what the callback returns); the rule
behind it (cpo_ros.ros.exit_policy) is pure Python. The real `ros2 launch` was checked by hand
(docs/ros.md, "Watching a run").
"""

import sys
import types

from conftest import NodeProcess, rows
import pytest

from cpo_ros.ros.exit_policy import exit_outcome, FailureRecord
from cpo_ros.ros.graph import graph


@pytest.mark.parametrize('name,code,ends,respawn,down,expect', [
    # Ctrl-C or the learner's clean end: every node stops with the launch, nothing failed.
    ('sim_bridge', 0, False, False, True, (False, False, 'stopped with the launch')),
    ('safe_area_monitor', -15, True, False, True, (False, False, 'stopped with the launch')),
    # Could not configure: ends the launch with an error, respawn or not.
    ('policy_executor', 2, False, False, False, (True, True, 'could not configure')),
    ('learner', 2, True, True, False, (True, True, 'could not configure')),
    # The learner's budget is spent: a clean end.
    ('learner', 0, True, True, False, (True, False, 'ended (exit code 0)')),
    # Training respawns a crashed node: not a failure of the launch.
    ('sim_bridge', -9, False, True, False, (False, False, 'started again')),
    ('learner', 1, True, True, False, (False, False, 'started again')),
    # Deployment: the shield failing ends the launch with an error ...
    ('safe_area_monitor', 1, True, False, False, (True, True, 'safe_area_monitor failed')),
    # ... a dead executor leaves the shield running, and fails the launch when it ends.
    ('policy_executor', -9, False, False, False, (False, True, 'shield keeps the robot')),
])
def test_exit_outcome(name, code, ends, respawn, down, expect):
    outcome = exit_outcome(name, code, ends_bringup=ends, respawn=respawn, shutting_down=down)
    assert (outcome.ends_launch, outcome.failed) == expect[:2]
    assert expect[2] in outcome.message and name in outcome.message


@pytest.mark.parametrize('name', ['deploy', 'learn_on_robot'])
def test_a_robots_shield_is_never_respawned_and_its_end_ends_the_bringup(name):
    # A respawned monitor would start unlatched: a latched e-stop must end only by its release.
    spec = graph(name)
    monitor, = (e for e in spec.nodes if e.name == 'safe_area_monitor')
    assert not spec.restarts(monitor)
    outcome = exit_outcome(monitor.name, -9, ends_bringup=monitor.ends_bringup,
                           respawn=spec.restarts(monitor), shutting_down=False)
    assert outcome.ends_launch and outcome.failed
    # The learner beside it is still respawned.
    assert all(spec.restarts(e) == spec.respawn for e in spec.nodes if e is not monitor)


class _Action:
    """A stand-in for launch.actions.LogInfo / Shutdown: records its keyword arguments."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs


@pytest.fixture
def launch_callback(monkeypatch):
    """Return launch_description._on_exit, with launch's actions stood in if launch is absent."""
    try:
        import launch.actions  # noqa: F401 - a ROS install: the real actions
    except ImportError:  # the repository's launch/ folder is no package `launch`
        actions = types.ModuleType('launch.actions')
        actions.LogInfo = type('LogInfo', (_Action,), {})
        actions.Shutdown = type('Shutdown', (_Action,), {})
        monkeypatch.setitem(sys.modules, 'launch', types.ModuleType('launch'))
        monkeypatch.setitem(sys.modules, 'launch.actions', actions)
    from cpo_ros.ros import launch_description
    return launch_description


def _exit(on_exit, code: int, shutting_down: bool = False):
    event = types.SimpleNamespace(returncode=code)
    context = types.SimpleNamespace(is_shutdown=shutting_down)
    return on_exit(event, context)


def test_launch_raises_on_a_node_that_cannot_configure(launch_callback):
    # launch's LaunchService.run returns 1 only for an exception raised in the launch.
    record = FailureRecord()
    executor = launch_callback._on_exit('policy_executor', False, False, record)
    shield = launch_callback._on_exit('safe_area_monitor', True, False, record)
    with pytest.raises(launch_callback.LaunchFailed, match='policy_executor could not configure'):
        _exit(executor, 2)
    # The shield then stops with the launch: logged, raised only once.
    (log,) = _exit(shield, 0, shutting_down=True)
    assert 'safe_area_monitor stopped with the launch' in log.kwargs['msg']


def test_launch_fails_at_ctrl_c_after_an_executor_died(launch_callback):
    record = FailureRecord()
    executor = launch_callback._on_exit('policy_executor', False, False, record)
    shield = launch_callback._on_exit('safe_area_monitor', True, False, record)
    (log,) = _exit(executor, -9)  # the shield runs on and keeps the robot stopped
    assert 'shield keeps the robot stopped' in log.kwargs['msg']
    failed = r'policy_executor failed \(exit code -9'
    with pytest.raises(launch_callback.LaunchFailed, match=failed):
        _exit(shield, 0, shutting_down=True)


def test_launch_ends_cleanly_when_the_learner_is_done(launch_callback):
    record = FailureRecord()
    learner = launch_callback._on_exit('learner', True, True, record)
    bridge = launch_callback._on_exit('sim_bridge', False, True, record)
    log, shutdown = _exit(learner, 0)
    assert 'learner ended (exit code 0): ending the launch' == log.kwargs['msg']
    assert shutdown.kwargs['reason'] == 'learner ended (exit code 0)'
    (log,) = _exit(bridge, 0, shutting_down=True)  # not "ended; ... keeps the robot stopped"
    assert log.kwargs['msg'] == 'sim_bridge stopped with the launch (exit code 0)'


def test_bringup_exits_2_on_a_deploy_that_cannot_start(ros_env, tmp_path):
    missing = tmp_path / 'no_policy'
    stack = NodeProcess([sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'deploy', '--ros-args',
                         '-p', f'policy_executor:policy_dir:={missing}'], ros_env)
    try:
        assert stack.wait(120) == 2, stack.output
        assert f'{missing}/policy.json: no such file' in stack.output
        assert 'policy_executor could not configure (exit code 2' in stack.output
    finally:
        stack.stop()


def test_launch_refuses_a_params_file_that_does_not_exist(tmp_path):
    # launch_ros only warns about it and starts the nodes on their defaults.
    from cpo_ros.ros.launch_description import _parameter_files

    missing = tmp_path / 'my_deploy_typo.yaml'
    context = types.SimpleNamespace(launch_configurations={'params_file': str(missing)})
    with pytest.raises(ValueError, match=f'params_file:={missing}: no such file'):
        _parameter_files(context)
    missing.write_text('{}\n')
    assert _parameter_files(context) == [str(missing)]


@pytest.mark.parametrize('setting,named', [
    ('learner:task:=ring', "parameter task = 'ring', but sim_bridge in this process has "
                           "'circle'"),
    ('learner:steps_per_iteration:=4000', 'parameter steps_per_iteration = 4000, but '
                                          'sim_bridge in this process has 50000'),
])
def test_a_bringups_nodes_that_disagree_on_the_task_end_it_before_a_run_exists(
        ros_env, tmp_path, setting, named):
    # Ring has Circle's sizes: the learner trained Ring's run on Circle's samples; a learner's
    # own batch refused every chunk for ever.
    out = tmp_path / 'run'
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'circle_sim', '--ros-args',
           '-p', setting, '-p', f'learner:out:={out}']
    node = NodeProcess(cmd, ros_env)
    assert node.wait(120) == 2, node.output
    assert f'learner: {named}' in node.output, node.output
    assert not out.exists()


def test_an_executor_of_another_task_refuses_the_learners_policy(ros_env, tmp_path):
    # A fleet's learner runs in a process of its own: circle_long has Circle's sizes, so only
    # the task the policy names tells its samples apart.
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'fleet_sim', '--ros-args',
           '-p', 'workers:=1', '-p', 'steps_per_iteration:=2000',
           '-p', 'learner:task:=circle_long',
           '-p', f'learner:out:={tmp_path / "run"}']
    node = NodeProcess(cmd, ros_env)
    try:
        assert node.wait_for_output('dropped a malformed policy (field task)', 120), node.output
        assert "policy of task 'cpo_ros.tasks.circle:CircleLong " in node.output
        assert "this node runs 'cpo_ros.tasks.circle:Circle " in node.output
        assert not (tmp_path / 'run' / 'progress.csv').exists()  # no iteration: no samples
    finally:
        node.stop()


def test_ctrl_c_of_a_bringup_starts_no_update_and_ends_the_sampling(ros_env, tmp_path):
    # The lock-step loop keeps the executor's event queue full: the spin returned at its timeout
    # only when the executors paused at the iteration's end, so a Ctrl-C sampled on and
    # updated once more ("it 1" seconds after the signal).
    out = tmp_path / 'run'
    node = NodeProcess([sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'circle_sim',
                        '--ros-args', '-p', 'learner:iterations:=3',
                        '-p', f'learner:out:={out}'], ros_env)
    try:
        assert node.wait_for_output('policy version 0 loaded', 120), node.output
    finally:
        assert node.stop(timeout=60) == 0, node.output
    assert 'training stopped: iteration 0/3' in node.output, node.output
    assert not (out / 'progress.csv').exists() or len(rows(out)) == 0


def test_ctrl_c_while_the_node_processes_start_ends_quietly(ros_env, tmp_path):
    """A Ctrl-C at once: the node processes are still importing torch (seconds).

    The bring-up stops them with SIGTERM, which ends a process still importing by its default
    action; a forwarded SIGINT raised KeyboardInterrupt in the middle of an import, a traceback
    per process.
    """
    import signal

    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'learn_on_robot', '--stand-in',
           '--robot', 'turtlebot3_burger', '--ros-args', '-p', f'learner:out:={tmp_path / "run"}']
    node = NodeProcess(cmd, ros_env)
    try:
        assert node.wait_for_output('started learner', 60), node.output
        node.proc.send_signal(signal.SIGINT)
        assert node.wait(60) == 0, node.output
    finally:
        node.stop()
    assert 'Traceback' not in node.output and 'KeyboardInterrupt' not in node.output, node.output
