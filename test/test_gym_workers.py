"""Env workers (--env-workers): the serial results, clear errors when a worker fails, no hang."""

import csv
import os
import signal
import subprocess
import sys

from gym_worker_envs import (
    CostInInfoEnv,
    DyingEnv,
    FaultEnv,
    NoCostEnv,
    RandomSafetyEnv,
    StuckEnv,
)
import numpy as np
import pytest
import torch

from cpo_ros.sim.gym_workers import EnvWorkerError, GymWorkerVecEnv
from cpo_ros.sim.make import check_env_id, GymVecEnv, make_vec_env
from cpo_ros.training.config import TrainConfig
from cpo_ros.training.settings import build_config
from cpo_ros.training.trainer import train

# Long enough that a detection broken into a wait shows as a failed match, not a stuck run.
TIMEOUT_S = 60.0


def roll(env, steps=40, seed=5):
    """Return everything env returns for a fixed action sequence (resets included)."""
    rng = np.random.default_rng(0)
    out = [env.reset(seed=seed)]
    for t in range(steps):
        if t == steps // 2:
            out.append(env.reset())  # unseeded: continues from the env's own seed
        obs, reward, cost, terminated, truncated, info = env.step(
            rng.uniform(-1, 1, (env.num_envs, env.act_dim)))
        out += [obs, reward, cost, terminated, truncated, info['final_obs']]
    return out


@pytest.mark.parametrize('env_class', [RandomSafetyEnv, CostInInfoEnv])
@pytest.mark.parametrize('workers', [1, 2, 3])
def test_workers_return_exactly_what_serial_stepping_returns(env_class, workers):
    serial = roll(GymVecEnv([env_class] * 5, 'random', seed=11))
    env = GymWorkerVecEnv(env_class, 5, 'random', seed=11, workers=workers, timeout_s=TIMEOUT_S)
    try:
        parallel = roll(env)
    finally:
        env.close()
    assert len(parallel) == len(serial)
    for a, b in zip(serial, parallel, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    episode_ends = sum(int(a.sum()) for a in serial if a.dtype == bool)
    assert episode_ends >= 10  # the comparison covered auto-resets


def test_a_project_id_through_make_vec_env_matches_serial():
    def run(workers):
        env = make_vec_env(env_id='cpo_ros/PointCircle-v0', num_envs=4, seed=3,
                           env_workers=workers, max_episode_steps=15)
        try:
            return roll(env, steps=40)
        finally:
            if hasattr(env, 'close'):
                env.close()
    serial, parallel = run(1), run(2)
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a, b)


def test_training_with_two_workers_matches_one(tmp_path):
    def run(workers):
        config = TrainConfig(task=None, env_id='cpo_ros/PointCircle-v0', iterations=2,
                             steps_per_iteration=400, num_envs=4, env_workers=workers,
                             out=str(tmp_path / f'w{workers}'))
        train(config, show_progress=False)
        with open(tmp_path / f'w{workers}' / 'progress.csv') as f:
            table = list(csv.DictReader(f))
        weights = torch.load(tmp_path / f'w{workers}' / 'checkpoints' / 'last.pt',
                             weights_only=True)['algorithm']['policy']
        return table, weights
    (one, w_one), (two, w_two) = run(1), run(2)
    for key in ('env_steps', 'episode_return', 'episode_cost', 'kl', 'case', 'policy_std'):
        assert [r[key] for r in one] == [r[key] for r in two], key
    assert w_one.keys() == w_two.keys()
    for name in w_one:
        assert torch.equal(w_one[name], w_two[name]), name


def test_a_killed_worker_is_named_at_once_and_the_others_end():
    env = GymWorkerVecEnv(RandomSafetyEnv, 4, 'random', workers=2, timeout_s=TIMEOUT_S)
    env.reset(seed=0)
    env.step(np.zeros((4, 2)))
    pids = env.pids
    os.kill(pids[1], signal.SIGKILL)
    # Noticed by its process sentinel (the timeout would say 'did not answer').
    with pytest.raises(EnvWorkerError, match=rf'env worker 1 of 2 \(pid {pids[1]}, envs 2-3 of '
                       r'random\) died (before|during) step: killed by SIGKILL'):
        env.step(np.zeros((4, 2)))
    with pytest.raises(EnvWorkerError, match='closed'):
        env.step(np.zeros((4, 2)))
    assert not any(w.process.is_alive() for w in env._workers)


