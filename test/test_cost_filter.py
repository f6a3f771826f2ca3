"""J_C filtered over batches (cost_filter): tighter than one batch where the policy holds
still, at once where it jumps, never looser than one batch, and carried through a resume."""

from conftest import circle_rollout, set_random_costs
import numpy as np
import pytest
import torch

from cpo_ros.algo.algorithm import ConstrainedTrustRegion
from cpo_ros.algo.cost_filter import CostFilter
from cpo_ros.training.config import AlgoConfig


def _track(true_costs, forecasts, se: float, seed: int = 0):
    """Feed noisy measurements of true_costs; return the filter's means and standard errors."""
    rng = np.random.default_rng(seed)
    filt = CostFilter(1, rate=0.3)
    means, errors = [], []
    for i, true in enumerate(true_costs):
        forecast = None if i == 0 else np.array([forecasts[i - 1]])
        mean, sd, _ = filt.update(np.array([true + se * rng.standard_normal()]),
                                  np.array([se]), forecast)
        means.append(mean[0])
        errors.append(sd[0])
    return np.array(means), np.array(errors)


def test_a_still_policy_is_measured_closer_than_by_one_batch():
    se, n = 10.0, 400
    means, errors = _track(np.full(n, 30.0), np.zeros(n), se)
    rmse = np.sqrt(np.mean((means[20:] - 30.0) ** 2))
    assert rmse < 0.75 * se
    assert np.all(errors <= se + 1e-9)
    assert rmse <= 1.05 * np.median(errors[20:])  # its standard error is not overconfident


@pytest.mark.parametrize('forecast', [True, False])
def test_changes_are_followed_and_the_error_stays_honest(forecast):
    """A drift the steps forecast exactly, or not at all, within the filter's own SE."""
    se, n = 10.0, 400
    true = 30.0 + 10.0 * np.sin(np.arange(n) / 5.0)
    steps = np.diff(true, append=true[-1]) if forecast else np.zeros(n)
    means, errors = _track(true, steps, se, seed=1)
    rmse = np.sqrt(np.mean((means[20:] - true[20:]) ** 2))
    assert rmse < (0.75 if forecast else 0.9) * se
    assert rmse <= 1.05 * np.median(errors[20:])


def test_an_unforecast_jump_is_followed_at_once():
    se = 2.0
    true = np.r_[np.full(30, 10.0), np.full(5, 60.0)]
    means, _ = _track(true, np.zeros(len(true)), se, seed=2)
    assert means[30] > 10.0 + 0.8 * 50.0


def test_without_a_forecast_it_starts_from_the_batch():
    filt = CostFilter(2, rate=0.3)
    mean, sd, change = filt.update(np.array([3.0, 4.0]), np.array([1.0, 0.5]), None)
    assert mean.tolist() == [3.0, 4.0] and sd.tolist() == [1.0, 0.5] and change is None
    mean, sd, change = filt.update(np.array([5.0, 4.0]), np.array([0.0, 0.5]), np.zeros(2))
    assert mean[0] == 5.0 and sd[0] == 0.0  # a batch without noise is taken as it is
    assert change[0] == pytest.approx(2.0)
    clone = CostFilter(2, rate=0.3)
    clone.load_state_dict(filt.state_dict())
    assert clone.update(np.array([1.0, 2.0]), np.ones(2), np.zeros(2))[0] == pytest.approx(
        filt.update(np.array([1.0, 2.0]), np.ones(2), np.zeros(2))[0])


def test_update_holds_the_filtered_bound_and_resumes_it():
    """Through the update: the held J_C is the filter's mean + z SE; a resume carries it."""
    torch.manual_seed(0)
    config = AlgoConfig(cost_filter=True, cost_confidence=2.0, cost_bias_rate=0.0,
                        cost_limit=100.0, value_epochs=1)
    algo = ConstrainedTrustRegion(6, 2, config, max_episode_steps=20)
    first = algo.update(_noisy_costs(circle_rollout(algo, steps=200, seed=1), 1))
    assert first['constrained_costs'][0] == pytest.approx(
        first['cost_estimate'] + 2.0 * first['cost_se'])
    assert first['cost_estimate'] == pytest.approx(first['episode_cost'])  # nothing before
    clone = ConstrainedTrustRegion(6, 2, config, max_episode_steps=20)
    clone.load_state_dict(algo.state_dict())
    second = _noisy_costs(circle_rollout(algo, steps=200, seed=2), 2)
    r_algo, r_clone = algo.update(dict(second)), clone.update(dict(second))
    assert r_clone['constrained_costs'][0] == pytest.approx(r_algo['constrained_costs'][0])
    assert r_algo['cost_estimate'] == pytest.approx(algo.cost_filter.mean[0])
    assert r_algo['cost_estimate'] != pytest.approx(r_algo['episode_cost'])
    assert r_algo['cost_se'] < _batch_se(second)
    assert r_algo['constrained_costs'][0] == pytest.approx(
        r_algo['cost_estimate'] + 2.0 * r_algo['cost_se'])


def _batch_se(rollout) -> float:
    costs = rollout['episode_cost']
    return float(np.std(costs, ddof=1) / np.sqrt(len(costs)))


def _noisy_costs(rollout, seed: int):
    """Give the rollout random per-step costs (share 0.2) and their episode sums."""
    set_random_costs(rollout, 0.2, seed)
    return rollout
