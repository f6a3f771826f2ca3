"""Faults: bad messages from the wire, failing updates, run directories, interruptions, best.pt.

Real processes throughout (learner, executor, sim bridge, `cpo-ros train`), real rclpy, torch
and MuJoCo.
"""

import csv
import io
import json
import signal
import subprocess
import sys
import time
import zipfile

from conftest import REPO, wait_until
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
import numpy as np
import pytest
from std_msgs.msg import UInt8MultiArray

from cpo_ros.algo.buffer import RolloutCollector
from cpo_ros.algo.networks import GaussianPolicy
from cpo_ros.ros import qos
from cpo_ros.ros.conversions import arrays_to_msg, msg_to_arrays

TINY = ['num_envs:=2', 'steps_per_iteration:=40', 'circle.max_episode_steps:=10']
CIRCLE_OBS = 6


def rows(out):
    path = out / 'progress.csv'
    if not path.is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def rollout(version=0, obs_dim=CIRCLE_OBS, **override):
    col = RolloutCollector(num_envs=2, obs_dim=obs_dim, act_dim=2, steps=20)
    for t in range(20):
        done = np.full(2, t % 10 == 9)
        col.add(np.zeros((2, obs_dim)), np.zeros((2, 2)), np.zeros(2), np.ones(2),
                np.zeros(2), np.zeros(2, bool), done, np.zeros((2, obs_dim)))
    arrays = col.arrays(np.zeros((2, obs_dim)), version)
    # A chunk's own fields (wire.CHUNK_META_FIELDS), as an executor sends them.
    arrays.update(executor_id=np.asarray('/probe', np.str_), executor_session=np.asarray(1),
                  chunk_seq=np.asarray(0), samples=np.asarray(40))
    arrays.update(override)
    return arrays


