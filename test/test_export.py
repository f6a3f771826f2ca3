"""`cpo-ros export`: TorchScript + policy.json, refused when missing, altered or mismatched."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from cpo_ros.algo.networks import NumpyActor
from cpo_ros.deploy.export import load_exported, TWIST_ACTIONS
from cpo_ros.tasks.circle import OBS_LABELS as CIRCLE_OBS
from cpo_ros.training.checkpoint import CheckpointError
from cpo_ros.training.evaluate import load_policy


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    run = tmp_path_factory.mktemp('run')
    subprocess.run([sys.executable, '-m', 'cpo_ros.cli', 'train', '--iterations', '1',
                    '--steps-per-iteration', '800', '--num-envs', '4', '--out', str(run),
                    '--quiet'], check=True, timeout=300)
    out = run / 'export'
    result = subprocess.run([sys.executable, '-m', 'cpo_ros.cli', 'export', '--checkpoint',
                             str(run / 'checkpoints/last.pt'), '--out', str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return run, out


def test_exported_policy_matches_the_checkpoint(exported):
    run, out = exported
    module, meta = load_exported(out, CIRCLE_OBS, TWIST_ACTIONS)
    policy, _config = load_policy(run / 'checkpoints/last.pt')
    obs = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    _u, _logp, mean_action = NumpyActor(policy).act(obs, deterministic=True)
    np.testing.assert_allclose(module(torch.as_tensor(obs)).detach().numpy(), mean_action,
                               rtol=1e-5, atol=1e-6)
    assert meta['safe_area']['type'] == 'polygon'
    assert [v[0] for v in meta['safe_area']['vertices']] == [-2.5, 2.5, 2.5, -2.5]
    assert meta['action']['high'] == pytest.approx([1.5, 2.0])
    assert meta['provenance']['iteration'] == 1 and len(meta['sha256']) == 64
    assert len(meta['observation']['mean']) == 6


def test_loading_refuses_missing_altered_or_mismatched(exported, tmp_path):
    _run, out = exported
    with pytest.raises(CheckpointError, match='no such file'):
        load_exported(tmp_path)
    with pytest.raises(CheckpointError, match='observation layout'):
        load_exported(out, ('x', 'y'), TWIST_ACTIONS)
    with pytest.raises(CheckpointError, match='action layout'):
        load_exported(out, CIRCLE_OBS, ('linear_x',))
    altered = tmp_path / 'altered'
    altered.mkdir()
    (altered / 'policy.json').write_text((out / 'policy.json').read_text())
    (altered / 'policy.pt').write_bytes((out / 'policy.pt').read_bytes() + b'\0')
    with pytest.raises(CheckpointError, match='SHA-256'):
        load_exported(altered)
    meta = json.loads((out / 'policy.json').read_text())
    meta['format'] = 'something else'
    (altered / 'policy.json').write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match='not a cpo_ros.policy/1'):
        load_exported(altered)


def test_a_policy_file_that_cannot_be_read_is_refused_with_its_path(exported, monkeypatch):
    # Permissions, or a file removed between the check and the read: the reason and the path,
    # never an exception the lifecycle node would turn into a silent ERROR state.
    from pathlib import Path

    _run, out = exported
    real = Path.read_text

    def unreadable(self, *args, **kwargs):
        if self.name == 'policy.json':
            raise PermissionError(13, 'Permission denied', str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, 'read_text', unreadable)
    with pytest.raises(CheckpointError, match='policy.json: cannot be read .*Permission denied'):
        load_exported(out)
