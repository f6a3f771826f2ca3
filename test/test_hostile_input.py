"""Hostile input, piece by piece: wire schemas, the policy on the wire, queue bounds, files.

The whole graph under random and mutated messages is test_fuzz.py; these pin each check.
"""

import json

import numpy as np
import pytest

from cpo_ros.algo.networks import GaussianPolicy, NumpyActor
from cpo_ros.deploy.shield import limit_command
from cpo_ros.ros.graph import node_names
from cpo_ros.ros.params import explicit_keys, misspelt_node_names
from cpo_ros.training.fleet import ChunkQueue
from cpo_ros.training.worker import RolloutWorker
from cpo_ros.wire import check_chunk, check_logp, check_policy, check_status, InvalidField


def status(**override):
    good = {'version': np.asarray(3), 'session': np.asarray(7), 'needed': np.asarray(100),
            'collected': np.asarray(40), 'more': np.asarray(0),
            'executors': np.asarray(['/a', '/b']), 'shares': np.asarray([20, 20]),
            'policy_digest': np.zeros(32, np.uint8)}
    good.update(override)
    return good


@pytest.mark.parametrize('field, value', [
    ('version', np.asarray([1, 2])),            # a vector version killed executors before
    ('version', np.asarray('3')),               # a string one too
    ('executors', np.asarray('/a')),            # and a 0-d executors array
    ('shares', np.asarray([1])),                # one share per executor
    ('session', np.asarray(0)),                 # sessions start at 1
    ('more', np.asarray(-5)),
    ('collected', np.asarray(1.5)),
    ('policy_digest', np.zeros(31, np.uint8)),   # a SHA-256 has 32 bytes
    ('policy_digest', np.full(32, 300)),
])
def test_a_malformed_iteration_status_is_refused_by_field(field, value):
    assert check_status(status())['counted'] == {'/a': 20, '/b': 20}
    with pytest.raises(ValueError) as info:
        check_status(status(**{field: value}))
    assert info.value.field == field


def chunk(policy: GaussianPolicy | None = None, version: int = 0, obs_dim: int = 3, **override):
    """Return a chunk sampled by policy (as an executor's RolloutWorker samples it)."""
    policy = policy or GaussianPolicy(obs_dim, 2, (8,))
    worker = RolloutWorker(2, obs_dim, 2, 10, seed=3)
    worker.use_policy(policy, version)
    rng = np.random.default_rng(0)
    out = None
    for t in range(10):
        obs = rng.normal(0.0, 5.0, size=(2, obs_dim)).astype(np.float32)
        worker.act(obs)
        done = np.full(2, t % 4 == 3)
        worker.record(np.ones(2), np.zeros(2), np.zeros(2, bool), done, obs)
        out = worker.take_rollout(obs)
    out.update(executor_id=np.asarray('/w0'), executor_session=np.asarray(1),
               chunk_seq=np.asarray(0), samples=np.asarray(20))
    out.update(override)
    return out


@pytest.mark.parametrize('field, value', [
    ('episode_end', np.asarray([[99, 0], [3, 1], [7, 0], [7, 1]])),   # a step past T
    ('episode_end', np.zeros((4, 2), np.float32)),                    # not integers
    ('episode_end', np.zeros((3, 2), np.int64)),                      # one row per episode
    ('episode_end', np.asarray([[0, 0], [3, 1], [7, 0], [7, 1]])),    # no episode ends there
    ('samples', np.asarray(21)),
    ('executor_id', np.asarray(['/a', '/b'])),
    ('executor_id', np.asarray('')),
    ('policy_version', np.asarray(-1)),
])
def test_a_malformed_chunk_is_refused_by_field(field, value):
    assert check_chunk(chunk(), 3, 2)[0] == '/w0'
    with pytest.raises(ValueError) as info:
        check_chunk(chunk(**{field: value}), 3, 2)
    assert info.value.field == field


def normalised_policy(obs_clip: float) -> GaussianPolicy:
    import torch

    policy = GaussianPolicy(3, 2, (8,), obs_clip=obs_clip)
    policy.norm.update(np.random.default_rng(1).normal(0.0, 0.1, size=(500, 3)))
    with torch.no_grad():  # a trained policy's last layer, not the near-zero initial one
        policy.mean_net[-1].weight.mul_(100.0)
    return policy


