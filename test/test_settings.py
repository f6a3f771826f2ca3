"""Every training setting by name: --config/--set parsing, errors, help and the ROS names."""

from dataclasses import dataclass, fields
from pathlib import Path
import re
import subprocess
import sys

import pytest
import yaml

from cpo_ros.ros.specs import LEARNER_PARAMS, TASK_PARAMS
from cpo_ros.tasks.registry import BUILTIN as TASK_DEFAULTS
from cpo_ros.training import settings
from cpo_ros.training.config import AlgoConfig, TrainConfig

REPO = Path(__file__).resolve().parent.parent


def build(**values):
    return settings.build_config(values)[0]


def test_every_field_is_a_setting_under_the_learner_parameter_name():
    keys = {s.key for s in settings.train_settings()}
    assert keys == ({f.name for f in fields(TrainConfig)} - {'algo', 'task_kwargs', 'robot'}
                    | {f.name for f in fields(AlgoConfig)})
    learner = {spec.name: spec for spec in LEARNER_PARAMS + TASK_PARAMS}
    # The graph runs project tasks only, so env_id and its env_workers have no parameter.
    assert keys - {'env_id', 'env_workers'} <= set(learner)
    circle = {s.key for s in settings.task_settings('circle')}
    assert {spec.name for spec in TASK_PARAMS} <= keys | circle


def test_every_numeric_update_setting_has_its_allowed_range():
    """The ranges are data (validate() and the ROS descriptors read them): none is missing."""
    from cpo_ros.training.config import ALGO_RANGES, CHOICES

    for f in fields(AlgoConfig):
        value = getattr(AlgoConfig(), f.name)
        numeric = isinstance(value, (int, float, tuple)) and not isinstance(value, bool)
        assert f.name in ALGO_RANGES or f.name in CHOICES or not numeric, f.name


@pytest.mark.parametrize('key,text,value', [
    ('hidden_sizes', '64,32', (64, 32)),
    ('hidden_sizes', '[64, 32]', (64, 32)),
    ('hidden_sizes', '16', (16,)),
    ('cost_limit', '5', 5.0),
    ('cost_limit', '5,10', (5.0, 10.0)),
    ('cost_limit', '[25]', 25.0),
    ('cost_shaping', 'true', True),
    ('cost_shaping', 'No', False),
    ('steps_per_iteration', '50_000', 50_000),
    ('value_lr', '1e-3', 1e-3),
    ('gamma', '1', 1.0),
    ('env_id', 'null', None),
    ('task', 'goal', 'goal'),
])
def test_values_are_parsed_by_the_field_type(key, text, value):
    setting = {s.key: s for s in settings.train_settings()}[key]
    parsed = settings.parse_value(setting, text)
    assert parsed == value and type(parsed) is type(value)


def test_settings_go_to_their_dataclass_with_task_options():
    config, given = settings.build_config({
        'task': 'circle_long', 'gamma': '0.99', 'algo.value_epochs': 3,
        'task.max_episode_steps': '200', 'x_limit': 3, 'iterations': '2'})
    assert given == {'task', 'gamma', 'value_epochs', 'max_episode_steps', 'x_limit',
                     'iterations'}
    assert (config.algo.gamma, config.algo.value_epochs, config.iterations) == (0.99, 3, 2)
    assert config.task_kwargs == {'max_episode_steps': 200, 'x_limit': 3.0}
    options = settings.task_options(config)
    assert options['max_episode_steps'] == 200 and options['target_radius'] == 15.0
    assert build(task='goal', n_obstacles='4', mass='2').task_kwargs == {'n_obstacles': 4,
                                                                        'mass': 2.0}
    assert build(env_id='cpo_ros/PointGoal-v0', num_rays=8).task_kwargs == {'num_rays': 8}


