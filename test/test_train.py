"""The real `cpo-ros train` and `cpo-ros eval` commands with tiny budgets."""

import csv
import os
import subprocess
import sys

import pytest
import yaml

from cpo_ros.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cpo_ros.training.config import AlgoConfig, TrainConfig
from cpo_ros.training.progress import COLUMNS
from cpo_ros.training.run import update_setting_differences


def cpo_ros(*args, check=True):
    result = subprocess.run([sys.executable, '-m', 'cpo_ros.cli', *args], capture_output=True,
                            text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f'cpo-ros {args} failed:\n{result.stdout}\n{result.stderr}')
    return result


def rows(out):
    with open(out / 'progress.csv') as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize('algo', ['cpo', 'pdo', 'ppo_lag', 'pid_lag'])
def test_training_writes_its_files_and_learns(tmp_path, algo):
    out = tmp_path / algo
    cpo_ros('train', '--task', 'circle', '--algo', algo, '--iterations', '8',
            '--steps-per-iteration', '8000', '--num-envs', '8', '--seed', '1', '--out', str(out),
            '--quiet')
    for name in ('progress.csv', 'config.yaml', 'curves.png', 'checkpoints/last.pt'):
        assert (out / name).is_file(), name
    table = rows(out)
    assert [int(r['iteration']) for r in table] == list(range(1, 9))
    assert set(COLUMNS) <= set(table[0])
    first, last = float(table[0]['episode_return']), float(table[-1]['episode_return'])
    assert last > first + 1.0, (first, last)
    if algo in ('cpo', 'pdo'):
        # A rejected step would report kl 0: every step is taken, and within the region.
        assert all(r['accepted'] == 'True' for r in table), [r['accepted'] for r in table]
        assert all(0.0 < float(r['kl']) <= 0.01 + 1e-9 for r in table)
    config = (out / 'config.yaml').read_text()
    assert f'algo: {algo}' in config and 'cost_limit: 5.0' in config


@pytest.mark.parametrize('algo', ['cpo', 'pid_lag'])
def test_resume_continues_at_the_next_iteration_exactly(tmp_path, algo):
    common = ['train', '--iterations', '4', '--steps-per-iteration', '2000', '--num-envs', '4',
              '--seed', '3', '--quiet', '--algo', algo]
    cpo_ros(*common, '--out', str(tmp_path / 'whole'))
    # Interrupted after 2 iterations, then resumed to 4.
    cpo_ros(*common[:2], '2', *common[3:], '--out', str(tmp_path / 'split'))
    cpo_ros(*common, '--out', str(tmp_path / 'split'), '--resume')
    whole, split = rows(tmp_path / 'whole'), rows(tmp_path / 'split')
    assert [r['iteration'] for r in split] == ['1', '2', '3', '4']
    for key in ('env_steps', 'episode_return', 'episode_cost', 'kl', 'case', 'lagrange'):
        assert [r[key] for r in split] == [r[key] for r in whole], key


def test_eval_prints_means_and_plots(tmp_path):
    out = tmp_path / 'run'
    cpo_ros('train', '--iterations', '1', '--steps-per-iteration', '1000', '--num-envs', '4',
            '--out', str(out), '--quiet')
    result = cpo_ros('eval', '--checkpoint', str(out / 'checkpoints/last.pt'), '--episodes',
                     '3', '--plot', str(tmp_path / 'tracks.png'))
    assert 'mean return' in result.stdout and 'mean cost' in result.stdout
    assert (tmp_path / 'tracks.png').stat().st_size > 1000
    bad = cpo_ros('eval', '--checkpoint', str(out / 'checkpoints/last.pt'), '--episodes', '0',
                  check=False)
    assert bad.returncode == 2 and 'episodes = 0 is out of range' in bad.stderr, bad.stderr


@pytest.mark.parametrize('args,message', [
    (['--cost-limit', '-1'], 'cost_limit'),
    (['--env-id', 'NoSuchEnv-v0'], 'unknown env id'),
    (['--num-envs', '0'], 'num_envs'),
])
def test_bad_input_is_a_clear_error(tmp_path, args, message):
    result = cpo_ros('train', '--iterations', '1', '--out', str(tmp_path / 'x'), '--quiet',
                     *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr


def test_corrupt_checkpoint_is_refused_with_path_and_reason(tmp_path):
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match=str(bad)):
        load_checkpoint(bad)
    result = cpo_ros('eval', '--checkpoint', str(bad), check=False)
    assert result.returncode == 2 and str(bad) in result.stderr
    # One line, without torch's advice to load the file unsafely (weights_only=False).
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith('cpo-ros eval: error: checkpoint') and 'unreadable' in error
    assert 'False' not in result.stderr and 'trust' not in result.stderr, result.stderr
    foreign = save_checkpoint(tmp_path / 'foreign.pt', {'x': 1})
    # Written atomically with a plain file's permissions (mkstemp's are private): a node or
    # another user that reads the run can load it; no temporary file is left beside it.
    mask = os.umask(0)
    os.umask(mask)
    assert foreign.stat().st_mode & 0o777 == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.pt', 'foreign.pt']
    with pytest.raises(CheckpointError, match='lacks'):
        load_checkpoint(foreign, ('config',))
    with pytest.raises(CheckpointError, match='no such file'):
        load_checkpoint(tmp_path / 'missing.pt')


