"""Every node's --help lists all its modes and every parameter of each."""

import subprocess
import sys

import pytest

from cpo_ros.ros.graph import GRAPHS
from cpo_ros.ros.specs import DEPLOY_EXECUTOR_PARAMS, EXECUTOR_PARAMS, NODE_PARAMS


def _help(executable: str, *args: str) -> str:
    done = subprocess.run([sys.executable, '-m', f'cpo_ros.nodes.{executable}', *args, '--help'],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize('executable', sorted({e.executable for g in GRAPHS.values()
                                               for e in g.nodes + g.worker_nodes}))
def test_help_lists_every_parameter(executable):
    text = _help(executable)
    for spec in NODE_PARAMS[executable]:
        assert f'  {spec.name} (default ' in text, (executable, spec.name)


@pytest.mark.parametrize('args', [(), ('--deploy',)])
def test_policy_executor_help_shows_both_modes(args):
    text = _help('policy_executor', *args)
    assert text.startswith('usage: ros2 run cpo_ros policy_executor [-h] [--deploy]')
    training, deploy = text.split('== mode: --deploy')
    assert '== mode: training (default) ==' in training
    for spec in EXECUTOR_PARAMS:
        assert f'  {spec.name} (default ' in training, spec.name
    for spec in DEPLOY_EXECUTOR_PARAMS:
        assert f'  {spec.name} (default ' in deploy, spec.name


@pytest.mark.parametrize('cmd,expect', [
    # rclpy ignores words before --ros-args: a misspelt mode flag would run the training mode.
    (['-m', 'cpo_ros.nodes.policy_executor', '--deplyo'], "unknown argument(s) ['--deplyo']"),
    (['-m', 'cpo_ros.nodes.learner', 'iterations:=5'], "unknown argument(s) ['iterations:=5']"),
    # Words rcl cannot parse: a clear error, no traceback.
    (['-m', 'cpo_ros.cli', 'bringup', 'circle_sim', '--stand-by'],
     "ROS arguments not understood: ['--stand-by']"),
    (['-m', 'cpo_ros.cli', 'bringup', 'learn_on_robot', '--robot'],
     '--robot needs a robot profile'),
])
def test_an_unknown_command_line_argument_is_refused_with_exit_code_2(cmd, expect, ros_env):
    done = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=120,
                          env=ros_env)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and expect in output, output
    assert 'Traceback' not in output


@pytest.mark.parametrize('name', sorted(GRAPHS))
def test_bringup_help_lists_its_nodes_and_starts_none(name):
    result = subprocess.run([sys.executable, '-m', 'cpo_ros.cli', 'bringup', name, '--help'],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'cpo-ros bringup {name}: the nodes of launch/{name}.launch.py' in result.stdout
    for entry in GRAPHS[name].nodes:
        assert entry.name in result.stdout
    assert 'started' not in result.stdout and 'error' not in result.stderr