def npz_bomb(inflated_bytes: int) -> UInt8MultiArray:
    """Return an .npz message of a few hundred kB that inflates to inflated_bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_DEFLATED) as archive:
        with archive.open('obs.npy', 'w', force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {'descr': '<f4', 'fortran_order': False,
                    'shape': (inflated_bytes // 4 // CIRCLE_OBS // 2, 2, CIRCLE_OBS)})
            chunk = bytes(2 ** 20)
            for _ in range(inflated_bytes // len(chunk)):
                f.write(chunk)
    return UInt8MultiArray(data=buffer.getvalue())


def test_npz_reader_caps_the_inflated_size_and_refuses_forged_headers():
    bomb = npz_bomb(64 * 2 ** 20)
    assert len(bomb.data) < 2 ** 20
    with pytest.raises(ValueError, match='exceeds the cap') as info:
        msg_to_arrays(bomb, max_bytes=2 ** 20)
    assert info.value.field == 'npz'
    # A header that claims more data than its member holds is refused before numpy allocates.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        with archive.open('obs.npy', 'w') as f:
            np.lib.format.write_array_header_1_0(
                f, {'descr': '<f8', 'fortran_order': False, 'shape': (10 ** 12,)})
    with pytest.raises(ValueError, match='header claims') as info:
        msg_to_arrays(UInt8MultiArray(data=buffer.getvalue()))
    assert info.value.field == 'obs'
    good = rollout()
    back = msg_to_arrays(arrays_to_msg(good))
    assert set(back) == set(good)
    for key in good:
        np.testing.assert_array_equal(back[key], good[key])


def test_policies_are_checked_before_a_network_is_built():
    arrays = GaussianPolicy(CIRCLE_OBS, 2, (8,)).to_arrays()
    assert GaussianPolicy.from_arrays(arrays, CIRCLE_OBS, 2).hidden_sizes == (8,)
    cases = {'hidden_sizes': dict(arrays, hidden_sizes=np.asarray([-5])),
             'norm.mean': dict(arrays, **{'norm.mean': np.zeros((0,), np.float32)}),
             'log_std': dict(arrays, log_std=np.full(2, np.inf, np.float32)),
             'mean_net.0.weight': dict(arrays, **{'mean_net.0.weight': np.zeros((8, 3))})}
    for field, bad in cases.items():
        with pytest.raises(ValueError) as info:
            GaussianPolicy.from_arrays(bad, CIRCLE_OBS, 2)
        assert info.value.field == field
    with pytest.raises(ValueError, match='1 to 16 layers'):
        GaussianPolicy.from_arrays(dict(arrays, hidden_sizes=np.ones(1000, np.int64)))


def test_bad_messages_are_refused_by_field_and_counted(start_node, probe, tmp_path):
    learner_diag, executor_diag = {}, {}

    def on_diag(msg):
        for status in msg.status:
            target = {'/learner': learner_diag, '/policy_executor': executor_diag}.get(status.name)
            if target is not None:
                target.update({kv.key: kv.value for kv in status.values})

    probe.create_subscription(DiagnosticArray, 'diagnostics', on_diag, qos.METRICS)
    learner = start_node('learner', *TINY, f'out:={tmp_path}', 'resume:=false')
    executor = start_node('policy_executor', *TINY)
    rollout_pub = probe.create_publisher(UInt8MultiArray, 'cpo/rollout', qos.ROLLOUT)
    # Latched like the learner's (executors subscribe transient-local to get the latest).
    policy_pub = probe.create_publisher(UInt8MultiArray, 'cpo/policy', qos.LATCHED)
    assert wait_until(lambda: rollout_pub.get_subscription_count() > 0
                      and policy_pub.get_subscription_count() > 0, 60), learner.output
    assert learner.wait_for_output('new run', 60), learner.output
    bad = {'terminated': rollout(terminated=np.zeros((20, 2), np.float32)),
           'reward': rollout(reward=np.full((20, 2), np.nan, np.float32)),
           'episode_length': rollout(episode_length=np.asarray([10, -3, 10, 10]))}
    for field, arrays in bad.items():
        rollout_pub.publish(arrays_to_msg(arrays))
        assert learner.wait_for_output(f'dropped a malformed rollout (field {field})', 20), \
            learner.output
    rollout_pub.publish(npz_bomb(64 * 2 ** 20))
    assert learner.wait_for_output('exceeds the cap', 30), learner.output
    # A policy the learner did not announce is refused before it is parsed (field
    # announcement); its architecture is checked once announced (test_hostile_input.py).
    policy = GaussianPolicy(CIRCLE_OBS, 2).to_arrays()
    policy.update(version=np.asarray(99), session=np.asarray(5),
                  hidden_sizes=np.asarray([-64, 32]))
    policy_pub.publish(arrays_to_msg(policy))
    assert executor.wait_for_output('dropped a malformed policy (field announcement)', 20), \
        executor.output
    assert wait_until(lambda: learner_diag.get('refused_rollout') == '4'
                      and executor_diag.get('refused_policy.announcement') == '1', 20), \
        (learner_diag, executor_diag)
    assert learner_diag['refused_rollout.terminated'] == '1'
    assert learner.proc.poll() is None and executor.proc.poll() is None


def test_failing_updates_resample_then_exit_and_a_respawn_resumes(start_node, tmp_path):
    out = tmp_path / 'run'
    # Every batch is safe under this limit, so each update writes best.pt.
    params = (*TINY, f'out:={out}', 'value_epochs:=1', 'max_failed_updates:=2',
              'cost_limit:=1000.0')
    learner = start_node('learner', *params, 'iterations:=2')
    assert learner.wait_for_output('new run', 60), learner.output
    # A directory where best.pt goes: that save fails, as on a full disk.
    (out / 'checkpoints' / 'best.pt' / 'x').mkdir(parents=True)
    start_node('sim_bridge', *TINY)
    start_node('policy_executor', *TINY)
    assert learner.wait(timeout=120) == 1, learner.output
    text = learner.output
    assert text.count('Traceback') >= 2 and 'update 1 failed (1 in a row' in text
    # The second failure needs a second rollout: the re-published policy restarted sampling.
    assert 'update 1 failed (2 in a row' in text and '2 updates failed in a row' in text
    assert rows(out) == []  # each failed update was rolled back
    assert (out / 'curves.png').is_file()
    # The respawned learner (resume: auto, the default) trains on from the checkpoint.
    (out / 'checkpoints' / 'best.pt' / 'x').rmdir()
    (out / 'checkpoints' / 'best.pt').rmdir()
    again = start_node('learner', *params, 'iterations:=2')
    assert again.wait(timeout=120) == 0, again.output
    assert 'resumed' in again.output
    assert [r['iteration'] for r in rows(out)] == ['1', '2']
    assert (out / 'checkpoints' / 'best.pt').is_file()
    # A learner stopped with SIGTERM writes the plot and summary too.
    (out / 'curves.png').unlink()
    third = start_node('learner', *params, 'iterations:=50')
    assert wait_until(lambda: len(rows(out)) >= 3, 120), third.output
    third.proc.send_signal(signal.SIGTERM)
    assert third.wait(timeout=60) == 0, third.output
    assert 'training stopped' in third.output and (out / 'curves.png').is_file()


def cpo_ros(*args, check=True, **kwargs):
    result = subprocess.run([sys.executable, '-m', 'cpo_ros.cli', *args], capture_output=True,
                            text=True, timeout=300, cwd=REPO, **kwargs)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


SMALL_TRAIN = ('train', '--iterations', '3', '--steps-per-iteration', '400', '--num-envs', '4',
               '--quiet')


def test_run_directories_are_never_overwritten_silently(tmp_path):
    out = tmp_path / 'run'
    first = cpo_ros(*SMALL_TRAIN, '--out', str(out), '--cost-limit', '1000')
    again = cpo_ros(*SMALL_TRAIN, '--out', str(out), check=False)
    assert again.returncode == 2 and str(out) in again.stderr, again.stderr
    assert '--resume' in again.stderr and len(rows(out)) == 3
    missing = cpo_ros(*SMALL_TRAIN, '--out', str(tmp_path / 'new'), '--resume', check=False)
    assert missing.returncode == 2 and 'last.pt does not exist' in missing.stderr
    changed = cpo_ros(*SMALL_TRAIN, '--out', str(out), '--resume', '--target-kl', '0.02',
                      '--seed', '1', '--set', 'x_limit=3.0', check=False)
    assert changed.returncode == 2, changed.stderr
    for diff in ('algo.target_kl: 0.01 -> 0.02', 'seed: 0 -> 1', 'x_limit: 2.5 -> 3.0'):
        assert diff in changed.stderr, changed.stderr
    cpo_ros(*SMALL_TRAIN, '--out', str(out), '--overwrite', '--cost-limit', '1000')
    aside = [p for p in tmp_path.iterdir() if p.name.startswith('run.old-')]
    assert len(aside) == 1 and len(rows(aside[0])) == 3 and len(rows(out)) == 3
    assert first.returncode == 0

    # Best safe policy: with a limit no batch reaches every iteration is safe.
    table = rows(out)
    assert all(r['safe'] == '1' for r in table)
    returns = [float(r['episode_return']) for r in table]
    best = str(int(np.argmax(returns)) + 1)
    assert table[-1]['best_iteration'] == best
    exported = cpo_ros('export', '--run', str(out), '--checkpoint', 'best', '--out',
                       str(tmp_path / 'policy'))
    meta = json.loads((tmp_path / 'policy' / 'policy.json').read_text())
    assert meta['provenance']['iteration'] == int(best), exported.stdout
    assert meta['provenance']['checkpoint'].endswith('best.pt')
    result = cpo_ros('eval', '--run', str(out), '--checkpoint', 'best', '--episodes', '2')
    assert 'best.pt' in result.stdout and 'mean return' in result.stdout
    (out / 'checkpoints' / 'best.pt').unlink()
    none = cpo_ros('eval', '--run', str(out), '--checkpoint', 'best', check=False)
    assert none.returncode == 2 and 'met every cost limit' in none.stderr


def test_ctrl_c_still_writes_the_plot_and_summary(tmp_path):
    out = tmp_path / 'run'
    proc = subprocess.Popen([sys.executable, '-m', 'cpo_ros.cli', *SMALL_TRAIN[:2], '500',
                             *SMALL_TRAIN[3:], '--out', str(out)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert wait_until(lambda: len(rows(out)) >= 2, 120)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert (out / 'curves.png').is_file() and 'interrupted at iteration' in output
    assert '--resume' in output
    done = len(rows(out))
    time.sleep(0.1)
    resumed = cpo_ros(*SMALL_TRAIN[:2], str(done + 1), *SMALL_TRAIN[3:], '--out', str(out),
                      '--resume')
    assert [int(r['iteration']) for r in rows(out)] == list(range(1, done + 2)), resumed.stdout


def test_a_flood_of_refusals_is_no_flood_on_diagnostics(probe):
    from cpo_ros.ros.faults import FaultReport
    from cpo_ros.validation import InvalidField

    statuses = []
    probe.create_subscription(
        DiagnosticArray, '/diagnostics',
        lambda m: statuses.extend(s for s in m.status if s.name == '/test_probe'), qos.METRICS)
    report = FaultReport(probe)
    assert wait_until(lambda: report.pub.get_subscription_count() > 0, 10)
    for _ in range(300):  # a stranger's flood: every message refused
        report.refuse('policy', InvalidField('announcement', 'not announced'))

    def counted(n: int) -> bool:
        return any({kv.key: kv.value for kv in s.values}.get('refused_policy') == str(n)
                   for s in statuses)

    # The first refusal's status at once, the rest's counts with the next (within a second).
    assert wait_until(lambda: counted(300), 10), [s.values for s in statuses]
    assert len(statuses) <= 3, len(statuses)
    assert statuses[-1].level == DiagnosticStatus.WARN
