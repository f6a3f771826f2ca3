"""A fleet through real processes: executors die and join, the learner keeps exact iterations."""

import signal
import sys

from conftest import NodeProcess, REPO, rows, shares, wait_until
import numpy as np
import pytest
from std_msgs.msg import UInt8MultiArray

from cpo_ros.ros import qos
from cpo_ros.ros.bringup import worker_command

FLEET = REPO / 'config' / 'fleet_sim.yaml'
SAMPLES = 1200  # per iteration: 3 workers x 2 robots x 200-step chunks
COMMON = ['-p', 'num_envs:=2', '-p', f'steps_per_iteration:={SAMPLES}']


def stale_chunk() -> dict[str, np.ndarray]:
    """Return a well-formed Point-Circle chunk sampled by policy version 0 (stale later)."""
    from cpo_ros.algo.networks import GaussianPolicy
    from cpo_ros.sim.make import vec_env
    from cpo_ros.training.worker import RolloutWorker

    env = vec_env('circle', 2, seed=5, max_episode_steps=50)
    worker = RolloutWorker(2, env.obs_dim, env.act_dim, 20, seed=5)
    worker.use_policy(GaussianPolicy(env.obs_dim, env.act_dim), 0)
    obs, chunk = env.reset(seed=5), None
    while chunk is None:
        obs, r, c, te, tr, info = env.step(worker.act(obs))
        worker.record(r, c, te, tr, info['final_obs'])
        chunk = worker.take_rollout(obs)
    chunk.update(executor_id=np.asarray('probe'), executor_session=np.asarray(1),
                 chunk_seq=np.asarray(0), samples=np.asarray(chunk['reward'].size))
    return chunk


def test_fleet_survives_a_killed_executor_drops_stale_chunks_and_takes_a_late_one(
        ros_env, probe, tmp_path):
    from cpo_ros.ros.conversions import arrays_to_msg

    out = tmp_path / 'run'
    procs = []
    try:
        learner = NodeProcess(
            [sys.executable, '-m', 'cpo_ros.nodes.learner', '--ros-args', '--params-file',
             str(FLEET), *COMMON, '-p', 'learner:iterations:=10000', '-p', f'learner:out:={out}',
             '-p', 'learner:iteration_timeout_s:=30.0', '-p', 'learner:value_epochs:=1'],
            ros_env)
        procs.append(learner)
        workers = [NodeProcess(worker_command('fleet_sim', i, 3, COMMON, str(tmp_path)),
                               ros_env) for i in range(3)]
        procs += workers
        assert wait_until(lambda: len(rows(out)) >= 3, 120), learner.output
        # Kill worker 2 while it samples (SIGKILL: no goodbye); training goes on without it.
        workers[2].proc.send_signal(signal.SIGKILL)
        killed_at = len(rows(out))
        assert wait_until(lambda: len(rows(out)) >= killed_at + 4, 120), learner.output
        # A stale chunk arrives. Version 0 is older than the policies the learner keeps to
        # check chunks against (test_fuzz sends a forged one of a kept version): dropped.
        pub = probe.create_publisher(UInt8MultiArray, '/cpo/rollout', qos.ROLLOUT)
        assert wait_until(lambda: pub.get_subscription_count() > 0, 30)
        pub.publish(arrays_to_msg(stale_chunk()))
        assert learner.wait_for_output('dropped a chunk of policy version 0 from probe', 30), \
            learner.output
        # A late executor: worker 3 of a fleet of 4 joins now.
        joined_at = len(rows(out))
        late = NodeProcess(worker_command('fleet_sim', 3, 4, COMMON, str(tmp_path)), ros_env)
        procs.append(late)
        assert late.wait_for_output('policy version', 60), late.output
        first = int(late.output.split('policy version ')[1].split()[0])
        assert first >= joined_at  # the latched, current policy (not version 0)
        assert wait_until(lambda: any('/worker_3/policy_executor' in shares(r)
                                      for r in rows(out)), 90), learner.output
    finally:
        for proc in procs:
            proc.stop()
    table = rows(out)
    for row in table:
        # Exactly one iteration's samples, each from an executor the row lists.
        assert int(row['samples']) == SAMPLES == sum(shares(row).values()), row
        assert row['timed_out'] == '0', row
        assert 'probe' not in shares(row)
    assert sum(int(r['stale_chunks']) for r in table) >= 1
    after = table[killed_at + 2:]
    assert after and all('/worker_2/policy_executor' not in shares(r) for r in after)
    late_rows = [i for i, r in enumerate(table) if '/worker_3/policy_executor' in shares(r)]
    assert late_rows and min(late_rows) >= joined_at
    versions = [int(r['policy_version']) for r in table]
    assert versions == list(range(1, len(table) + 1))


if __name__ == '__main__':
    sys.exit(pytest.main([__file__, '-q']))
