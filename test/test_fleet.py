"""Chunks from many executors merged into one iteration (training/fleet.py), without ROS."""

import copy

import numpy as np
import pytest
import torch

from cpo_ros.algo.algorithm import ConstrainedTrustRegion
from cpo_ros.algo.buffer import gae, next_values
from cpo_ros.sim.make import vec_env
from cpo_ros.training.config import AlgoConfig
from cpo_ros.training.fleet import ChunkGatherer, Deliveries, LOST_AFTER_S, merge_chunks
from cpo_ros.training.worker import RolloutWorker


def sample_chunk(num_envs, steps, seed, version=0, name='a', seq=0, episode_steps=7):
    """Return a rollout chunk of a random policy on Point-Circle (short episodes)."""
    torch.manual_seed(seed)
    env = vec_env('circle', num_envs, seed=seed, max_episode_steps=episode_steps)
    algo = ConstrainedTrustRegion(env.obs_dim, env.act_dim, AlgoConfig(),
                                  env.single_action_space.low, env.single_action_space.high,
                                  episode_steps)
    worker = RolloutWorker(num_envs, env.obs_dim, env.act_dim, steps, seed=seed)
    worker.use_policy(algo.policy, version)
    obs, chunk = env.reset(seed=seed), None
    while chunk is None:
        obs, r, c, te, tr, info = env.step(worker.act(obs))
        worker.record(r, c, te, tr, info['final_obs'])
        chunk = worker.take_rollout(obs)
    chunk.update(executor_id=np.asarray(name), executor_session=np.asarray(1),
                 chunk_seq=np.asarray(seq), samples=np.asarray(chunk['reward'].size))
    return chunk, env


def advantages(rollout, value):
    """Return {obs bytes: advantage} with V = value(obs), GAE as the update computes it."""
    t, n = rollout['reward'].shape
    values = value(rollout['obs'])
    nxt = next_values(values, value(rollout['last_obs']), value(rollout['final_obs']),
                      rollout['terminated'], rollout['truncated'])
    adv, _ = gae(rollout['reward'].astype(np.float64), values, nxt,
                 rollout['terminated'] | rollout['truncated'], 0.99, 0.9)
    return {rollout['obs'][i, j].tobytes(): adv[i, j] for i in range(t) for j in range(n)}


def linear_value(obs):
    return np.asarray(obs, np.float64) @ np.linspace(-1.0, 1.0, obs.shape[-1])


def test_one_chunk_merges_into_the_same_update():
    chunk, env = sample_chunk(4, 30, seed=1)
    merged = merge_chunks([chunk])
    assert merged['obs'].shape == chunk['obs'].shape
    results = []
    for rollout in (chunk, merged):
        torch.manual_seed(0)
        algo = ConstrainedTrustRegion(env.obs_dim, env.act_dim, AlgoConfig(value_epochs=2),
                                      env.single_action_space.low,
                                      env.single_action_space.high, 7)
        row = algo.update(copy.deepcopy(rollout))
        results.append((row, algo.policy.to_arrays()))
    (row_a, pol_a), (row_b, pol_b) = results
    for key in ('episode_return', 'episode_cost', 'kl', 'case', 'value_loss_reward', 'samples'):
        assert row_a[key] == pytest.approx(row_b[key], rel=1e-6) if isinstance(
            row_a[key], float) else row_a[key] == row_b[key]
    for key, value in pol_a.items():
        np.testing.assert_allclose(value, pol_b[key], rtol=1e-6, atol=1e-7)


def test_chunks_of_different_shapes_keep_every_advantage():
    a, _ = sample_chunk(4, 10, seed=2, name='a')
    b, _ = sample_chunk(2, 20, seed=3, name='b')
    merged = merge_chunks([a, b])
    assert merged['reward'].size == 80
    expected = {**advantages(a, linear_value), **advantages(b, linear_value)}
    got = advantages(merged, linear_value)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9)
    assert len(merged['episode_return']) == len(a['episode_return']) + len(b['episode_return'])