def test_the_policy_on_the_wire_rebuilds_exactly_obs_clip_included():
    policy = normalised_policy(obs_clip=2.0)
    arrays = policy.to_arrays()
    rebuilt = GaussianPolicy.from_arrays(arrays, 3, 2)
    assert rebuilt.norm.clip == 2.0
    obs = np.random.default_rng(2).normal(0.0, 5.0, size=(50, 3)).astype(np.float32)
    u = np.random.default_rng(3).normal(size=(50, 2)).astype(np.float32)
    np.testing.assert_array_equal(NumpyActor(rebuilt).log_prob(obs, u),
                                  NumpyActor(policy).log_prob(obs, u))
    # Rebuilt with the default clip (what executors did before) it is another policy.
    other = GaussianPolicy(3, 2, (8,))
    other.load_arrays(arrays)
    assert np.abs(NumpyActor(other).log_prob(obs, u)
                  - NumpyActor(policy).log_prob(obs, u)).max() > 0.1
    for bad in ({k: v for k, v in arrays.items() if k != 'obs_clip'},
                dict(arrays, obs_clip=np.asarray(-1.0))):
        with pytest.raises(ValueError) as info:
            GaussianPolicy.from_arrays(bad, 3, 2)
        assert info.value.field == 'obs_clip'
    message = dict(arrays, version=np.asarray(4), session=np.asarray(9),
                   task=np.asarray('circle 0123456789ab'))
    assert check_policy(message) == (4, 9, 2.0)
    assert check_policy(message, 'circle 0123456789ab') == (4, 9, 2.0)
    # A policy of another task, or of the same task with other parameters, is refused.
    for other in ('ring 0123456789ab', 'circle ba9876543210'):
        with pytest.raises(InvalidField) as info:
            check_policy(dict(message, task=np.asarray(other)), 'circle 0123456789ab')
        assert info.value.field == 'task' and other in str(info.value)


def test_the_learner_refuses_a_chunk_of_another_policy():
    policy = normalised_policy(obs_clip=2.0)
    mine = chunk(policy, version=5)
    check_logp(mine, NumpyActor(policy), 5)
    # The same weights with another obs_clip (an executor that rebuilt it wrongly).
    other = GaussianPolicy(3, 2, (8,))
    other.load_arrays(policy.to_arrays())
    with pytest.raises(ValueError) as info:
        check_logp(chunk(other, version=5), NumpyActor(policy), 5)
    assert info.value.field == 'logp'
    with pytest.raises(ValueError) as info:
        check_logp(mine, None, 6)
    assert info.value.field == 'policy_version'


def test_the_queue_is_bounded_in_bytes_in_total_and_per_executor():
    one = chunk()
    size = sum(a.nbytes for a in one.values())
    queue = ChunkQueue(max_bytes=3 * size, executor_bytes=2 * size)
    assert queue.put(one, 'a') is None and queue.put(chunk(), 'a') is None
    assert queue.put(chunk(), 'a') == 'executor_quota'
    assert queue.put(chunk(), 'b') is None
    assert queue.put(chunk(), 'c') == 'queue_full'
    assert queue.bytes == queue.peak_bytes == 3 * size
    assert queue.get() is one and queue.put(chunk(), 'c') is None
    while queue.get() is not None:
        pass
    assert queue.bytes == 0 and queue.by_executor == {}


def test_executors_load_only_the_policy_the_learner_announced():
    from cpo_ros.ros.conversions import arrays_to_msg
    from cpo_ros.training.announcements import Announcements, HOLD_S, policy_digest

    def message(version, session):
        arrays = dict(GaussianPolicy(3, 2, (8,)).to_arrays(), version=np.asarray(version),
                      session=np.asarray(session))
        return arrays_to_msg(arrays).data

    def announcement(version, session, payload):
        return check_status(status(version=np.asarray(version), session=np.asarray(session),
                                   policy_digest=np.frombuffer(policy_digest(payload),
                                                               np.uint8)))

    book = Announcements(keep=4)
    genuine = message(3, 7)
    assert book.announce(announcement(3, 7, genuine)) is None
    assert book.check(genuine, 0.0) == policy_digest(genuine)
    assert book.status(7)['version'] == 3 and book.status(8) is None
    # Any other payload is held before it is parsed (a huge version, the learner's own
    # session, noise alike), and refused when the next displaces it or HOLD_S passes.
    forgeries = (message(10 ** 9, 7), message(10 ** 9, 12345), b'noise', b'noise')
    for i, forged in enumerate(forgeries):
        assert book.check(forged, 10.0 + i) is None
        assert len(book.refused(10.0 + i)) == (i > 0)
    assert book.refused(13.0 + HOLD_S / 2) == []
    refused = book.refused(13.0 + HOLD_S)
    assert [e.field for e in refused] == ['announcement'] and book.refused(20.0) == []
    # A policy that came before its announcement is handed back when the status follows,
    # and never counted.
    newer = message(4, 7)
    assert book.check(newer, 30.0) is None
    assert book.announce(announcement(4, 7, newer)) == bytes(newer)
    assert book.refused(40.0) == []
    # Statuses of other sessions (a stranger's) leave the learner's session's status alone
    # until more than `keep` sessions come between; the digests they name are theirs only.
    for session in range(100, 103):
        book.announce(announcement(10 ** 9, session, b'x%d' % session))
    assert book.status(7)['version'] == 4 and book.check(newer, 50.0)
    assert book.check(genuine, 50.0) is None  # an older announcement was replaced...
    assert book.check(newer, 50.0)  # ...by the newest