@pytest.mark.parametrize('values,message', [
    ({'gama': '0.9'}, "unknown setting 'gama' for task circle (did you mean gamma?)"),
    ({'gamma': '1.5'}, 'gamma = 1.5 is out of range: allowed a finite number in [0.0, 1.0]'),
    ({'gamma': 'abc'}, "gamma = 'abc': need float"),
    ({'hidden_sizes': '64,x'}, "hidden_sizes = '64,x': need list of int"),
    ({'value_epochs': '2.5'}, "value_epochs = '2.5': need int"),
    ({'cost_shaping': 'maybe'}, "cost_shaping = 'maybe': need true/false"),
    ({'cost_bias_aim': 'true'}, "cost_bias_aim = 'true' is not one of ('none', 'below', 'limit')"),
    ({'x_limit': '-1'}, 'x_limit = -1.0 is out of range'),
    ({'task': 'goal', 'x_limit': '3'}, "unknown setting 'x_limit' for task goal"),
    ({'task': 'goal', 'obstacle_radius': '0'}, 'obstacle_radius = 0.0 is out of range'),
    ({'task.gamma': '0.9'}, "unknown setting 'task.gamma'"),
    ({'algo.x_limit': '1'}, "unknown setting 'algo.x_limit'"),
    ({'env_id': 'CartPole-v1', 'x_limit': '3'}, 'no task options'),
    ({'task': 'square'}, "unknown task 'square'"),
    ({'task': 'goal', 'env_id': 'CartPole-v1'}, 'give exactly one'),
])
def test_unknown_keys_and_bad_values_are_refused_by_name(values, message):
    with pytest.raises(ValueError) as info:
        settings.build_config(values)
    assert message in str(info.value)


def test_a_checkpoint_written_when_cost_bias_aim_was_a_switch_still_loads():
    for old, new in ((True, 'limit'), (False, 'none')):
        data = TrainConfig().to_dict()
        data['algo']['cost_bias_aim'] = old
        assert TrainConfig.from_dict(data).algo.cost_bias_aim == new


def test_a_bench_set_takes_update_settings_only_and_checks_them():
    assert settings.algo_assignments(['value_minibatch=512', 'algo.cost_bias_aim=below']) == {
        'value_minibatch': 512, 'cost_bias_aim': 'below'}
    for text, message in (('seed=3', 'not an update setting'),
                          ('algo=trpo', 'not an update setting'),
                          ('value_minibach=3', 'did you mean value_minibatch'),
                          ('value_minibatch=0', 'value_minibatch = 0 is out of range'),
                          ('cost_bias_aim=above', "is not one of ('none', 'below', 'limit')"),
                          ('gamma', 'write KEY=VALUE')):
        with pytest.raises(ValueError, match=re.escape(message)):
            settings.algo_assignments([text])


def test_a_field_added_to_the_dataclass_is_a_setting_at_once(monkeypatch):
    @dataclass
    class Extended(AlgoConfig):
        trust_slack: float = 0.25
        """How much slack the step may take (a field the lead might add)."""

    monkeypatch.setattr(settings, 'AlgoConfig', Extended)
    new = {s.key: s for s in settings.train_settings()}['trust_slack']
    assert (new.owner, new.default, new.type) == ('algo', 0.25, float)
    assert new.doc == 'How much slack the step may take (a field the lead might add).'
    assert build(trust_slack='0.5').algo.trust_slack == 0.5
    assert 'trust_slack = 0.25' in settings.help_text()
    assert settings.algo_config_from({'trust_slack': 0.75, 'seed': 1}).trust_slack == 0.75


def test_later_sources_win_and_task_replaces_env_id():
    values = settings.flatten({'task': 'circle', 'algo': {'gamma': 0.9}})
    settings.merge(values, 'gamma', '0.98')
    settings.merge(values, 'env_id', 'cpo_ros/PointCircleLong-v0')
    config = build(**values)
    assert config.algo.gamma == 0.98 and config.task is None
    with pytest.raises(ValueError, match='KEY=VALUE'):
        settings.parse_assignment('gamma')


def cli(*args):
    return subprocess.run([sys.executable, '-m', 'cpo_ros.cli', *args], capture_output=True,
                          text=True, timeout=600)


def test_help_lists_every_key_with_docstring_and_default():
    text = cli('train', '--help').stdout
    for task in TASK_DEFAULTS:
        for s in settings.all_settings(task).values():
            assert f'  {s.key} = ' in text, s.key
            assert s.doc.split()[0] in text
    assert 'gamma = 0.995  (float)' in text and 'Discount of the reward.' in text
    assert '(circle_long: max_episode_steps = 500)' in text


