"""The constraint estimate of long-horizon CPO: cost critics fit to standardised targets (the
Pop-Art fold), an upper confidence bound on J_C, the linear cost model's bias and its calibrated
rises, and the split-half noise diagnostic."""

from conftest import circle_rollout, set_costs
import numpy as np
import pytest
import torch

from cpo_ros.algo.algorithm import ConstrainedTrustRegion
from cpo_ros.algo.buffer import episode_summary
from cpo_ros.algo.networks import Critic
from cpo_ros.training.config import AlgoConfig


def _rollout(algo, **kwargs):
    return circle_rollout(algo, **{'steps': 200, **kwargs})


@pytest.mark.parametrize('normalise', ['cost', 'off'])
def test_critics_fit_long_horizon_values(normalise):
    """Values in the hundreds (500-step episodes) are fit in one update only when standardised."""
    torch.manual_seed(0)
    algo = ConstrainedTrustRegion(3, 2, AlgoConfig(value_normalization=normalise,
                                                   value_minibatch=1000))
    obs = torch.randn(4000, 3)
    target = 250.0 + 60.0 * torch.tanh(obs[:, 0])
    algo._fit_critics(obs, target, target[:, None].clone(), fitted=False)
    with torch.no_grad():
        error = (algo.cost_critics[0](algo.policy.norm(obs)) - target).pow(2).mean()
    explained = 1.0 - float(error) / float(target.var())
    if normalise == 'cost':
        assert explained > 0.9
    else:
        assert explained < 0.0  # raw targets: Adam's small steps leave the critic near 0


def test_episode_cost_standard_error():
    algo = ConstrainedTrustRegion(6, 2, AlgoConfig())
    rollout = _rollout(algo)
    rng = np.random.default_rng(1)
    set_costs(rollout, (rng.random(rollout['reward'].shape) < 0.1).astype(float))
    costs = rollout['episode_cost']
    summary = episode_summary(rollout, 20)
    expected = costs.std(ddof=1) / np.sqrt(len(costs))
    assert summary['episode_cost_se'][0] == pytest.approx(expected)


def test_constraint_value_is_an_upper_confidence_bound():
    torch.manual_seed(0)
    algo = ConstrainedTrustRegion(6, 2, AlgoConfig(cost_confidence=2.0, cost_bias_rate=0.0,
                                                   value_epochs=1),
                                  max_episode_steps=20)
    rollout = _rollout(algo)
    rng = np.random.default_rng(1)
    set_costs(rollout, (rng.random(rollout['reward'].shape) < 0.1).astype(float))
    se = rollout['episode_cost'].std(ddof=1) / np.sqrt(len(rollout['episode_cost']))
    result = algo.update(rollout)
    assert result['constrained_costs'][0] == pytest.approx(result['episode_cost'] + 2.0 * se)
    assert result['cost_estimate'] == result['episode_cost']
    assert result['cost_se'] == pytest.approx(se)


def test_cost_bias_follows_the_prediction_error():
    """The bias term moves toward (measured J_C) - (last J_C + last predicted change)."""
    torch.manual_seed(0)
    algo = ConstrainedTrustRegion(6, 2, AlgoConfig(cost_confidence=0.0, cost_bias_rate=0.5,
                                                   value_epochs=1, cost_limit=1.0),
                                  max_episode_steps=20)
    rng = np.random.default_rng(1)
    first = _rollout(algo, seed=1)
    set_costs(first, (rng.random(first['reward'].shape) < 0.1).astype(float))
    r1 = algo.update(first)
    assert r1['cost_bias'] == 0.0  # nothing to compare with yet
    second = _rollout(algo, seed=2)
    set_costs(second, (rng.random(second['reward'].shape) < 0.3).astype(float))
    r2 = algo.update(second)
    error = r2['episode_cost'] - (r1['episode_cost'] + r1['predicted_cost_change'])
    assert error > 0.0
    assert r2['cost_bias'] == pytest.approx(0.5 * error)
    assert r2['constrained_costs'][0] == pytest.approx(r2['episode_cost'] + 0.5 * error)
    # Exact resume carries the estimate.
    clone = ConstrainedTrustRegion(6, 2, algo.config, max_episode_steps=20)
    clone.load_state_dict(algo.state_dict())
    assert clone.cost_bias[0] == pytest.approx(algo.cost_bias[0])


