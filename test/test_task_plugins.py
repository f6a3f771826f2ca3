"""A user's task outside cpo_ros: found by entry point and dotted path, run in every path.

The example package examples/corridor_task (its own pyproject.toml, entry point in the
`cpo_ros.tasks` group) is installed into the test venv when it is not importable. It trains
directly, through the ROS graph, is exported and drives the stand-in robot under the deploy.
Bad task definitions are refused at start-up with exit code 2, naming the task and the fault.
"""

import csv
import importlib.util
import json
from pathlib import Path
import re
import subprocess
import sys
import textwrap

from conftest import NodeProcess, wait_until
import numpy as np
import pytest
from test_deploy_robot import bringup_deploy, Listener

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / 'examples' / 'corridor_task'
SMALL = ['num_envs:=4', 'steps_per_iteration:=400', 'corridor.max_episode_steps:=20']


@pytest.fixture(scope='session', autouse=True)
def corridor_installed():
    """Install examples/corridor_task (no network: no deps, no build isolation) if missing."""
    if importlib.util.find_spec('corridor_task') is None:
        subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
                        '--no-build-isolation', str(EXAMPLE)], check=True, timeout=300)
        importlib.invalidate_caches()
    from importlib import metadata
    assert 'corridor' in {ep.name for ep in metadata.entry_points(group='cpo_ros.tasks')}