@pytest.mark.parametrize('change,reason', [
    (lambda p: p['config']['algo'].update(hidden_szes=[8]), 'configuration does not load'),
    (lambda p: p.update(config=[1, 2]), 'configuration does not load'),
    (lambda p: p.update(dims={'obs_dim': 6}), 'are not the sizes of a run'),
    (lambda p: p.update(dims={'obs_dim': 6.5, 'act_dim': 2}), 'are not the sizes of a run'),
    (lambda p: p.update(algorithm=[0]), ''),
    (lambda p: p.pop('env_steps'), "lacks ['env_steps']"),
    (lambda p: p.update(iteration=-3), 'is not a count'),
    (lambda p: p['algorithm']['policy']['log_std'].fill_(float('nan')),
     'policy weight log_std holds non-finite values'),
])
def test_a_mismatched_checkpoint_is_refused_with_its_path_by_every_reader(tmp_path, change,
                                                                         reason):
    import numpy as np
    import torch

    from cpo_ros.deploy.export import export_policy
    from cpo_ros.training.evaluate import load_policy
    from cpo_ros.training.run import TrainingRun

    cfg = TrainConfig(task='circle', iterations=1, steps_per_iteration=100, num_envs=1,
                      out=str(tmp_path / 'run'))

    def open_run():
        return TrainingRun(cfg, 6, 2, np.array([-1.0, -1.0]), np.array([1.0, 1.0]), 50,
                           resume='auto')

    path = open_run().checkpoint_path
    payload = torch.load(path, weights_only=True)
    change(payload)
    save_checkpoint(path, {k: v for k, v in payload.items() if k != 'format'})
    readers = [lambda: load_policy(path), lambda: export_policy(path, tmp_path / 'policy'),
               open_run]
    for read in readers:
        try:
            read()
        except CheckpointError as exc:
            assert str(path) in str(exc) and reason in str(exc), exc
        else:  # only a reader that never needs the missing part may take it
            assert reason == "lacks ['env_steps']" and read is not open_run, read


def test_a_finished_run_trained_with_other_update_settings_is_told_apart(tmp_path):
    asked = AlgoConfig(value_minibatch=512)
    data = TrainConfig(task='circle', algo=asked).to_dict()
    (tmp_path / 'config.yaml').write_text(yaml.safe_dump({'config': data}))
    assert update_setting_differences(tmp_path, asked) == []
    assert update_setting_differences(tmp_path, AlgoConfig()) == ['value_minibatch: 512 -> 4096']
    # A run written before a setting existed, or when cost_bias_aim was a switch, compares.
    del data['algo']['cost_step_share']
    data['algo']['cost_bias_aim'] = False
    (tmp_path / 'config.yaml').write_text(yaml.safe_dump({'config': data}))
    assert update_setting_differences(tmp_path, asked) == []
    assert update_setting_differences(tmp_path, AlgoConfig(
        value_minibatch=512, cost_bias_aim='limit')) == ["cost_bias_aim: 'none' -> 'limit'"]


def test_a_resume_that_would_change_the_run_is_refused_and_leaves_it_as_it_was(tmp_path):
    out = tmp_path / 'run'
    common = ['train', '--steps-per-iteration', '200', '--num-envs', '4', '--quiet',
              '--out', str(out)]
    cpo_ros(*common, '--iterations', '2')
    config = (out / 'config.yaml').read_text()
    # Fewer iterations than done: the run's config.yaml would say 1 beside 2 rows.
    fewer = cpo_ros(*common, '--iterations', '1', '--resume', check=False)
    assert fewer.returncode == 2 and 'has 2 iterations done' in fewer.stderr, fewer.stderr
    # Another task of the same sizes: named as the setting it is, not as sizes.
    other = cpo_ros(*common, '--iterations', '3', '--task', 'circle_long', '--resume',
                    '--steps-per-iteration', '2000', check=False)
    assert other.returncode == 2 and "task: 'circle' -> 'circle_long'" in other.stderr, \
        other.stderr
    assert (out / 'config.yaml').read_text() == config and len(rows(out)) == 2
    # Fine-tuning (the learner's init_from) takes a run of the same task only.
    import numpy as np

    from cpo_ros.training.run import TrainingRun
    tuned = TrainConfig(task='circle_long', iterations=1, steps_per_iteration=2000, num_envs=4,
                        out=str(tmp_path / 'tuned'))
    with pytest.raises(CheckpointError, match='trained on circle, this run is circle_long'):
        TrainingRun(tuned, 6, 2, -np.ones(2), np.ones(2), 500, init_from=out)
    assert not (tmp_path / 'tuned' / 'progress.csv').exists()