@pytest.mark.parametrize('signal', [True, False])
def test_split_half_noise_tells_signal_from_noise(signal):
    """A cost caused by the action has a reproducible gradient; a coin flip has none."""
    torch.manual_seed(0)
    algo = ConstrainedTrustRegion(6, 2, AlgoConfig(value_epochs=1), max_episode_steps=20)
    rollout = _rollout(algo, steps=500, num_envs=16)
    rng = np.random.default_rng(3)
    if signal:
        cost = (rollout['u'][..., 0] > 0.0).astype(float)
    else:
        cost = (rng.random(rollout['reward'].shape) < 0.5).astype(float)
    set_costs(rollout, cost)
    result = algo.update(rollout)
    if signal:
        assert result['cost_grad_noise'] < 0.3 and result['cost_grad_cos'] > 0.5
    else:
        assert result['cost_grad_noise'] > 0.6 and abs(result['cost_grad_cos']) < 0.3


def test_rescale_keeps_the_values():
    """Pop-Art: a new shift and scale are folded into the last layer; the values stay."""
    torch.manual_seed(0)
    critic = Critic(4)
    x = torch.randn(50, 4)
    before = critic(x).detach()
    critic.rescale(120.0, 35.0)
    assert torch.allclose(critic(x), before, atol=1e-4)
    assert torch.allclose(critic.standardised(x) * 35.0 + 120.0, before, atol=1e-4)
    critic.rescale(3.0, 2.0, preserve=False)  # a fresh critic starts from the targets' mean
    assert torch.allclose(critic(x), critic.standardised(x) * 2.0 + 3.0)
    assert not torch.allclose(critic(x), before, atol=1.0)


def test_reward_critic_stays_raw_by_default():
    torch.manual_seed(0)
    algo = ConstrainedTrustRegion(3, 2, AlgoConfig(value_minibatch=1000))
    obs = torch.randn(2000, 3)
    target = 250.0 + 60.0 * torch.tanh(obs[:, 0])
    algo._fit_critics(obs, target, target[:, None].clone(), fitted=False)
    assert float(algo.reward_critic.shift) == 0.0 and float(algo.reward_critic.scale) == 1.0
    assert float(algo.cost_critics[0].shift) == pytest.approx(float(target.mean()), rel=1e-5)


def _action_costs(algo: ConstrainedTrustRegion, seed: int, cost_share: float) -> dict:
    """A rollout where reward and cost both come from pushing action 0 up."""
    rollout = _rollout(algo, steps=400, num_envs=8, seed=seed)
    push = rollout['u'][..., 0]
    rollout['reward'] = push.astype(np.float32)
    rng = np.random.default_rng(seed)
    set_costs(rollout, ((push > 0.0) & (rng.random(push.shape) < cost_share)).astype(float))
    return rollout


def test_under_predicted_rises_shrink_the_allowed_rise():
    """After a rise measured at k times its prediction, a step may predict margin / k."""
    torch.manual_seed(0)
    algo = ConstrainedTrustRegion(6, 2, AlgoConfig(cost_confidence=0.0, cost_bias_rate=0.5,
                                                   cost_limit=10.0, value_epochs=1),
                                  max_episode_steps=20)
    r1 = algo.update(_action_costs(algo, 1, 0.2))
    assert r1['predicted_cost_change'] > 0.0  # more push: more reward and more cost
    r2 = algo.update(_action_costs(algo, 2, 0.6))
    ratio = (r2['episode_cost'] - r1['episode_cost']) / r1['predicted_cost_change']
    assert ratio > 1.5
    assert r2['cost_rise_factor'] == pytest.approx(min(ratio, 10.0))
    margin = 10.0 - r2['constrained_costs'][0]
    assert margin > 0.0
    assert 0.0 < r2['predicted_cost_change'] <= margin / r2['cost_rise_factor'] + 1e-6
    # Exact resume carries the calibration; the paper's model (cost_rise_max 1) has none.
    clone = ConstrainedTrustRegion(6, 2, algo.config, max_episode_steps=20)
    clone.load_state_dict(algo.state_dict())
    assert clone.rise_factor[0] == pytest.approx(algo.rise_factor[0])
    paper = ConstrainedTrustRegion(6, 2, AlgoConfig(cost_confidence=0.0, cost_bias_rate=0.5,
                                                    cost_limit=10.0, value_epochs=1,
                                                    cost_rise_max=1.0), max_episode_steps=20)
    torch.manual_seed(0)
    paper.update(_action_costs(paper, 1, 0.2))
    p2 = paper.update(_action_costs(paper, 2, 0.6))
    assert p2['cost_rise_factor'] == 1.0
    assert p2['predicted_cost_change'] > 2.0 * margin / r2['cost_rise_factor']
