"""Several constraints through the training pipeline, and cost shaping (paper section 6.3)."""

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch

from cpo_ros.algo.algorithm import ConstrainedTrustRegion
from cpo_ros.algo.buffer import episode_summary, RolloutCollector, validate_rollout
from cpo_ros.algo.shaping import violation_labels, ViolationPredictor
from cpo_ros.algo.trust_region import flat_params
from cpo_ros.sim.make import vec_env
from cpo_ros.sim.vec_env import TaskEnv
from cpo_ros.tasks import circle
from cpo_ros.tasks.circle import Circle
from cpo_ros.tasks.circle import CircleParams as CircleTask
from cpo_ros.training.config import AlgoConfig
from cpo_ros.training.worker import RolloutWorker


def test_circle_speed_constraint_costs_on_hand_placed_states():
    task = CircleTask(speed_limit=1.0)
    assert Circle(task).cost_names == ('safe_area', 'speed')
    assert Circle().cost_names == ('safe_area',)
    pose = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [3.0, 0.0, 0.0], [-1.0, 5.0, 1.0]])
    twist = np.array([[1.2, 0.0], [0.5, 0.0], [1.5, 0.0], [-1.3, 0.0]])
    np.testing.assert_array_equal(circle.costs(pose, twist, task),
                                  [[0, 1], [1, 0], [1, 1], [0, 1]])
    np.testing.assert_array_equal(circle.costs(pose, twist, CircleTask()), [[0], [1], [1], [0]])
    with pytest.raises(ValueError, match='speed_limit'):
        CircleTask(speed_limit=-1.0).validate()


def test_vector_env_and_gym_env_report_one_cost_per_constraint():
    env = vec_env('circle', 3, seed=0, speed_limit=0.5)
    env.reset(seed=0)
    assert env.num_costs == 2
    for _ in range(10):
        _, _, cost, _, _, info = env.step(np.tile([1.5, 0.0], (3, 1)))
    assert cost.shape == (3, 2)
    np.testing.assert_array_equal(cost[:, 1], 1.0)  # driving at 1.5 m/s > 0.5
    np.testing.assert_array_equal(cost[:, 0], info['cost_safe_area'])
    gym_env = TaskEnv('circle', speed_limit=0.5)
    gym_env.reset(seed=1)
    for _ in range(10):
        *_, info = gym_env.step(np.array([1.5, 0.0], np.float32))
    assert info['cost'].shape == (2,) and info['cost_speed'] == 1.0


def test_collector_keeps_a_cost_column_per_constraint():
    col = RolloutCollector(num_envs=2, obs_dim=1, act_dim=1, steps=3, num_costs=2)
    for t in range(3):
        done = np.array([t == 1, False])
        col.add(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(2), np.ones(2),
                np.array([[1.0, 0.0], [0.0, 2.0]]), np.zeros(2, bool), done, np.zeros((2, 1)))
    rollout = col.arrays(np.zeros((2, 1)))
    assert rollout['cost'].shape == (3, 2, 2)
    np.testing.assert_array_equal(rollout['episode_cost'], [[2.0, 0.0]])
    validate_rollout(rollout, 1, 1, num_costs=2)
    with pytest.raises(ValueError, match='cost'):
        validate_rollout(rollout, 1, 1, num_costs=1)
    summary = episode_summary(rollout, None)
    assert summary['episode_cost'] == 2.0
    np.testing.assert_array_equal(summary['episode_costs'], [2.0, 0.0])


def circle_rollout(num_costs, speed_limit, steps=200, seed=0):
    env = vec_env('circle', 8, seed=seed, speed_limit=speed_limit)
    worker = RolloutWorker(8, env.obs_dim, env.act_dim, steps, seed=seed, num_costs=num_costs)
    torch.manual_seed(seed)
    return env, worker


def sample(algo, env, worker):
    obs = env.reset(seed=0)
    worker.use_policy(algo.policy, algo.version)
    rollout = None
    while rollout is None:
        action = worker.act(obs)
        obs, r, c, te, tr, info = env.step(action)
        worker.record(r, c, te, tr, info['final_obs'])
        rollout = worker.take_rollout(obs)
    return rollout


def test_a_slack_second_constraint_leaves_the_cpo_step_as_with_one():
    """A second constraint far from its limit must not change the update (closed form vs dual)."""
    env, worker = circle_rollout(1, 0.0)
    torch.manual_seed(0)
    one = ConstrainedTrustRegion(6, 2, AlgoConfig(cost_limit=0.05), env.single_action_space.low,
                                 env.single_action_space.high, 50)
    rollout = sample(one, env, worker)
    torch.manual_seed(0)
    two = ConstrainedTrustRegion(6, 2, AlgoConfig(cost_limit=(0.05, 1e6)),
                                 env.single_action_space.low, env.single_action_space.high, 50,
                                 num_costs=2)
    np.testing.assert_array_equal(flat_params(one.policy), flat_params(two.policy))
    double = dict(rollout)
    double['cost'] = np.stack([rollout['cost'], np.zeros_like(rollout['cost'])], axis=-1)
    double['episode_cost'] = np.stack([rollout['episode_cost'],
                                       np.zeros_like(rollout['episode_cost'])], axis=-1)
    a, b = one.update(rollout), two.update(double)
    assert a['case'] != 'trpo' and b['episode_costs'][1] == 0.0
    np.testing.assert_allclose(flat_params(two.policy), flat_params(one.policy), atol=2e-4)


