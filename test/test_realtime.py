"""RobotSampler: realtime episodes on hand-made pose streams (no ROS)."""

import math

import numpy as np
import pytest
import torch

from cpo_ros.algo.buffer import validate_rollout
from cpo_ros.algo.networks import GaussianPolicy
from cpo_ros.tasks import circle
from cpo_ros.tasks.registry import make_task
from cpo_ros.training.fleet import ChunkGatherer, merge_chunks
from cpo_ros.training.realtime import (
    episodes_per_chunk,
    go_to_pose,
    Measured,
    RealtimeConfig,
    RobotSampler,
)
from cpo_ros.validation import InvalidField

DT = 0.1
STEPS = 5


def policy_arrays(version: int, session: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    torch.manual_seed(seed)
    policy = GaussianPolicy(6, 2, (8,), action_low=np.array([-0.22, -2.84]),
                            action_high=np.array([0.22, 2.84]))
    out = policy.to_arrays()
    out['version'] = np.asarray(version)
    out['session'] = np.asarray(session)
    return out


def test_a_policy_trained_for_faster_limits_is_refused_naming_both():
    s = sampler()  # the TurtleBot3-class limits: 0.22 m/s, 2.84 rad/s
    torch.manual_seed(0)
    fast = GaussianPolicy(6, 2, (8,), action_low=np.array([-1.5, -2.0]),
                          action_high=np.array([1.5, 2.0])).to_arrays()
    fast.update(version=np.asarray(1), session=np.asarray(1))
    with pytest.raises(InvalidField, match=r'acts up to 1\.5 m/s .* this robot up to 0\.22 m/s'):
        s.set_policy(fast)
    assert s.version == 0  # the policy it had stays
    assert s.set_policy(policy_arrays(1))


def sampler(**cfg) -> RobotSampler:
    task = make_task('circle', target_radius=1.5, x_limit=0.5, max_episode_steps=STEPS,
                     init_position_noise=0.1)
    s = RobotSampler(task, 6, 2, RealtimeConfig(control_dt=DT, **cfg), seed=3)
    s.set_policy(policy_arrays(0))
    return s


def at(pose, twist=(0.1, 0.2), interventions=0) -> Measured:
    return Measured(np.asarray(pose, float), np.asarray(twist, float),
                    interventions=interventions)


def start_episode(s: RobotSampler, now: float = 0.0) -> np.ndarray:
    """Tick once to draw the start pose, once standing on it: the episode's first action."""
    tick = s.control(now, at([5.0, 5.0, 0.0]))
    assert tick.phase == 'reset' and not np.allclose(tick.cmd, 0.0)
    target = s._target.copy()
    tick = s.control(now + DT, at(target, (0.0, 0.0)))
    assert tick.phase == 'episode' and s.phase == 'episode'
    return target


def walk(k: int) -> list[np.ndarray]:
    return [np.array([0.15 * (i + 1), 0.02 * (i + 1), 0.1 * i]) for i in range(k)]


def test_an_episode_records_reward_and_costs_of_the_measured_next_state():
    s = sampler()
    start = start_episode(s, 0.0)
    poses = walk(STEPS)
    twist = np.array([0.1, 0.2])
    chunk = None
    for i, pose in enumerate(poses):
        tick = s.control(DT * (i + 2), at(pose, twist))
        chunk = tick.chunk or chunk
    assert chunk is not None and tick.phase == 'reset'  # the chunk ends with the episode
    validate_rollout(chunk, 6, 2, 1)
    assert chunk['obs'].shape == (STEPS, 1, 6)
    task = circle.CircleParams(target_radius=1.5, x_limit=0.5)
    expect_reward = [float(circle.reward(p, twist, task)[0]) for p in poses]
    np.testing.assert_allclose(chunk['reward'][:, 0], expect_reward, rtol=1e-6)
    np.testing.assert_allclose(chunk['cost'][:, 0], [float(circle.cost(p, task)[0])
                                                     for p in poses])
    assert chunk['cost'][:, 0].tolist() == [0, 0, 0, 1, 1]  # the walk leaves |x| <= 0.5
    # Observations: the start pose, then each measured pose in turn.
    np.testing.assert_allclose(chunk['obs'][0, 0], circle.observation(start, [0.0, 0.0])[0])
    np.testing.assert_allclose(chunk['obs'][1:, 0],
                               circle.observation(np.array(poses[:-1]), np.tile(twist, (4, 1))))
    # The task's length: truncated (bootstrapped from the last measured state), never terminal.
    assert not chunk['terminated'].any()
    assert chunk['truncated'][:, 0].tolist() == [False] * (STEPS - 1) + [True]
    np.testing.assert_allclose(chunk['final_obs'][-1, 0],
                               circle.observation(poses[-1], twist)[0])
    np.testing.assert_allclose(chunk['episode_return'], [sum(expect_reward)], rtol=1e-6)
    assert chunk['episode_length'].tolist() == [STEPS]
    # The log-probabilities are those of the policy that sampled the actions.
    policy = GaussianPolicy.from_arrays(policy_arrays(0), 6, 2)
    with torch.no_grad():
        logp = policy.log_prob(torch.as_tensor(chunk['obs'][:, 0]),
                               torch.as_tensor(chunk['u'][:, 0])).numpy()
    np.testing.assert_allclose(chunk['logp'][:, 0], logp, rtol=1e-4, atol=1e-5)
    assert int(chunk['policy_version']) == 0


def test_after_a_chunk_the_robot_waits_for_a_newer_policy_or_a_resume():
    s = sampler()
    start_episode(s)
    for i, pose in enumerate(walk(STEPS)):
        s.control(DT * (i + 2), at(pose))
    assert s.waiting and not s.can_sample
    target = s._target.copy()
    tick = s.control(1.0, at(target, (0.0, 0.0)))
    assert tick.phase == 'wait' and np.allclose(tick.cmd, 0.0)  # at the start pose, waiting
    s.resume()  # the learner wants more of version 0
    assert s.control(1.1, at(target, (0.0, 0.0))).phase == 'episode'
    for i, pose in enumerate(walk(STEPS)):
        s.control(1.2 + DT * i, at(pose))
    assert s.waiting
    assert s.set_policy(policy_arrays(1))
    assert s.can_sample
    assert not s.set_policy(policy_arrays(1))  # the same version again changes nothing


@pytest.mark.parametrize('reason', ['paused by the operator', 'e-stop latched', None])
def test_a_stop_truncates_the_episode_and_drops_the_action_in_flight(reason):
    s = sampler()
    start_episode(s)
    poses = walk(3)
    for i, pose in enumerate(poses):
        s.control(DT * (i + 2), at(pose))
    # The third action is in flight; its next state is never measured.
    tick = s.control(0.6, None if reason is None else at(poses[-1]), reason)
    assert tick.phase == 'stopped' and np.allclose(tick.cmd, 0.0)
    chunk = tick.chunk
    assert chunk is not None and chunk['obs'].shape[0] == 3  # three complete transitions
    assert not chunk['terminated'].any() and chunk['truncated'][:, 0].tolist() == [
        False, False, True]
    # Bootstrapped from the observation at which the dropped action was chosen.
    np.testing.assert_allclose(chunk['final_obs'][-1, 0],
                               circle.observation(poses[-1], [0.1, 0.2])[0])
    assert len(chunk['episode_return']) == 0  # a cut episode stays out of J_C
    assert tick.episodes[0].cut == (reason or 'no usable pose')
    assert s.counts['cut_episodes'] == 1 and s.counts['samples'] == 3
    # While stopped nothing moves; after the stop a reset drives to a new start pose.
    assert s.control(0.7, at(poses[-1]), 'still paused').phase == 'stopped'
    assert s.control(0.8, at(poses[-1])).phase == 'reset'
    validate_rollout(chunk, 6, 2, 1)


def test_late_steps_are_counted_and_flagged():
    s = sampler(late_tolerance=0.5)
    start_episode(s, 0.0)
    times = [0.2, 0.3, 0.52, 0.6, 0.7]  # the third step came 0.22 s after the second
    chunk = None
    for t, pose in zip(times, walk(STEPS), strict=True):
        chunk = s.control(t, at(pose)).chunk or chunk
    assert chunk['late'][:, 0].tolist() == [False, False, True, False, False]
    assert s.counts['late_steps'] == 1


@pytest.mark.parametrize('mode', ['keep', 'cost', 'drop'])
def test_a_step_the_shield_replaced(mode):
    s = sampler(shield_samples=mode, intervention_cost=2.0)
    start_episode(s)
    counts = [0, 0, 1, 1, 1]  # the shield replaced the 3rd command
    chunk = None
    for i, (pose, n) in enumerate(zip(walk(STEPS), counts, strict=True)):
        chunk = s.control(DT * (i + 2), at(pose, interventions=n)).chunk or chunk
    assert s.counts['interventions'] == 1
    validate_rollout(chunk, 6, 2, 1)
    if mode == 'drop':
        assert chunk['obs'].shape[0] == STEPS - 1 and s.counts['dropped_samples'] == 1
        # The stream is cut before the replaced step and starts again after it.
        assert chunk['truncated'][:, 0].tolist() == [False, True, False, True]
        assert not chunk['intervened'].any()
    else:
        assert chunk['intervened'][:, 0].tolist() == [False, False, True, False, False]
        extra = 2.0 if mode == 'cost' else 0.0
        assert chunk['cost'][2, 0] == pytest.approx(extra)
        assert chunk['episode_cost'][0] == pytest.approx(2.0 + extra)  # 2 steps outside
    assert chunk['episode_length'].tolist() == [STEPS]  # every step the robot made counts


def as_chunk(chunk: dict, seq: int = 0) -> dict:
    """Return a sampler's chunk as the node sends it (the executor's fields added)."""
    return dict(chunk, executor_id=np.asarray('robot'), executor_session=np.asarray(1),
                chunk_seq=np.asarray(seq), samples=np.asarray(chunk['reward'].size))


@pytest.mark.parametrize('mode', ['keep', 'drop'])
def test_the_learners_rows_count_the_flags_of_the_samples_they_use(mode):
    s = sampler(shield_samples=mode)
    start_episode(s, 0.1)
    times = [0.2, 0.42, 0.5, 0.6, 0.7]  # the second step came late
    counts = [0, 0, 1, 1, 1]  # the shield replaced the third command
    chunk = None
    for t, pose, n in zip(times, walk(STEPS), counts, strict=True):
        chunk = s.control(t, at(pose, interventions=n)).chunk or chunk
    chunk = as_chunk(chunk)
    size = int(chunk['reward'].size)
    for needed, late, interventions in [(size, 1, 1), (1, 0, int(mode == 'drop'))]:
        gatherer = ChunkGatherer(needed, 6, 2, 1)
        assert gatherer.offer(chunk) == 'accepted'
        report = gatherer.take()[1]
        row = report.row()
        # The surplus (past the samples used) is not counted; a dropped step is, as an
        # intervention, with the chunk it was left out of.
        assert (row['late_steps'], row['interventions']) == (late, interventions), mode
        assert row['dropped_samples'] == int(mode == 'drop')
    if mode == 'keep':
        for key, bad in [('late', np.zeros((size + 1, 1), bool)),
                         ('intervened', np.ones((size, 1), np.float32)),
                         ('dropped_samples', np.asarray(-1))]:
            verdict = ChunkGatherer(size, 6, 2, 1).offer(dict(chunk, **{key: bad}))
            assert verdict.startswith('malformed') and key in verdict, verdict


def test_chunks_merge_like_simulator_chunks():
    s = sampler(chunk_episodes=2)
    chunks, now = [], 0.0
    for _ in range(2):
        tick = s.control(now, at([3.0, 0.0, 0.0]))
        target = s._target.copy()
        now += DT
        s.control(now, at(target, (0.0, 0.0)))
        for pose in walk(STEPS):
            now += DT
            tick = s.control(now, at(pose))
            if tick.chunk is not None:
                chunks.append(tick.chunk)
    assert len(chunks) == 1 and chunks[0]['obs'].shape[0] == 2 * STEPS
    chunk = dict(chunks[0], executor_id=np.asarray('robot'), executor_session=np.asarray(1),
                 chunk_seq=np.asarray(0), samples=np.asarray(2 * STEPS))
    gatherer = ChunkGatherer(2 * STEPS, 6, 2, 1)
    assert gatherer.offer(chunk) == 'accepted' and gatherer.ready()
    rollout, report = gatherer.take()
    assert report.shares == {'robot': 2 * STEPS}
    np.testing.assert_array_equal(rollout['reward'], chunk['reward'])
    assert rollout['truncated'][:, 0].tolist() == chunk['truncated'][:, 0].tolist()
    # Cut short by the learner, the second episode (ending past the cut) drops out of J_C.
    short = merge_chunks([chunk], STEPS + 2)
    assert len(short['episode_return']) == 1


def test_a_newer_policy_mid_episode_sends_the_partial_chunk_once_for_the_learner_to_drop():
    s = sampler()
    start_episode(s)
    for i, pose in enumerate(walk(2)):
        s.control(DT * (i + 2), at(pose))
    assert s.set_policy(policy_arrays(1))
    assert s.counts['discarded_samples'] == 2
    # The part goes out at the next step, cut there (truncated, bootstrapped, no episode in
    # J_C): the learner drops it as stale and expects this robot from then on.
    tick = s.control(0.5, at([0.2, 0.0, 0.0]))
    assert tick.phase == 'reset' and tick.chunk is not None
    chunk = tick.chunk
    assert int(chunk['policy_version']) == 0 and chunk['reward'].shape == (2, 1)
    assert chunk['truncated'][-1, 0] and len(chunk['episode_return']) == 0
    validate_rollout(chunk, 6, 2, 1)
    gatherer = ChunkGatherer(10, 6, 2, 1)
    gatherer.start(1)
    assert gatherer.offer(as_chunk(chunk)) == 'stale' and 'robot' in gatherer.executors
    assert s.control(0.6, at([0.2, 0.0, 0.0])).chunk is None  # sent once
    assert s.can_sample  # version 1 is sampled next


def test_a_restarted_learner_gets_its_version_sampled_again():
    s = sampler()
    start_episode(s)
    for i, pose in enumerate(walk(STEPS)):
        s.control(DT * (i + 2), at(pose))
    assert s.waiting
    assert s.set_policy(policy_arrays(0, session=2))  # same version, new session
    assert s.can_sample


def test_versions_grow_within_a_session_and_a_new_session_starts_anywhere():
    """A learner resumed from an older checkpoint is followed; which policies arrive at all
    is the executor's announcement check (test_hostile_input.py)."""
    s = sampler()
    assert s.set_policy(policy_arrays(5, session=1))
    assert not s.set_policy(policy_arrays(4, session=1))  # older, same session: ignored
    assert s.version == 5
    assert s.set_policy(policy_arrays(2, session=9)) and s.version == 2
    assert s.can_sample


def test_the_reset_behaviour_drives_a_unicycle_to_the_start_pose():
    cfg = RealtimeConfig(control_dt=DT, max_linear_velocity=0.22, max_angular_velocity=2.84)
    pose = np.array([0.4, -0.3, 2.0])
    target = np.array([0.05, 0.08, -1.0])
    for _ in range(400):
        cmd, arrived = go_to_pose(pose, target, cfg)
        if arrived:
            break
        assert abs(cmd[0]) <= 0.22 + 1e-9 and abs(cmd[1]) <= 2.84 + 1e-9
        pose = pose + DT * np.array([cmd[0] * math.cos(pose[2]), cmd[0] * math.sin(pose[2]),
                                     cmd[1]])
    assert arrived
    assert math.hypot(*(pose[:2] - target[:2])) <= cfg.reset_position_tolerance
    assert abs((pose[2] - target[2] + math.pi) % (2 * math.pi) - math.pi) <= 0.2


def test_a_reset_that_cannot_arrive_starts_the_episode_after_its_timeout():
    s = sampler(reset_timeout_s=1.0)
    assert s.control(0.0, at([5.0, 5.0, 0.0])).phase == 'reset'
    assert s.control(0.5, at([5.0, 5.0, 0.0])).phase == 'reset'
    assert s.control(1.5, at([5.0, 5.0, 0.0])).phase == 'episode'
    assert s.counts['reset_timeouts'] == 1


def test_bad_settings_are_refused_by_name():
    task = make_task('circle')
    with pytest.raises(ValueError, match='shield_samples'):
        RobotSampler(task, 6, 2, RealtimeConfig(shield_samples='ignore'))
    with pytest.raises(ValueError, match='chunk_episodes'):
        RobotSampler(task, 6, 2, RealtimeConfig(chunk_episodes=0))


def test_a_new_run_starts_from_another_runs_policy_and_critics(tmp_path):
    from cpo_ros.training.checkpoint import CheckpointError
    from cpo_ros.training.config import AlgoConfig, TrainConfig
    from cpo_ros.training.run import TrainingRun

    def run(out, seed, hidden=(64, 32), init_from=None, resume='auto'):
        cfg = TrainConfig(task='circle', iterations=1, steps_per_iteration=100, num_envs=1,
                          seed=seed, out=str(tmp_path / out),
                          algo=AlgoConfig(hidden_sizes=hidden))
        return TrainingRun(cfg, 6, 2, np.array([-1.0, -1.0]), np.array([1.0, 1.0]), 50,
                           resume=resume, init_from=init_from)

    source = run('sim', seed=1)
    with torch.no_grad():
        source.algorithm.policy.log_std.fill_(-1.7)  # a trained policy differs from a new one
    source.save()
    tuned = run('robot', seed=2, init_from=tmp_path / 'sim')
    assert tuned.initialised_from == tmp_path / 'sim' / 'checkpoints' / 'last.pt'
    for name, value in source.algorithm.policy.state_dict().items():
        torch.testing.assert_close(tuned.algorithm.policy.state_dict()[name], value)
    for name, value in source.algorithm.cost_critics.state_dict().items():
        torch.testing.assert_close(tuned.algorithm.cost_critics.state_dict()[name], value)
    assert tuned.algorithm.version == 0
    # The iteration-0 checkpoint holds the source's networks: a restart resumes from them.
    again = run('robot', seed=2)
    assert again.resumed
    torch.testing.assert_close(again.algorithm.policy.log_std, source.algorithm.policy.log_std)
    # A source that does not fit, or is missing, is refused before anything is written: the
    # corrected restart starts afresh from the right source instead of resuming a blank run.
    for bad, match in ((tmp_path / 'sim', 'hidden_sizes'), (tmp_path / 'nowhere', 'no such')):
        with pytest.raises(CheckpointError, match=match):
            run('wide', seed=3, hidden=(32,), init_from=bad)
        assert not (tmp_path / 'wide' / 'checkpoints' / 'last.pt').exists()
    fixed = run('wide', seed=3, init_from=tmp_path / 'sim', resume='fresh')
    assert not fixed.resumed and fixed.initialised_from is not None


def test_chunks_fill_an_iteration_within_half_the_learners_timeout():
    # 150 steps of 0.1 s: 22.5 s of robot time per episode with its reset.
    assert episodes_per_chunk(0, 600, 150, 0.1, 120.0) == 2  # 60 s hold 2, 4 would fill
    assert episodes_per_chunk(0, 300, 150, 0.1, 1000.0) == 2  # enough to fill an iteration
    assert episodes_per_chunk(0, 600, 150, 0.1, 10.0) == 1  # at least one episode
    assert episodes_per_chunk(3, 600, 150, 0.1, 10.0) == 3  # as asked