def test_a_worker_that_exits_inside_step_is_named_with_its_exit_code():
    env = GymWorkerVecEnv(DyingEnv, 4, 'dying', workers=2, timeout_s=TIMEOUT_S)
    env.reset(seed=5)  # env 2 (worker 1) gets seed 7
    env.step(np.zeros((4, 2)))
    with pytest.raises(EnvWorkerError, match=r'env worker 1 of 2 \(pid \d+, envs 2-3 of dying\) '
                       r'died during step: exit code 3'):
        env.step(np.zeros((4, 2)))


def test_a_stuck_worker_is_named_after_the_timeout():
    env = GymWorkerVecEnv(StuckEnv, 3, 'stuck', workers=3, timeout_s=TIMEOUT_S)
    env.reset(seed=6)  # env 1 (worker 1) gets seed 7
    env.step(np.zeros((3, 2)))
    env.timeout_s = 1.0  # only for the step that never ends
    with pytest.raises(EnvWorkerError, match=r'env worker 1 of 3 \(pid \d+, env 1 of stuck\) '
                       r'did not answer step within 1 s'):
        env.step(np.zeros((3, 2)))
    assert not any(w.process.is_alive() for w in env._workers)


def test_an_env_error_in_a_worker_is_raised_as_itself_naming_the_worker():
    env = GymWorkerVecEnv(NoCostEnv, 2, 'nocost', workers=2, timeout_s=TIMEOUT_S)
    env.reset(seed=0)
    with pytest.raises(ValueError, match='no "cost"') as info:
        env.step(np.zeros((2, 2)))
    assert isinstance(info.value.__cause__, EnvWorkerError)
    assert 'env worker 0 of 2' in str(info.value.__cause__)
    with pytest.raises(ValueError, match=r'action has shape \(2,\)'):
        GymWorkerVecEnv(RandomSafetyEnv, 2, 'random', workers=1).step(np.zeros(2))


def test_a_users_env_id_in_gymnasiums_module_form_is_imported_then_made(tmp_path):
    (tmp_path / 'registers_nothing.py').write_text('')
    sys.path.insert(0, str(tmp_path))
    try:
        env_id = 'gym_worker_envs:cpo_ros_test/CostInInfo-v0'
        check_env_id(env_id)
        env = make_vec_env(env_id=env_id, num_envs=2, env_workers=2)
        try:
            assert env.reset(seed=1).shape == (2, 6)
        finally:
            env.close()
        with pytest.raises(ValueError, match="module 'no_such_envs' does not import"):
            check_env_id('no_such_envs:Some-v0')
        with pytest.raises(ValueError, match="unknown env id 'Some-v0'"):
            check_env_id('registers_nothing:Some-v0')
    finally:
        sys.path.remove(str(tmp_path))


def test_an_env_error_that_does_not_unpickle_keeps_its_message_and_traceback():
    env = GymWorkerVecEnv(FaultEnv, 4, 'fault', workers=2, timeout_s=TIMEOUT_S)
    env.reset(seed=6)  # env 1 (worker 0) is reset with seed 7
    env.step(np.zeros((4, 2)))
    with pytest.raises(EnvWorkerError, match='env worker 0 of 2') as info:
        env.step(np.zeros((4, 2)))
    assert 'EnvFault 42: sensor cable unplugged' in str(info.value)
    assert 'in step' in str(info.value)  # the worker's traceback
    assert not any(w.process.is_alive() for w in env._workers)


@pytest.mark.parametrize('values,message', [
    ({'env_id': 'cpo_ros/PointCircle-v0', 'num_envs': 2, 'env_workers': 3},
     'env_workers = 3 exceeds num_envs = 2'),
    ({'env_id': 'cpo_ros/PointCircle-v0', 'env_workers': 0},
     r'env_workers = 0 is out of range: allowed an integer in \[1, 256\]'),
    ({'env_id': 'cpo_ros/PointCircle-v0', 'env_workers': '1.5'}, 'env_workers = .1.5.: need int'),
    ({'task': 'circle', 'env_workers': 2}, 'the task circle steps all its robots'),
])
def test_env_workers_is_validated(values, message):
    with pytest.raises(ValueError, match=message):
        build_config(values)


def test_env_workers_is_a_setting_and_a_flag(tmp_path):
    config = build_config({'env_id': 'cpo_ros/PointCircle-v0', 'env_workers': '2'})[0]
    assert config.env_workers == 2
    result = subprocess.run(
        [sys.executable, '-m', 'cpo_ros.cli', 'train', '--env-id', 'cpo_ros/PointCircle-v0',
         '--num-envs', '2', '--env-workers', '4', '--out', str(tmp_path), '--quiet'],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert 'env_workers = 4 exceeds num_envs = 2' in result.stderr
    with pytest.raises(ValueError, match='the task goal steps all its robots'):
        make_vec_env(task='goal', env_workers=2)
