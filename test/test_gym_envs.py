"""What a third-party Gymnasium env meets in `cpo-ros train`: its Box honoured, its episodes
measured, an env that cannot run or a batch that measures nothing refused before a run exists."""

import csv
import math
import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch

from cpo_ros.algo.networks import GaussianPolicy
from cpo_ros.sim.make import check_env_id
from cpo_ros.training.checkpoint import load_checkpoint

HERE = Path(__file__).parent


def cpo_ros(*args):
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
        [str(HERE), *filter(None, [os.environ.get('PYTHONPATH')])])}
    return subprocess.run([sys.executable, '-m', 'cpo_ros.cli', *args], capture_output=True,
                          text=True, timeout=600, env=env)


def test_actions_are_clipped_to_the_envs_box_half_infinite_bounds_kept(tmp_path):
    # The env raises on any action outside its Box ([-1, 1] x [0, inf)): the policy's Gaussian
    # reaches beyond the Box, so an unclipped action fails at the first steps.
    out = tmp_path / 'strict'
    result = cpo_ros('train', '--env-id', 'gym_worker_envs:cpo_ros_test/StrictBox-v0',
                     '--cost-limit', '1', '--iterations', '2', '--steps-per-iteration', '200',
                     '--num-envs', '2', '--out', str(out), '--quiet')
    assert result.returncode == 0, result.stderr
    # The finite side of a half-infinite bound is the Gaussian's: centred at 0 + 1, not at 0.
    policy = GaussianPolicy(2, 2, action_low=np.array([-1.0, 0.0]),
                            action_high=np.array([1.0, np.inf]))
    assert policy.action_bias.tolist() == [0.0, 1.0]
    assert policy.action_scale.tolist() == [1.0, 1.0]
    upper = GaussianPolicy(2, 1, action_low=np.array([-np.inf]), action_high=np.array([3.0]))
    assert (upper.action_bias.item(), upper.action_scale.item()) == (2.0, 1.0)


@pytest.mark.parametrize('env', [['--task', 'circle_long'],
                                 ['--env-id', 'cpo_ros/PointCircleLong-v0']])
def test_a_batch_shorter_than_an_episode_is_refused_before_a_run_exists(tmp_path, env):
    # circle_long's episodes have 500 steps: 1,000 steps over 4 envs finish none, and J_C
    # would never be measured. Its Gymnasium id truncates at the task's length, not at a
    # TimeLimit of Gymnasium's.
    out = tmp_path / 'short'
    result = cpo_ros('train', *env, '--iterations', '1',
                     '--steps-per-iteration', '1000', '--num-envs', '4', '--out', str(out),
                     '--quiet')
    assert result.returncode == 2, result.stderr
    assert 'fewer than an episode (500 steps)' in result.stderr
    assert 'steps_per_iteration >= 2000 or num_envs <= 2' in result.stderr
    assert not out.exists()


def test_an_env_that_cannot_run_is_refused_before_a_run_exists(tmp_path):
    out = tmp_path / 'nocost'
    result = cpo_ros('train', '--env-id', 'gym_worker_envs:cpo_ros_test/NoCost-v0',
                     '--cost-limit', '5', '--iterations', '1', '--steps-per-iteration', '20',
                     '--num-envs', '1', '--out', str(out), '--quiet')
    assert result.returncode == 2 and 'no "cost" entry' in result.stderr, result.stderr
    assert not out.exists()  # a rerun with a fixed env needs no --overwrite


@pytest.mark.parametrize('algo', ['ppo_lag', 'cpo'])
def test_a_batch_of_one_sample_gives_finite_figures_and_weights(tmp_path, algo):
    out = tmp_path / algo
    result = cpo_ros('train', '--env-id', 'gym_worker_envs:cpo_ros_test/CostInInfo-v0',
                     '--algo', algo, '--cost-limit', '5', '--iterations', '2',
                     '--steps-per-iteration', '1', '--num-envs', '1', '--out', str(out),
                     '--quiet')
    assert result.returncode == 0, result.stderr
    with open(out / 'progress.csv') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(math.isfinite(float(r['kl'])) for r in rows), rows
    payload = load_checkpoint(out / 'checkpoints' / 'last.pt')
    assert all(bool(torch.isfinite(v).all())
               for v in payload['algorithm']['policy'].values() if v.is_floating_point())


def test_a_misspelt_env_id_names_the_close_ones():
    with pytest.raises(ValueError, match='did you mean Pendulum-v1'):
        check_env_id('Pendulm-v1')