@pytest.mark.parametrize('take', [1, 37, 75, 79])
def test_a_cut_keeps_exactly_the_samples_asked_for(take):
    a, _ = sample_chunk(4, 10, seed=4, name='a')
    b, _ = sample_chunk(2, 20, seed=5, name='b')
    merged = merge_chunks([a, b], take)
    assert merged['reward'].size == take
    # Every sample appears once; every cut is bootstrapped from the stream's next observation.
    obs = {o.tobytes() for o in merged['obs'].reshape(take, -1)}
    assert len(obs) == take
    ends = merged['truncated'] & ~merged['terminated']
    assert ends[-1].all()
    assert np.isfinite(merged['final_obs'][ends]).all()
    # Episodes of b count only when they ended in the part used.
    b_used = max(0, take - 40)
    end = b['episode_end']
    b_kept = int(np.sum(end[:, 1] * 20 + end[:, 0] < b_used))
    a_kept = len(a['episode_return']) if take >= 40 else int(
        np.sum(a['episode_end'][:, 1] * 10 + a['episode_end'][:, 0] < take))
    assert len(merged['episode_return']) == a_kept + b_kept


def test_gatherer_merges_current_version_and_drops_stale_and_duplicates():
    now = [0.0]
    gatherer = ChunkGatherer(100, 6, 2, timeout_s=10.0, min_fraction=0.5, clock=lambda: now[0])
    gatherer.start(3)
    a, _ = sample_chunk(4, 10, seed=6, version=3, name='a')
    b, _ = sample_chunk(4, 10, seed=7, version=3, name='b')
    old, _ = sample_chunk(4, 10, seed=8, version=2, name='c')
    assert gatherer.offer(a) == 'accepted'
    assert gatherer.offer(a) == 'duplicate'
    assert gatherer.offer(old) == 'stale'
    bad = dict(b, samples=np.asarray(7))
    assert gatherer.offer(bad).startswith('malformed')
    assert gatherer.offer(b) == 'accepted'
    assert not gatherer.ready()
    b2 = dict(b, chunk_seq=np.asarray(1))
    assert gatherer.offer(b2) == 'accepted'
    assert gatherer.ready()
    rollout, report = gatherer.take()
    assert rollout['reward'].size == 100
    assert report.shares == {'a': 40, 'b': 60}
    assert report.surplus_samples == 20
    assert (report.stale_chunks, report.duplicate_chunks, report.malformed_chunks) == (1, 1, 1)
    assert sum(report.shares.values()) == report.samples == 100


def test_gatherer_times_out_on_what_arrived_and_asks_for_more_when_one_is_overdue():
    now = [0.0]
    gatherer = ChunkGatherer(120, 6, 2, timeout_s=30.0, min_fraction=0.3, clock=lambda: now[0])
    chunks = {n: sample_chunk(4, 10, seed=i, version=0, name=n)[0]
              for i, n in enumerate('abc')}
    for chunk in chunks.values():  # iteration 0: all three deliver after 2 s
        now[0] = 2.0
        assert gatherer.offer(chunk) == 'accepted'
    gatherer.take()
    now[0] = 10.0
    gatherer.start(1)
    now[0] = 12.0
    for name in 'ab':
        gatherer.offer(dict(chunks[name], policy_version=np.asarray(1),
                            chunk_seq=np.asarray(1)))
    assert gatherer.more() == 0  # c is expected: 2 s after the start, it delivered before
    now[0] = 10.0 + 2 * 2.0 + 1.0 + 0.1
    assert gatherer.more() == 40  # c is overdue: a and b make up its share
    assert not gatherer.ready()
    now[0] = 41.0
    assert gatherer.ready()  # timed out with 80 of 120 >= 30 %
    rollout, report = gatherer.take()
    assert report.timed_out and report.samples == 80 == rollout['reward'].size


