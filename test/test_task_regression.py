"""Each built-in task pinned: the same figures on the same seed, before and after any refactor.

Two levels. The env: a seeded stream of random actions through each task's vectorised env
(sums of observations, rewards, costs, episode ends and final observations). The trainer: the
first iteration's rollout figures in `progress.csv` of `cpo-ros train` (sampled by the initial
policy, before any update, so improvements to the update rule never move them).
The figures were recorded at 9199f4c, before the task interface and the layout move.
"""

import csv
import subprocess
import sys

import numpy as np
import pytest

from cpo_ros.sim.make import make_vec_env

CASES = {'circle': ('circle', {}), 'circle_long': ('circle_long', {}), 'gather': ('gather', {}),
         'goal': ('goal', {}), 'circle_speed': ('circle', {'speed_limit': 1.0})}

ENV_FIGURES = {
    'circle': dict(obs=22825.050961494446, reward=-1.8202547553228214, cost=[0.0], ends=120,
                   final=536.3441686630249),
    'circle_long': dict(obs=38973.9128985405, reward=21.130623925186228, cost=[1839.0], ends=12,
                        final=102.90904998779297),
    'gather': dict(obs=23333.16614294052, reward=10.0, cost=[0.0], ends=400,
                   final=1628.7286043167114),
    # Goal re-pinned when its obstacles became MuJoCo geoms (collisions, ray-cast scan).
    'goal': dict(obs=49480.47618293762, reward=-5.865489066345617, cost=[268.0], ends=4,
                 final=35.18140411376953),
    'circle_speed': dict(obs=22825.050961494446, reward=-1.8202547553228214, cost=[0.0, 1818.0],
                         ends=120, final=536.3441686630249),
}

FIRST_ITERATION = {
    'circle': dict(env_steps=4000, episode_return=0.01449, episode_cost=0, episodes=80,
                   episode_length=50),
    'circle_long': dict(env_steps=4000, episode_return=0.519837, episode_cost=49, episodes=8,
                        episode_length=500),
    'gather': dict(env_steps=4000, episode_return=0, episode_cost=0, episodes=264,
                   episode_length=15),
    'goal': dict(env_steps=4000, episode_return=0.564555, episode_cost=32.75, episodes=4,
                 episode_length=1000),
    'circle_speed': dict(env_steps=4000, episode_return=0.01449, episode_cost_0=0,
                         episode_cost_1=12.3875, episodes=80, episode_length=50),
}


def env_figures(task: str, options: dict, steps: int = 1500, num_envs: int = 4) -> dict:
    """Drive a task's env with seeded uniform actions; return sums of what it gave back."""
    env = make_vec_env(task=task, num_envs=num_envs, seed=0, **options)
    rng = np.random.default_rng(0)
    obs = env.reset(seed=0)
    low, high = env.single_action_space.low, env.single_action_space.high
    figures = dict(obs=float(np.abs(obs).sum()), reward=0.0, cost=np.zeros(env.num_costs),
                   ends=0, final=0.0)
    for _ in range(steps):
        actions = rng.uniform(low, high, size=(num_envs, env.act_dim)).astype(np.float32)
        obs, reward, cost, terminated, truncated, info = env.step(actions)
        ended = terminated | truncated
        figures['obs'] += float(np.abs(obs).sum())
        figures['reward'] += float(reward.sum())
        figures['cost'] += np.asarray(cost, float).reshape(num_envs, -1).sum(0)
        figures['ends'] += int(ended.sum())
        figures['final'] += float(np.abs(info['final_obs'][ended]).sum())
    figures['cost'] = figures['cost'].tolist()
    return figures


@pytest.mark.parametrize('case', sorted(CASES))
def test_task_env_gives_its_pinned_figures(case):
    task, options = CASES[case]
    got, want = env_figures(task, options), ENV_FIGURES[case]
    assert got['ends'] == want['ends']
    for key in ('obs', 'reward', 'final'):
        assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-6), key
    assert got['cost'] == pytest.approx(want['cost'], rel=1e-6, abs=1e-6)


@pytest.mark.parametrize('case', sorted(CASES))
def test_first_iteration_of_train_gives_its_pinned_figures(tmp_path, case):
    task, options = CASES[case]
    extra = ['--speed-limit', str(options['speed_limit'])] if 'speed_limit' in options else []
    out = tmp_path / case
    result = subprocess.run(
        [sys.executable, '-m', 'cpo_ros.cli', 'train', '--task', task, *extra, '--iterations',
         '1', '--steps-per-iteration', '4000', '--num-envs', '4', '--seed', '0', '--out',
         str(out), '--quiet'], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out / 'progress.csv') as f:
        row = next(csv.DictReader(f))
    # Goal's 1,000-step episodes carry the last bits of the policy's float arithmetic, which
    # differ between CPUs' vector units (an AMD EPYC with AVX2 and no AVX-512 gave a return of
    # 0.56518 against the 0.564555 pinned on another machine): its figures are pinned to 1%,
    # the others' to 1e-5.
    rel = 1e-2 if case == 'goal' else 1e-5
    for key, value in FIRST_ITERATION[case].items():
        assert float(row[key]) == pytest.approx(value, rel=rel, abs=1e-6), key
