"""z of CPO's held bound calibrated online (cost_confidence_rate): it melts while the measured
cost stays under the limit, comes back when a batch breaks it, never leaves [0, cost_confidence],
and a resume carries it."""

from conftest import circle_rollout, set_random_costs
import numpy as np
import pytest
import torch

from cpo_ros.algo.algorithm import ConstrainedTrustRegion
from cpo_ros.training.config import AlgoConfig


def _algo(**settings) -> ConstrainedTrustRegion:
    torch.manual_seed(0)
    config = AlgoConfig(**{'cost_confidence': 2.0, 'cost_bias_rate': 0.0, 'cost_limit': 5.0,
                           'value_epochs': 1, **settings})
    return ConstrainedTrustRegion(6, 2, config, max_episode_steps=20)


def _batch(algo: ConstrainedTrustRegion, seed: int, share: float) -> dict[str, np.ndarray]:
    """A rollout whose steps cost 1 with probability share (20-step episodes: J_C ~ 20 share)."""
    rollout = circle_rollout(algo, steps=200, seed=seed)
    set_random_costs(rollout, share, seed)
    return rollout


def test_z_melts_under_the_limit_and_comes_back_above_it():
    algo = _algo(cost_confidence_rate=1.0, cost_over_share=0.2)
    under = [algo.update(_batch(algo, seed, 0.1)) for seed in range(4)]  # J_C ~ 2 < d = 5
    # The first batch has no step before it to judge: z starts at cost_confidence.
    assert [r['cost_confidence'] for r in under] == pytest.approx([2.0, 1.8, 1.6, 1.4])
    last = under[-1]
    assert last['cost_se'] > 0.0
    assert last['constrained_costs'][0] == pytest.approx(
        last['cost_estimate'] + 1.4 * last['cost_se'])
    over = algo.update(_batch(algo, 9, 0.5))  # J_C ~ 10 > d
    assert over['episode_cost'] > 5.0
    assert over['cost_confidence'] == pytest.approx(2.0)  # 1.4 + 0.8, at most cost_confidence
    assert over['constrained_costs'][0] == pytest.approx(
        over['cost_estimate'] + 2.0 * over['cost_se'])


def test_z_stops_at_zero_and_a_resume_carries_it():
    algo = _algo(cost_confidence_rate=1.0, cost_over_share=0.9)
    zs = [algo.update(_batch(algo, seed, 0.1))['cost_confidence'] for seed in range(4)]
    assert zs == pytest.approx([2.0, 1.1, 0.2, 0.0])
    clone = _algo(cost_confidence_rate=1.0, cost_over_share=0.9)
    clone.load_state_dict(algo.state_dict())
    batch = _batch(algo, 7, 0.1)
    mine, theirs = algo.update(dict(batch)), clone.update(dict(batch))
    assert theirs['cost_confidence'] == mine['cost_confidence'] == 0.0
    assert theirs['constrained_costs'][0] == pytest.approx(mine['constrained_costs'][0])
    assert mine['constrained_costs'][0] == pytest.approx(mine['cost_estimate'])


def test_without_a_rate_z_is_fixed():
    algo = _algo()
    zs = [algo.update(_batch(algo, seed, 0.1))['cost_confidence'] for seed in range(3)]
    assert zs == [2.0, 2.0, 2.0]