def test_a_slow_source_whose_chunk_came_too_late_is_expected_in_the_next_iteration():
    now = [0.0]
    gatherer = ChunkGatherer(80, 6, 2, timeout_s=60.0, clock=lambda: now[0])
    sim = {v: sample_chunk(4, 10, seed=v, version=v, name='sim', seq=v)[0] for v in (0, 1)}
    robot = {v: sample_chunk(1, 40, seed=10 + v, version=v, name='robot', seq=v)[0]
             for v in (0, 1)}
    # Version 0: the simulator fills the iteration alone; the robot was not known yet.
    now[0] = 0.5
    gatherer.offer(sim[0])
    assert gatherer.more() == 40  # nobody else is expected: the simulator samples on
    gatherer.offer(dict(sim[0], chunk_seq=np.asarray(9)))
    assert gatherer.ready() and gatherer.take()[1].shares == {'sim': 80}
    now[0] = 1.0
    gatherer.start(1)
    now[0] = 4.0  # the robot's chunk of version 0 comes 4 s after version 0 began
    assert gatherer.offer(robot[0]) == 'stale'
    now[0] = 4.5
    assert gatherer.offer(sim[1]) == 'accepted'
    # The robot is expected now (for twice 4 s plus 1 s): the simulator waits for it.
    assert gatherer.more() == 0
    now[0] = 6.0
    assert gatherer.offer(robot[1]) == 'accepted' and gatherer.ready()
    assert gatherer.take()[1].shares == {'sim': 40, 'robot': 40}
    # Stale chunks noted by the learner before they reach the queue count the same way.
    gatherer.start(2)
    now[0] = 7.0
    gatherer.note_stale(40, 'robot2', 1)
    gatherer.offer(dict(sim[1], policy_version=np.asarray(2), chunk_seq=np.asarray(2)))
    assert gatherer.more() == 0  # robot (delivered in 1) and robot2 (stale, 6 s) expected
    now[0] = 1.0 + 6.0 + 2 * 6.0 + 1.1
    assert gatherer.more() == 40  # both overdue: the simulator makes up their share


def test_an_expected_source_that_misses_is_waited_for_longer_then_given_up():
    """A robot whose reset and episode outlast the simulator's iterations (issue 19).

    Cut in its reset, it has nothing to send, and before it was no longer expected: the
    simulator filled every iteration from then on. Now a slow source's patience doubles per
    miss, until it delivers, or MAX_MISSES iterations in a row pass (a robot that went away).
    """
    from cpo_ros.training.fleet import MAX_MISSES

    now = [0.0]
    gatherer = ChunkGatherer(80, 6, 2, timeout_s=60.0, clock=lambda: now[0])

    def sim(version, seq=0):
        return sample_chunk(4, 10, seed=version, version=version, name='sim',
                            seq=100 * version + seq)[0]

    gatherer.offer(sim(0))
    gatherer.offer(sim(0, 1))
    gatherer.start(1)
    now[0] = 2.0  # the robot's part of version 0, cut 2 s after version 0 began
    assert gatherer.offer(sample_chunk(1, 30, seed=9, version=0, name='robot')[0]) == 'stale'
    windows = []
    for version in range(1, 10):
        begun = now[0]
        assert gatherer.offer(sim(version)) == 'accepted'
        if gatherer.more() > 0:
            break  # no longer expected: the simulator samples on
        while gatherer.more() == 0:  # the robot is expected: the simulator waits
            now[0] += 0.5
        windows.append(now[0] - begun)
        gatherer.offer(sim(version, 1))
        assert gatherer.ready() and gatherer.take()[1].shares == {'sim': 80}
        gatherer.start(version + 1)  # the robot missed it
    assert len(windows) == MAX_MISSES + 1 and windows == sorted(windows), windows
    assert windows[-1] > 4 * windows[0], windows
    # Heard from again (a chunk, stale or not), it is expected again.
    now[0] += 1.0
    gatherer.note_stale(30, 'robot', gatherer.version - 1)
    assert gatherer.more() == 0
    # A simulator whose late chunks were only surplus (it had delivered to their version)
    # is not slow: when it misses once (killed) it is not waited for again.
    fleet = ChunkGatherer(80, 6, 2, timeout_s=60.0, clock=lambda: now[0])
    fleet.offer(sim(0))
    fleet.offer(sample_chunk(4, 10, seed=5, version=0, name='sim2')[0])
    fleet.take()
    fleet.start(1)
    assert fleet.offer(sample_chunk(4, 10, seed=6, version=0, name='sim2', seq=1)[0]) == 'stale'
    fleet.offer(sim(1))
    assert fleet.more() == 0  # sim2 is expected
    now[0] += 100.0
    assert fleet.more() == 40
    fleet.offer(sim(1, 1))
    fleet.take()
    fleet.start(2)
    fleet.offer(sim(2))
    assert fleet.more() == 40