def test_a_new_learner_session_is_taken_at_any_version_within_one_only_newer():
    def message(version, session):
        return dict(GaussianPolicy(3, 2, (8,)).to_arrays(), version=np.asarray(version),
                    session=np.asarray(session))

    worker = RolloutWorker(1, 3, 2, 5)
    assert worker.set_policy(message(10, 1))
    assert not worker.set_policy(message(9, 1)) and worker.version == 10
    # A learner resumed from an older checkpoint (a new session): followed.
    assert worker.set_policy(message(2, 2)) and worker.version == 2 and worker.can_act
    assert worker.set_policy(message(3, 2))


def test_explicit_parameter_keys_are_told_from_shared_ones(tmp_path):
    params = tmp_path / 'p.yaml'
    params.write_text('/**:\n  ros__parameters:\n    num_envs: 2\n'
                      '/**/safe_area_monitor:\n  ros__parameters:\n    odom_timeout_s: 1.0\n'
                      '    qos:\n      depth: 3\n'
                      '/**/learner:\n  ros__parameters:\n    iterations: 3\n')
    args = ['--ros-args', '--params-file', str(params), '-p', 'seed:=1',
            '-p', 'safe_area_monitor:cmd_timeout:=2.0', '-p', 'learner:out:=x']
    found = explicit_keys(args, 'safe_area_monitor', '/robot/safe_area_monitor')
    assert set(found) == {'odom_timeout_s', 'qos.depth', 'cmd_timeout'}
    assert "section '/**/safe_area_monitor'" in found['odom_timeout_s']


def test_a_setting_for_a_misspelt_node_is_told_from_one_for_another_package(tmp_path):
    params = tmp_path / 'p.yaml'
    params.write_text('/**/safe_area_moniter:\n  ros__parameters:\n    shield_mode: gate\n'
                      '/**/diff_drive_controller:\n  ros__parameters:\n    wheel_radius: 0.03\n'
                      '/robot1/learner:\n  ros__parameters:\n    iterations: 3\n')
    args = ['--params-file', str(params), '-p', 'policy_exectuor:seed:=1',
            '-p', 'amcl:max_particles:=500', '-p', 'learner:out:=x']
    errors = misspelt_node_names(args, node_names())
    assert len(errors) == 2, errors
    assert "'/**/safe_area_moniter'" in errors[0] and 'mean safe_area_monitor' in errors[0]
    assert 'policy_exectuor:seed' in errors[1] and 'mean policy_executor' in errors[1]


def test_a_policy_json_without_observation_is_refused_with_path_and_reason(unsafe_policy,
                                                                          tmp_path):
    import shutil

    from cpo_ros.deploy.export import load_exported
    from cpo_ros.training.checkpoint import CheckpointError

    assert load_exported(unsafe_policy)[1]['observation']['clip'] > 0
    for key, mutate in (('observation', lambda m: m.pop('observation')),
                        ('action.low', lambda m: m['action'].update(low='fast')),
                        ('observation.clip', lambda m: m['observation'].update(clip=None)),
                        ('task', lambda m: m.update(task=[]))):
        bad = tmp_path / key
        shutil.copytree(unsafe_policy, bad)
        meta = json.loads((bad / 'policy.json').read_text())
        mutate(meta)
        (bad / 'policy.json').write_text(json.dumps(meta))
        with pytest.raises(CheckpointError) as info:
            load_exported(bad)
        assert str(bad / 'policy.json') in str(info.value) and key in str(info.value)


def test_limit_command_clips_velocity_and_its_change():
    out = limit_command(np.array([5.0, -9.0]), np.zeros(2), np.array([1.5, 2.0]),
                        np.array([3.0, 6.0]), 0.1)
    np.testing.assert_allclose(out, [0.3, -0.6])
    out = limit_command(np.array([5.0, -9.0]), np.array([1.4, -1.9]), np.array([1.5, 2.0]),
                        np.array([3.0, 6.0]), 0.1)
    np.testing.assert_allclose(out, [1.5, -2.0])


def test_a_chunk_of_any_float_type_that_passes_cannot_fail_the_update():
    """A float64 chunk passed the schema and then failed the update (float32 weights)."""
    from cpo_ros.algo.algorithm import ConstrainedTrustRegion
    from cpo_ros.training.config import AlgoConfig
    from cpo_ros.training.fleet import merge_chunks
    from cpo_ros.wire import canonical_chunk

    algo = ConstrainedTrustRegion(3, 2, AlgoConfig(value_epochs=1))
    wide = {k: (v.astype(np.float64) if v.dtype.kind == 'f' else v)
            for k, v in chunk(algo.policy, version=0).items()}
    check_chunk(wide, 3, 2)
    check_logp(wide, NumpyActor(algo.policy), 0)
    narrow = canonical_chunk(wide)
    assert narrow['obs'].dtype == np.float32 and narrow['episode_return'].dtype == np.float64
    metrics = algo.update(merge_chunks([narrow]))
    assert np.isfinite(metrics['episode_return']) and algo.version == 1
    # A float64 value beyond float32's range passes the schema (finite) and would be inf in
    # the update: refused when the chunk is made canonical.
    huge = dict(wide, reward=np.full_like(wide['reward'], 1e300))
    check_chunk(huge, 3, 2)
    with pytest.raises(InvalidField, match='reward holds values beyond the range of float32'):
        canonical_chunk(huge)
