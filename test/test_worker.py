"""RolloutWorker: versioned policy swaps, on-policy pauses, rollouts of fixed length."""

import numpy as np
import pytest

from cpo_ros.algo.networks import GaussianPolicy
from cpo_ros.training.worker import RolloutWorker


def arrays(version: int, obs_dim: int = 3, act_dim: int = 2) -> dict[str, np.ndarray]:
    out = GaussianPolicy(obs_dim, act_dim, (8,)).to_arrays()
    out['version'] = np.asarray(version)
    return out


def step(worker: RolloutWorker, obs: np.ndarray, done: bool = False):
    worker.act(obs)
    flags = np.full(worker.num_envs, done)
    return worker.record(np.ones(worker.num_envs), np.zeros(worker.num_envs),
                         np.zeros(worker.num_envs, bool), flags, obs)


def test_rollout_then_wait_for_a_newer_policy():
    worker = RolloutWorker(num_envs=2, obs_dim=3, act_dim=2, steps=3, seed=1)
    assert not worker.can_act
    assert worker.set_policy(arrays(0))
    obs = np.zeros((2, 3), np.float32)
    ended = []
    for t in range(3):
        ended += step(worker, obs, done=(t == 1))
    assert ended == [(2.0, 0.0), (2.0, 0.0)]
    rollout = worker.take_rollout(obs)
    assert rollout is not None and rollout['obs'].shape == (3, 2, 3)
    assert int(rollout['policy_version']) == 0
    assert not worker.can_act  # on-policy: the next sample needs version 1
    with pytest.raises(RuntimeError):
        worker.act(obs)
    assert not worker.set_policy(arrays(0))  # a stale or repeated version is ignored
    assert worker.set_policy(arrays(1))
    assert worker.can_act and worker.take_rollout(obs) is None


def test_mismatched_policy_is_refused_and_the_old_one_kept():
    worker = RolloutWorker(num_envs=1, obs_dim=3, act_dim=2, steps=2)
    worker.set_policy(arrays(0))
    old = worker.policy
    with pytest.raises(ValueError, match='observation size'):
        worker.set_policy(arrays(1, obs_dim=4))
    bad = arrays(2)
    bad['mean_net.0.weight'] = bad['mean_net.0.weight'][:, :2]
    with pytest.raises(ValueError):
        worker.set_policy(bad)
    assert worker.policy is old and worker.version == 0


def test_same_seed_same_actions():
    a, b = (RolloutWorker(1, 3, 2, 5, seed=4) for _ in range(2))
    policy = arrays(0)
    a.set_policy(policy)
    b.set_policy(policy)
    obs = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(a.act(obs), b.act(obs))


def test_numpy_actor_matches_the_torch_policy():
    import torch

    from cpo_ros.algo.networks import NumpyActor

    policy = GaussianPolicy(3, 2, (16, 8), action_low=np.array([-1.5, -2.0]),
                            action_high=np.array([1.5, 2.0]))
    rng = np.random.default_rng(0)
    policy.norm.update(rng.normal(2.0, 3.0, size=(100, 3)))
    with torch.no_grad():
        policy.log_std.fill_(-0.3)
    actor = NumpyActor(policy)
    obs = rng.normal(size=(7, 3)).astype(np.float32)
    u, logp, action = actor.act(obs, rng=np.random.default_rng(1))
    with torch.no_grad():
        dist = policy.distribution(torch.as_tensor(obs))
        np.testing.assert_allclose(actor.mean_action(obs), dist.loc.numpy(), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(logp, dist.log_prob(torch.as_tensor(u)).sum(-1).numpy(),
                                   rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(action, policy.action_bias.numpy()
                               + policy.action_scale.numpy() * u, rtol=1e-6)
    _u, _logp, mean = actor.act(obs, deterministic=True)
    expected = policy.action_bias.numpy() + policy.action_scale.numpy() * dist.loc.numpy()
    np.testing.assert_allclose(mean, expected, rtol=1e-5, atol=1e-6)


def test_a_restarted_learner_is_followed():
    worker = RolloutWorker(num_envs=1, obs_dim=3, act_dim=2, steps=1)
    first = dict(arrays(2), session=np.asarray(7))
    worker.set_policy(first)
    obs = np.zeros((1, 3), np.float32)
    step(worker, obs)
    assert worker.take_rollout(obs) is not None and not worker.can_act
    # The learner died during the update and resumed at version 2 under a new session.
    assert not worker.set_policy(dict(arrays(2), session=np.asarray(7)))
    assert worker.set_policy(dict(arrays(2), session=np.asarray(8)))
    assert worker.can_act and worker.version == 2


def test_a_chunk_holds_one_version_and_resume_samples_another_of_the_same():
    worker = RolloutWorker(num_envs=2, obs_dim=3, act_dim=2, steps=4, seed=1)
    obs = np.zeros((2, 3), np.float32)
    worker.set_policy(dict(arrays(0), session=np.asarray(7)))
    for _ in range(2):
        step(worker, obs)
    # The same version re-published (a learner that waited too long): the chunk goes on.
    worker.act(obs)
    assert worker.set_policy(dict(arrays(0), session=np.asarray(8)))
    worker.record(np.ones(2), np.zeros(2), np.zeros(2, bool), np.zeros(2, bool), obs)
    step(worker, obs)
    chunk = worker.take_rollout(obs)
    assert chunk is not None and worker.discarded_samples == 0
    assert worker.paused
    worker.resume()  # the learner wants more of version 0
    assert worker.can_act
    step(worker, obs)
    # A newer version arrives while an action is in flight: that chunk is cut, not mixed.
    worker.act(obs)
    assert worker.set_policy(dict(arrays(1), session=np.asarray(8)))
    worker.record(np.ones(2), np.zeros(2), np.zeros(2, bool), np.zeros(2, bool), obs)
    assert worker.discarded_samples == 4 and worker.collector.t == 0
    for _ in range(4):
        step(worker, obs)
    chunk = worker.take_rollout(obs)
    assert chunk is not None and int(chunk['policy_version']) == 1