def cli(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, '-m', 'cpo_ros.cli', *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def progress(out: Path) -> list[dict]:
    with open(out / 'progress.csv') as f:
        return list(csv.DictReader(f))


def test_cpo_ros_tasks_lists_built_in_and_installed_tasks_with_costs_and_limits():
    result = cli('tasks', '--json')
    assert result.returncode == 0, result.stderr
    rows = {r['name']: r for r in json.loads(result.stdout)}
    assert {'circle', 'circle_long', 'gather', 'goal', 'corridor'} <= set(rows)
    assert rows['corridor']['origin'] == 'installed'
    assert rows['corridor']['path'] == 'corridor_task.tasks:Corridor'
    assert rows['corridor']['costs'] == ['wall', 'reverse']
    assert rows['corridor']['limits'] == [5.0, 10.0]
    assert rows['goal']['costs'] == ['collisions'] and rows['goal']['limits'] == [50.0]
    text = cli('tasks').stdout
    assert 'wall <= 5, reverse <= 10' in text and 'bombs <= 0.1' in text


def test_the_listing_in_tasks_md_is_what_cpo_ros_tasks_prints():
    doc = (REPO / 'docs' / 'tasks.md').read_text()
    block = doc.split('$ cpo-ros tasks\n', 1)[1].split('```', 1)[0]
    assert block == cli('tasks').stdout


def test_an_unknown_task_name_lists_close_matches():
    result = cli('train', '--task', 'corridr', '--iterations', '1')
    assert result.returncode == 2
    assert "unknown task 'corridr'" in result.stderr and "did you mean 'corridor'" in result.stderr
    result = cli('train', '--task', 'gaol', '--iterations', '1')
    assert result.returncode == 2 and "'goal'" in result.stderr


BAD_TASKS = '''
import numpy as np
from corridor_task.tasks import Corridor
from cpo_ros.tasks.base import Task


class NoStep(Task):
    """Everything but step."""

    observation_labels = ('x',)
    default_cost_limits = (1.0,)

    def reset(self, index, rng):
        return np.zeros((len(index), 3))

    def observation(self, pose, twist, readings):
        return pose[:, :1].astype(np.float32)


class WrongShape(Corridor):
    def observation(self, pose, twist, readings):
        return np.zeros((len(pose), 3), np.float32)


class Clash(Corridor):
    @property
    def cost_names(self):
        return ('wall', 'wall')


class NotATask:
    pass


class NanAtStart(Corridor):
    def step(self, pose, twist, rng):
        result = super().step(pose, twist, rng)
        result.reward[:] = np.nan
        return result


class NanLater(Corridor):
    """Finite on the start-up check's first step, NaN costs from the 30th step of a run."""

    steps = 0

    def step(self, pose, twist, rng):
        result = super().step(pose, twist, rng)
        NanLater.steps += 1
        if NanLater.steps >= 30:
            result.costs[-1, 0] = np.inf
        return result


class RaiseLater(Corridor):
    """Steps on the start-up check, raises from the 30th step of a run."""
    steps = 0

    def step(self, pose, twist, rng):
        RaiseLater.steps += 1
        if RaiseLater.steps >= 30:
            return 1 / 0
        return super().step(pose, twist, rng)


class ReshapeLater(Corridor):
    """Steps on the start-up check, then passes numpy a bad shape (numpy raises)."""
    steps = 0

    def step(self, pose, twist, rng):
        ReshapeLater.steps += 1
        if ReshapeLater.steps >= 30:
            np.reshape(pose, (7,))
        return super().step(pose, twist, rng)


class ListOutputs(Corridor):
    """Reward and costs as plain lists: usable, so the run trains."""

    def step(self, pose, twist, rng):
        result = super().step(pose, twist, rng)
        result.reward, result.costs = result.reward.tolist(), result.costs.tolist()
        return result


class ListObservation(Corridor):
    """Observations as plain lists: usable, so the run trains (auto-reset included)."""

    def observation(self, pose, twist, readings):
        return super().observation(pose, twist, readings).tolist()


class RepeatedLabels(Corridor):
    @property
    def observation_labels(self):
        labels = super().observation_labels
        return (labels[0],) * len(labels)


class ResetRaisesLater(Corridor):
    """Resets on the start-up check, raises a ValueError of its own at the run's reset."""
    resets = 0

    def reset(self, idx, rng):
        ResetRaisesLater.resets += 1
        if ResetRaisesLater.resets >= 2:
            raise ValueError('empty goal list')
        return super().reset(idx, rng)


class ColumnTerminated(Corridor):
    def step(self, pose, twist, rng):
        result = super().step(pose, twist, rng)
        result.terminated = np.zeros((len(pose), 1), bool)
        return result
'''


@pytest.fixture()
def bad_env(tmp_path):
    (tmp_path / 'badtasks.py').write_text(textwrap.dedent(BAD_TASKS))
    (tmp_path / 'broken.py').write_text('import no_such_module_here\n')
    import os
    return dict(os.environ, PYTHONPATH=f'{tmp_path}:{os.environ.get("PYTHONPATH", "")}')


@pytest.mark.parametrize('path, message', [
    ('badtasks:NoStep', 'missing method(s) step'),
    ('badtasks:WrongShape', 'observation() gave observations of shape (2, 3), expected (2, 6) '
                           '(one column per observation_labels)'),
    ('badtasks:Clash', "cost-name clash: ['wall']"),
    ('badtasks:NotATask', 'is not a subclass of cpo_ros.tasks.base.Task'),
    ('broken:Anything', "does not import: ModuleNotFoundError: No module named "
                        "'no_such_module_here'"),
    ('badtasks:Missing', "module badtasks has no 'Missing'"),
    ('badtasks:NanAtStart', 'step() gave reward with non-finite values in env(s) [0, 1]'),
    ('badtasks:ColumnTerminated', 'terminated of shape (2, 1), expected (2,) or None'),
    ('badtasks:RepeatedLabels', 'give one unique non-empty name per entry (repeated: '),
])
def test_bad_definitions_are_refused_at_start_up_with_exit_2(bad_env, tmp_path, path, message):
    result = cli('train', '--task', path, '--iterations', '1', '--out', str(tmp_path / 'run'),
                 env=bad_env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f'task {path}: ' in result.stderr and message in result.stderr, result.stderr


def test_a_task_that_turns_non_finite_while_training_is_named_not_a_bad_action(bad_env,
                                                                              tmp_path):
    # A NaN or infinite reward, cost or observation would reach the update (or, through the
    # graph, be refused by the executor for ever): the env refuses it, naming the task.
    result = cli('train', '--task', 'badtasks:NanLater', '--iterations', '1',
                 '--steps-per-iteration', '400', '--num-envs', '4', '--out',
                 str(tmp_path / 'run'), env=bad_env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert ('task badtasks:NanLater: step() gave costs with non-finite values in env(s) [3]'
            in result.stderr), result.stderr


@pytest.mark.parametrize('path, message', [
    ('badtasks:RaiseLater', 'step() raised ZeroDivisionError: division by zero (at '),
    ('badtasks:ResetRaisesLater', 'reset() raised ValueError: empty goal list (at '),
    # The task's own line, not numpy's where its bad call ended.
    ('badtasks:ReshapeLater', 'step() raised ValueError: cannot reshape array'),
])
def test_an_exception_of_a_task_while_training_names_the_task_the_call_and_the_line(
        bad_env, tmp_path, path, message):
    result = cli('train', '--task', path, '--iterations', '1', '--steps-per-iteration', '400',
                 '--num-envs', '4', '--out', str(tmp_path / 'run'), env=bad_env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f'task {path}: {message}' in result.stderr, result.stderr
    assert 'badtasks.py:' in result.stderr and 'Traceback' not in result.stderr, result.stderr
    assert 'docs/tasks.md' not in result.stderr  # not the hint about shapes and values


@pytest.mark.parametrize('path', ['badtasks:ListOutputs', 'badtasks:ListObservation'])
def test_a_task_that_gives_lists_trains(bad_env, tmp_path, path):
    result = cli('train', '--task', path, '--iterations', '1',
                 '--steps-per-iteration', '400', '--num-envs', '4', '--out',
                 str(tmp_path / 'run'), env=bad_env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_task_that_raises_in_the_sim_bridge_ends_it_with_exit_2(ros_env, bad_env):
    # A stand-in (realtime mode) steps on its own timer: the task's exception is logged, named,
    # and ends the node with code 2, not an executor's traceback.
    env = dict(ros_env, PYTHONPATH=bad_env['PYTHONPATH'])
    bridge = NodeProcess([sys.executable, '-m', 'cpo_ros.nodes.sim_bridge', '--ros-args',
                          '-p', 'task:=badtasks:RaiseLater', '-p', 'mode:=realtime',
                          '-p', 'real_time_factor:=10.0'], env)
    assert bridge.wait(timeout=60) == 2, bridge.output
    assert ('task badtasks:RaiseLater: step() raised ZeroDivisionError: division by zero'
            in bridge.output), bridge.output
    assert 'Traceback' not in bridge.output, bridge.output


def test_a_wrong_count_of_cost_limits_is_refused_before_the_run_directory(tmp_path):
    # The corridor has two costs; one limit is refused, and no empty run is left behind for a
    # corrected restart to trip over.
    result = cli('train', '--task', 'corridor', '--set', 'cost_limit=5', '--iterations', '1',
                 '--out', str(tmp_path / 'run'))
    assert result.returncode == 2, result.stdout + result.stderr
    assert ('cost_limit has 1 value(s) [5.0] but the task has 2 constraint(s)'
            in result.stderr), result.stderr
    assert not (tmp_path / 'run').exists()


def test_train_help_lists_the_options_of_a_task_given_by_dotted_path(bad_env):
    text = cli('train', '--task', 'badtasks:NanLater', '--help', env=bad_env).stdout
    assert 'task options of --task corridor' in text
    assert '(badtasks:NanLater: the same defaults)' in text
    assert 'badtasks' not in cli('train', '--help', env=bad_env).stdout


def test_a_bad_definition_given_to_a_node_ends_it_with_exit_2(ros_env, bad_env):
    env = dict(ros_env, PYTHONPATH=bad_env['PYTHONPATH'])
    bridge = NodeProcess([sys.executable, '-m', 'cpo_ros.nodes.sim_bridge', '--ros-args',
                          '-p', 'task:=badtasks:WrongShape'], env)
    assert bridge.wait(timeout=60) == 2, bridge.output
    assert 'task badtasks:WrongShape: observation() gave observations of shape' in bridge.output


@pytest.fixture(scope='module')
def corridor_run(tmp_path_factory):
    """Train the corridor directly (by its entry-point name) and export it."""
    run = tmp_path_factory.mktemp('corridor')
    result = cli('train', '--task', 'corridor', '--iterations', '2', '--steps-per-iteration',
                 '1200', '--num-envs', '4', '--out', str(run), '--quiet')
    assert result.returncode == 0, result.stderr
    assert 'cost limits in use: 5, 10 per episode (default of corridor)' in result.stdout
    result = cli('export', '--checkpoint', str(run / 'checkpoints' / 'last.pt'), '--out',
                 str(run / 'policy'))
    assert result.returncode == 0, result.stderr
    return run


def test_the_corridor_trains_directly_by_name_and_by_dotted_path(corridor_run, tmp_path):
    rows = progress(corridor_run)
    assert [int(r['iteration']) for r in rows] == [1, 2]
    assert float(rows[0]['cost_limit_0']) == 5.0 and float(rows[0]['cost_limit_1']) == 10.0
    assert float(rows[0]['episode_length']) == 100
    result = cli('train', '--task', 'corridor_task.tasks:Corridor', '--iterations', '1',
                 '--steps-per-iteration', '800', '--num-envs', '4', '--set', 'half_width=0.5',
                 '--out', str(tmp_path / 'dotted'), '--quiet')
    assert result.returncode == 0, result.stderr
    config = (tmp_path / 'dotted' / 'config.yaml').read_text()
    assert 'task: corridor_task.tasks:Corridor' in config and 'half_width: 0.5' in config


def test_a_task_is_one_on_the_wire_by_name_or_dotted_path():
    """An executor given `corridor` takes the policy of a learner given the dotted path.

    One class, one set of parameters: one task on the wire; other values are another task.
    """
    from dataclasses import replace

    from cpo_ros.ros.params import task_identity
    from cpo_ros.tasks.registry import load_task_class

    by_name, by_path = load_task_class('corridor'), load_task_class('corridor_task.tasks:Corridor')
    assert task_identity(by_name()) == task_identity(by_path())
    wider = by_path(replace(by_path.Params(), half_width=0.5))
    assert task_identity(wider) != task_identity(by_name())
    circle, circle_long = load_task_class('circle'), load_task_class('circle_long')
    assert task_identity(circle()) != task_identity(circle_long())


def test_the_export_names_the_task_and_its_parameters(corridor_run):
    meta = json.loads((corridor_run / 'policy' / 'policy.json').read_text())
    assert meta['task']['name'] == 'corridor' and meta['task']['half_width'] == 1.0
    assert meta['cost_names'] == ['wall', 'reverse']
    assert meta['observation']['labels'] == ['cos_yaw', 'sin_yaw', 'v', 'w', 'wall_left',
                                             'wall_right']
    assert meta['safe_area'] == {'type': 'polygon', 'vertices': [[-1.0, -1.0], [50.0, -1.0],
                                                                 [50.0, 1.0], [-1.0, 1.0]]}


def test_the_corridor_trains_through_the_graph(ros_env, tmp_path):
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'circle_sim', '--ros-args',
           '-p', 'task:=corridor', *[x for p in SMALL for x in ('-p', p)],
           '-p', f'learner:out:={tmp_path}', '-p', 'learner:iterations:=2',
           '-p', 'learner:value_epochs:=2']
    bringup = NodeProcess(cmd, ros_env)
    assert bringup.wait(timeout=240) == 0, bringup.output
    rows = progress(tmp_path)
    assert [int(r['iteration']) for r in rows] == [1, 2]
    # The task's own limits (cost_limit -1 in the file), one per named cost.
    assert float(rows[0]['cost_limit_0']) == 5.0 and float(rows[0]['cost_limit_1']) == 10.0
    assert float(rows[-1]['episode_length']) == 20
    assert 'task: corridor' in (tmp_path / 'config.yaml').read_text()


def test_the_deploy_drives_the_stand_in_and_refuses_a_policy_of_another_task(
        start_node, probe, ros_env, corridor_run):
    policy = corridor_run / 'policy'
    refused = bringup_deploy(ros_env, policy)  # deploy.yaml runs task circle
    assert refused.wait(60) == 2, refused.output
    assert "the policy is for task 'corridor', this robot runs task 'circle'" in refused.output
    start_node('sim_bridge', 'mode:=realtime', 'odom_rate_hz:=25.0', 'task:=corridor')
    listener = Listener(probe)
    stack = bringup_deploy(ros_env, policy, params=['task:=corridor'])
    try:
        # The policy acts on the stand-in's odometry and task/sensors readings; the monitor
        # gates it with the corridor's own safe area.
        assert wait_until(listener.moving, 90), stack.output
        assert wait_until(lambda: len(listener.odom) > 10, 30)
        assert wait_until(lambda: listener.inside and listener.inside[-1], 10)
    finally:
        assert stack.stop(timeout=40) == 0, stack.output


def test_the_corridor_trains_on_a_fleet(ros_env, tmp_path):
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'fleet_sim', '--ros-args',
           '-p', 'workers:=2', '-p', 'task:=corridor', '-p', 'num_envs:=2',
           '-p', 'steps_per_iteration:=800', '-p', 'corridor.max_episode_steps:=20',
           '-p', f'learner:out:={tmp_path}', '-p', 'learner:iterations:=1000',
           '-p', 'learner:value_epochs:=1']

    def sampled_by() -> set[str]:
        if not (tmp_path / 'progress.csv').is_file():
            return set()
        return {share.split('=')[0] for r in progress(tmp_path)
                for share in r['executor_shares'].split()}
    bringup = NodeProcess(cmd, ros_env)
    try:
        # Both workers' simulators and executors run the corridor and feed the one learner.
        assert wait_until(lambda: len(sampled_by()) == 2, 240), bringup.output
    finally:
        bringup.stop(timeout=40)
    rows = progress(tmp_path)
    assert float(rows[0]['cost_limit_1']) == 10.0 and float(rows[-1]['episode_length']) == 20
    assert sampled_by() == {'/worker_0/policy_executor', '/worker_1/policy_executor'}


def test_goal_trains_through_the_circle_graph_with_its_own_settings(ros_env, tmp_path):
    # circle_sim.yaml sets Circle's parameters and episode length; -p task:=goal takes Goal's
    # (goal.*), and the learner's cost_limit -1 takes Goal's default limit, 50.
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'circle_sim', '--ros-args',
           '-p', 'task:=goal', '-p', 'num_envs:=4', '-p', 'steps_per_iteration:=400',
           '-p', f'learner:out:={tmp_path}', '-p', 'learner:iterations:=2',
           '-p', 'learner:value_epochs:=2']
    bringup = NodeProcess(cmd, ros_env)
    assert bringup.wait(timeout=240) == 0, bringup.output
    rows = progress(tmp_path)
    assert [int(r['iteration']) for r in rows] == [1, 2]
    assert float(rows[0]['cost_limit']) == 50.0
    config = (tmp_path / 'config.yaml').read_text()
    assert 'task: goal' in config and 'max_episode_steps: 1000' in config


def test_parameters_are_checked_against_their_ranges_and_the_state_layout_follows_the_task():
    from cpo_ros.sim.make import make_task
    from cpo_ros.wire import StateLayout

    with pytest.raises(ValueError, match=r'half_width = 0.01 is out of range: allowed a finite '
                                         r'number in \[0.1, 100.0\]'):
        make_task('corridor', half_width=0.01)
    with pytest.raises(ValueError, match="unknown corridor settings: \\['half_widht'\\]"):
        make_task('corridor', half_widht=0.5)
    task, _ = make_task('corridor', num_envs=3)
    layout = StateLayout.of(task)
    assert layout.cost_fields == ('cost_wall', 'cost_reverse')
    assert layout.fields == ('x', 'y', 'yaw', 'v', 'w', 'reward', 'cost_wall', 'cost_reverse',
                             'terminated', 'truncated', 'wall_left', 'wall_right', 'final_x',
                             'final_y', 'final_yaw', 'final_v', 'final_w', 'final_wall_left',
                             'final_wall_right', 'seq')
    assert StateLayout.of(make_task('circle')[0]).fields[6] == 'cost'


def test_one_check_of_a_step_names_what_is_wrong():
    # The registry (at start-up) and the simulator (every step) share this one check.
    from cpo_ros.tasks.base import check_step, StepResult

    obs = np.zeros((2, 4))
    good = StepResult(np.zeros(2, np.float32), np.zeros((2, 1), np.float32))
    reward, costs, checked_obs, terminated = check_step(good, obs, 2, 1, 4)
    assert terminated.tolist() == [False, False] and costs.shape == (2, 1)
    as_lists = StepResult([0.5, 1.0], [[0.0], [1.0]])
    reward, costs, _, _ = check_step(as_lists, obs, 2, 1, 4)  # lists come back as arrays
    assert reward.shape == (2,) and costs[:, 0].tolist() == [0.0, 1.0]
    cases = [(StepResult(np.array(['a', 'b']), good.costs), 'step() gave reward, not an array'),
             (StepResult(good.reward, np.zeros((2, 2))), 'costs of shape (2, 2), expected (2, 1)'),
             (StepResult(good.reward, good.costs, np.ones((2, 1), bool)), 'terminated of shape'),
             ((good.reward, good.costs), 'returned tuple, expected StepResult')]
    for result, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            check_step(result, obs, 2, 1, 4)
    message = 'observation() gave observations with non-finite values in env(s) [1]'
    with pytest.raises(ValueError, match=re.escape(message)):
        check_step(good, np.array([[0.0] * 4, [0.0, np.inf, 0.0, 0.0]]), 2, 1, 4)


def test_a_first_observation_that_is_not_finite_is_named_at_reset():
    # The start-up check runs two robots; a third robot's first observation is checked by the
    # simulator's reset with the same check.
    from cpo_ros.sim.make import make_task
    from cpo_ros.sim.vec_env import VecTaskEnv
    from cpo_ros.tasks.registry import TaskRuntimeError

    task, robot = make_task('circle', num_envs=3)
    observe = task.observation

    def observation(pose, twist, readings):
        obs = np.array(observe(pose, twist, readings), dtype=np.float64)
        obs[2:, 0] = np.nan
        return obs

    task.observation = observation
    env = VecTaskEnv(task, robot)
    message = ('observation() gave observations with non-finite values in env(s) [2] at the '
               'start of the episodes')
    with pytest.raises(TaskRuntimeError, match=re.escape(message)):
        env.reset(seed=0)