def test_fleet_parameters_are_circle_sims_but_for_the_run_directory_and_the_overlap():
    """fleet_sim.yaml is circle_sim.yaml but for `out` and fit_while_sampling (off: its
    workers take every core of one machine)."""
    from conftest import REPO
    import yaml

    def load(name):
        data = yaml.safe_load((REPO / 'config' / f'{name}.yaml').read_text())
        learner = data['/**/learner']['ros__parameters']
        learner.pop('out')
        return data, learner.pop('fit_while_sampling')
    (fleet, fleet_overlap), (circle, circle_overlap) = load('fleet_sim'), load('circle_sim')
    assert fleet == circle
    assert (fleet_overlap, circle_overlap) == (False, True)


def test_the_book_of_executors_is_bounded_against_forged_names():
    from cpo_ros.training.fleet import MAX_EXECUTORS

    gatherer = ChunkGatherer(80, 6, 2)
    gatherer.start(1)
    assert gatherer.offer(sample_chunk(4, 10, seed=1, version=1, name='sim')[0]) == 'accepted'
    for i in range(MAX_EXECUTORS + 100):  # stale chunks under ever new names
        gatherer.note_stale(10, f'stranger{i}', 0)
    assert len(gatherer.executors) == MAX_EXECUTORS and 'sim' in gatherer.executors
    # One name with ever-new chunk numbers: its book of seen chunks stays bounded too, and a
    # recent duplicate is still told.
    from cpo_ros.training.fleet import MAX_SEEN

    stale = sample_chunk(4, 10, seed=2, version=0, name='sim')[0]
    for seq in range(1, MAX_SEEN + 50):
        stale['chunk_seq'] = np.asarray(seq)
        assert gatherer.offer(stale) == 'stale'
    assert len(gatherer.executors['sim'].seen) == MAX_SEEN
    assert gatherer.offer(stale) == 'duplicate'


def test_an_executor_writes_off_a_chunk_the_learner_never_counted_and_samples_on():
    # A flooded reader or a full learner queue drops a chunk: waiting for its count would
    # stall the executor (and the learner waiting for its share) for good.
    sent = Deliveries()
    sent.sent(3, 40, now=100.0)
    assert sent.delivered(3, 40, now=100.1) == 0  # counted: sample on
    sent.sent(3, 40, now=101.0)
    assert sent.delivered(3, 40, now=101.5) is None  # on the way: wait
    assert sent.delivered(3, 40, now=101.0 + LOST_AFTER_S - 0.01) is None
    assert sent.delivered(3, 40, now=101.0 + LOST_AFTER_S) == 40  # written off
    assert sent.lost == 40
    assert sent.delivered(3, 40, now=110.0) == 0  # from then on the count matches
    # A late chunk counted after all is no shortfall; other versions are books of their own.
    assert sent.delivered(3, 80, now=111.0) == 0
    sent.sent(4, 40, now=120.0)
    assert sent.delivered(4, 0, now=120.5) is None
    sent.forget(before=5)
    assert sent.delivered(4, 0, now=120.5) == 0
    sent.sent(5, 40, now=130.0)
    sent.forget()  # a new learner session: nothing of the old one is owed
    assert sent.delivered(5, 0, now=130.1) == 0
