"""GAE for reward and cost against a naive loop; rollout collection and validation."""

import numpy as np
import pytest

from cpo_ros.algo.buffer import (
    episode_summary,
    gae,
    next_values,
    RolloutCollector,
    validate_rollout,
)


def naive_gae(rewards, values, final_values, last_value, terminated, truncated, gamma, lam):
    """One env stream, one step at a time, written for clarity, not speed."""
    t_len = len(rewards)
    adv = np.zeros(t_len)
    for t in range(t_len):
        total, discount = 0.0, 1.0
        for k in range(t, t_len):
            if terminated[k]:
                nxt = 0.0
            elif truncated[k]:
                nxt = final_values[k]
            elif k + 1 < t_len:
                nxt = values[k + 1]
            else:
                nxt = last_value
            delta = rewards[k] + gamma * nxt - values[k]
            total += discount * delta
            if terminated[k] or truncated[k]:
                break
            discount *= gamma * lam
        adv[t] = total
    return adv


@pytest.mark.parametrize('gamma,lam', [(0.995, 0.95), (0.99, 1.0), (0.9, 0.0)])
def test_gae_matches_naive_loop_with_truncation_and_termination(gamma, lam):
    rng = np.random.default_rng(0)
    t_len, n = 40, 3
    rewards = rng.normal(size=(t_len, n))
    costs = (rng.random((t_len, n)) < 0.3).astype(float)
    values, cost_values = rng.normal(size=(t_len, n)), rng.normal(size=(t_len, n))
    final_v, final_cv = rng.normal(size=(t_len, n)), rng.normal(size=(t_len, n))
    last_v, last_cv = rng.normal(size=n), rng.normal(size=n)
    terminated = np.zeros((t_len, n), bool)
    truncated = np.zeros((t_len, n), bool)
    terminated[[5, 20], 0] = True
    truncated[[9, 30], 1] = True
    terminated[12, 2] = True
    truncated[25, 2] = True
    dones = terminated | truncated
    for r, v, fv, lv in ((rewards, values, final_v, last_v), (costs, cost_values, final_cv,
                                                              last_cv)):
        nxt = next_values(v, lv, fv, terminated, truncated)
        adv, target = gae(r, v, nxt, dones, gamma, lam)
        for i in range(n):
            ref = naive_gae(r[:, i], v[:, i], fv[:, i], lv[i], terminated[:, i],
                            truncated[:, i], gamma, lam)
            np.testing.assert_allclose(adv[:, i], ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(target, adv + v)


def test_collector_tracks_episodes_and_final_obs():
    col = RolloutCollector(num_envs=2, obs_dim=1, act_dim=1, steps=4)
    for t in range(4):
        done = np.array([t == 1, False])
        col.add(np.full((2, 1), t), np.zeros((2, 1)), np.zeros(2), np.array([1.0, 2.0]),
                np.array([0.0, 1.0]), np.zeros(2, bool), done, np.full((2, 1), 100 + t))
    assert col.full
    out = col.arrays(np.zeros((2, 1)), policy_version=3)
    validate_rollout(out, 1, 1)
    assert out['episode_return'].tolist() == [2.0]
    assert out['episode_cost'].tolist() == [0.0]
    assert out['final_obs'][1, 0, 0] == 101
    assert int(out['policy_version']) == 3
    summary = episode_summary(out, 50)
    assert summary['episode_return'] == 2.0 and summary['episodes'] == 1.0
    with pytest.raises(IndexError):
        col.add(*[np.zeros((2, 1))] * 2, *[np.zeros(2)] * 3, np.zeros(2, bool), np.zeros(2, bool),
                np.zeros((2, 1)))


def test_summary_without_finished_episode_scales_per_step_means():
    col = RolloutCollector(num_envs=1, obs_dim=1, act_dim=1, steps=10)
    for _ in range(10):
        col.add(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.ones(1), np.full(1, 0.5),
                np.zeros(1, bool), np.zeros(1, bool), np.zeros((1, 1)))
    summary = episode_summary(col.arrays(np.zeros((1, 1))), 50)
    assert summary['episode_cost'] == pytest.approx(25.0)
    assert summary['episodes'] == 0.0


def test_validate_rollout_rejects_wrong_shapes_and_nan():
    col = RolloutCollector(num_envs=2, obs_dim=3, act_dim=2, steps=2)
    for _ in range(2):
        col.add(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros(2), np.zeros(2), np.zeros(2),
                np.zeros(2, bool), np.zeros(2, bool), np.zeros((2, 3)))
    good = col.arrays(np.zeros((2, 3)))
    validate_rollout(good, 3, 2)
    with pytest.raises(ValueError, match='obs'):
        validate_rollout(good, 4, 2)
    bad = dict(good, u=np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match='u has shape'):
        validate_rollout(bad, 3, 2)
    nan = dict(good, reward=np.full((2, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match='non-finite'):
        validate_rollout(nan, 3, 2)
    missing = {k: v for k, v in good.items() if k != 'cost'}
    with pytest.raises(ValueError, match='lacks'):
        validate_rollout(missing, 3, 2)