def test_config_file_and_set_end_to_end(tmp_path):
    file = tmp_path / 'settings.yaml'
    file.write_text(yaml.safe_dump({'task': 'circle_long', 'gamma': 0.99, 'hidden_sizes': [32],
                                    'task.max_episode_steps': 100, 'iterations': 1}))
    out = tmp_path / 'run'
    result = cli('train', '--config', str(file), '--set', 'cost_lam=0.9', '--set',
                 'hidden_sizes=16,8', '--steps-per-iteration', '800', '--num-envs', '4',
                 '--seed', '2', '--out', str(out), '--quiet')
    assert result.returncode == 0, result.stderr
    assert 'cost limit in use: 25 per episode (default of circle_long)' in result.stdout
    recorded = yaml.safe_load((out / 'config.yaml').read_text())
    algo = recorded['config']['algo']
    assert (algo['gamma'], algo['cost_lam'], algo['hidden_sizes']) == (0.99, 0.9, [16, 8])
    assert recorded['config']['task_kwargs'] == {'max_episode_steps': 100}
    assert recorded['task_options']['max_episode_steps'] == 100
    assert recorded['task_options']['x_limit'] == 2.5
    # A run's config.yaml is a settings file: the same run, apart from where it is written.
    again = build(**settings.load_file(out / 'config.yaml'))
    assert again.algo == build(**settings.flatten(recorded)).algo
    assert (again.algo.hidden_sizes, again.seed, again.out) == ((16, 8), 2, TrainConfig.out)
    with pytest.raises(ValueError, match='ROS parameter file'):
        settings.load_file(REPO / 'config' / 'circle_sim.yaml')
    bad = cli('train', '--set', 'value_epochz=3', '--out', str(tmp_path / 'bad'))
    assert bad.returncode == 2 and 'did you mean value_epochs' in bad.stderr
    assert not (tmp_path / 'bad').exists()


def _loads(module: str, code: str) -> bool:
    """Return whether a fresh interpreter running code has imported module."""
    result = subprocess.run([sys.executable, '-c', f'import sys; {code}; '
                             f'print({module!r} in sys.modules)'],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() in ('True', 'False'), result.stderr
    return result.stdout.strip() == 'True'


def test_the_parser_leaves_mujoco_unloaded_until_help_asks():
    # `eval --video` picks MuJoCo's OpenGL backend before mujoco is first imported.
    assert not _loads('mujoco', 'from cpo_ros.cli import build_parser; build_parser()')


def test_the_command_line_simulator_and_monitor_start_without_torch():
    # 2.3 s of CPU a process; the safe-area monitor on a robot needs no torch at all.
    assert not _loads('torch', 'import cpo_ros.cli, cpo_ros.ros.bringup, '
                      'cpo_ros.nodes.sim_bridge, cpo_ros.nodes.safe_area_monitor')


def test_a_setting_the_chosen_algorithm_does_not_read_is_named(tmp_path):
    from cpo_ros.training.config import AlgoConfig

    assert AlgoConfig(algo='ppo_lag', ppo_lr=0.1, lagrangian_lr=0.1).idle_settings() == []
    idle = AlgoConfig(algo='cpo', ppo_lr=0.1, pdo_lambda_lr=0.5).idle_settings()
    assert idle == ['pdo_lambda_lr = 0.5 (read by pdo only)',
                    'ppo_lr = 0.1 (read by ppo_lag, pid_lag only)']
    # pid_lag reads the PPO settings and lagrangian_init, not ppo_lag's multiplier step.
    assert AlgoConfig(algo='pid_lag', ppo_epochs=3, lagrangian_init=0.5,
                      lagrangian_lr=0.1).idle_settings() == [
        'lagrangian_lr = 0.1 (read by ppo_lag only)']
    result = subprocess.run([sys.executable, '-m', 'cpo_ros.cli', 'train', '--algo', 'trpo',
                             '--set', 'pid_kp=0.5', '--iterations', '1',
                             '--steps-per-iteration', '200', '--num-envs', '4', '--quiet',
                             '--out', str(tmp_path / 'run')],
                            capture_output=True, text=True, timeout=120)
    assert 'warning: pid_kp = 0.5 (read by pid_lag only): no effect with --algo trpo' in \
        result.stderr, result.stderr