def test_cpo_with_two_constraints_keeps_each_within_its_line_search_rule():
    env, worker = circle_rollout(2, 0.6, seed=2)
    algo = ConstrainedTrustRegion(6, 2, AlgoConfig(cost_limit=(5.0, 3.0)),
                                  env.single_action_space.low, env.single_action_space.high, 50,
                                  num_costs=2)
    with pytest.raises(ValueError, match='cost_limit has 1 value'):
        ConstrainedTrustRegion(6, 2, AlgoConfig(cost_limit=5.0), num_costs=2)
    for _ in range(3):
        rollout = sample(algo, env, worker)
        result = algo.update(rollout)
        c = np.asarray(result['episode_costs']) - [5.0, 3.0]
        assert len(result['lagranges']) == 2
        # The step was taken (a rejected one reports kl 0), within the trust region.
        assert result['accepted'] and 0.0 < result['kl'] <= 0.01 + 1e-9
        # The cost surrogate of the first constraint (logged) obeys its own rule.
        assert result['surrogate_cost_change'] <= max(-c[0], 0.0) + 1e-6
        if np.any(c > 0):
            assert result['case'] in ('dual', 'recovery')


def test_violation_labels_match_a_naive_loop():
    rng = np.random.default_rng(0)
    costs = (rng.random((30, 4, 2)) < 0.1).astype(np.float32)
    dones = rng.random((30, 4)) < 0.1
    horizon = 4
    labels = violation_labels(costs, dones, horizon)
    for t in range(30):
        for n in range(4):
            for i in range(2):
                hit = False
                for k in range(t, min(t + horizon, 30)):
                    if costs[k, n, i] > 0:
                        hit = True
                        break
                    if dones[k, n]:
                        break
                assert labels[t, n, i] == hit, (t, n, i)


def test_the_predictor_learns_where_violations_follow():
    """States with x > 0 are followed by a cost within the horizon; x < 0 never."""
    rng = np.random.default_rng(1)
    t_len, n = 50, 32
    obs = rng.normal(size=(t_len, n, 1)).astype(np.float32)
    costs = (obs[..., 0] > 0).astype(np.float32)
    dones = np.ones((t_len, n), bool)  # one-step episodes: label = own cost
    torch.manual_seed(0)
    predictor = ViolationPredictor(1, 1, (16,), horizon=5, lr=1e-2, epochs=200)
    loss = predictor.fit(torch.as_tensor(obs.reshape(-1, 1)), costs[..., None], dones)
    prob = predictor.predict(torch.tensor([[2.0], [-2.0]]))
    assert loss < 0.2 and prob[0, 0] > 0.9 and prob[1, 0] < 0.1


def test_shaping_is_off_by_default_and_constrains_the_shaped_cost():
    assert AlgoConfig().cost_shaping is False
    env, worker = circle_rollout(1, 0.0, seed=3)
    algo = ConstrainedTrustRegion(6, 2, AlgoConfig(cost_shaping=True, cost_limit=0.5),
                                  env.single_action_space.low, env.single_action_space.high, 50)
    rollout = sample(algo, env, worker)
    result = algo.update(rollout)
    shaped = result['constrained_costs'][0]
    assert shaped > result['episode_cost']  # C + w P with P > 0
    assert np.isfinite(result['shaping_loss'])
    state = algo.state_dict()
    plain = ConstrainedTrustRegion(6, 2, AlgoConfig(cost_limit=0.5))
    with pytest.raises(ValueError, match='cost_shaping'):
        plain.load_state_dict(state)


def run_cli(*args):
    result = subprocess.run([sys.executable, '-m', 'cpo_ros.cli', *args], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result


def test_train_command_with_a_speed_constraint_and_shaping_writes_per_constraint_columns(
        tmp_path):
    out = tmp_path / 'two'
    run_cli('train', '--task', 'circle', '--speed-limit', '1.0', '--cost-limit', '5', '8',
            '--cost-shaping', '--iterations', '2', '--steps-per-iteration', '2000',
            '--num-envs', '4', '--out', str(out), '--quiet')
    with open(out / 'progress.csv') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for key in ('episode_cost_0', 'episode_cost_1', 'cost_limit_1', 'lagrange_1',
                'constrained_cost_0', 'constrained_cost_1', 'shaping_loss'):
        assert rows[-1][key] != '', key
    assert float(rows[0]['cost_limit_1']) == 8.0
    config = (out / 'config.yaml').read_text()
    assert 'speed_limit: 1.0' in config and 'cost_shaping: true' in config
    result = run_cli('eval', '--checkpoint', str(out / 'checkpoints' / 'last.pt'),
                     '--episodes', '2')
    assert result.stdout.count('limit') == 2
    bad = subprocess.run([sys.executable, '-m', 'cpo_ros.cli', 'train', '--speed-limit', '1.0',
                          '--cost-limit', '5', '--iterations', '1', '--out',
                          str(tmp_path / 'bad'), '--quiet'], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and 'cost_limit has 1 value' in bad.stderr
