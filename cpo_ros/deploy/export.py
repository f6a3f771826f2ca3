"""Export a trained policy for a robot: TorchScript plus policy.json, checked when loaded.

policy.pt is a TorchScript module mapping raw observations (N, obs_dim) to the mean action in
the robot's units (N, act_dim), normalisation included. policy.json records the observation and
action layout, normalisation statistics, action limits, task and safe-area parameters, training
provenance and the SHA-256 of policy.pt; a loader refuses a missing file, a checksum mismatch
or a layout that does not match what the node expects.
"""

from datetime import datetime, UTC
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cpo_ros import __version__
from cpo_ros.algo.networks import GaussianPolicy, mlp
from cpo_ros.deploy.profile import deployment_record
from cpo_ros.files import atomic_path
from cpo_ros.training.checkpoint import checkpoint_config, CheckpointError, load_checkpoint

FORMAT = 'cpo_ros.policy/1'
TWIST_ACTIONS = ('linear_x', 'angular_z')


class DeterministicPolicy(nn.Module):
    """Mean action of a GaussianPolicy in env units, for scripting."""

    def __init__(self, policy: GaussianPolicy) -> None:
        super().__init__()
        self.norm = policy.norm
        # Plain torch.tanh layers with the policy's weights: TorchScript compiles them (not the
        # training's sigmoid form, an autograd.Function), and the robot runs this function.
        self.mean_net = mlp((policy.obs_dim, *policy.hidden_sizes, policy.act_dim))
        self.mean_net.load_state_dict(policy.mean_net.state_dict())
        self.register_buffer('action_scale', policy.action_scale.clone())
        self.register_buffer('action_bias', policy.action_bias.clone())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Return actions (N, act_dim) for raw observations (N, obs_dim)."""
        return self.action_bias + self.action_scale * self.mean_net(self.norm(obs))


def sha256(path: str | os.PathLike) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def export_policy(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write out/policy.pt and out/policy.json from a training checkpoint; return out."""
    payload = load_checkpoint(checkpoint, ('config', 'dims', 'algorithm', 'iteration'))
    config = checkpoint_config(payload, checkpoint)
    dims = payload['dims']
    policy = GaussianPolicy(dims['obs_dim'], dims['act_dim'], config.algo.hidden_sizes,
                            obs_clip=config.algo.obs_clip)
    try:
        policy.load_state_dict(payload['algorithm']['policy'])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f'checkpoint {checkpoint}: policy does not load ({exc})') from exc
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    module = torch.jit.script(DeterministicPolicy(policy).eval())
    with atomic_path(out / 'policy.pt') as tmp:
        module.save(str(tmp))
    from cpo_ros.sim.make import make_task, task_options
    task = task_options(config.task, **config.task_kwargs) if config.task else (
        config.task_kwargs)
    instance = make_task(config.task, **config.task_kwargs)[0] if config.task else None
    labels = instance.observation_labels if instance is not None else None
    area = instance.safe_area() if instance is not None else None
    twist = instance is not None  # every task commands the robot with a Twist
    meta: dict[str, Any] = {
        'format': FORMAT,
        'observation': {'labels': list(labels or (f'obs_{i}' for i in range(dims['obs_dim']))),
                        'mean': policy.norm.mean.tolist(), 'var': policy.norm.var.tolist(),
                        'clip': policy.norm.clip},
        'action': {'labels': list(TWIST_ACTIONS) if twist else
                   [f'act_{i}' for i in range(dims['act_dim'])],
                   'low': (policy.action_bias - policy.action_scale).tolist(),
                   'high': (policy.action_bias + policy.action_scale).tolist()},
        'task': {'name': config.task or config.env_id, **task},
        'cost_names': list(instance.cost_names) if instance is not None else ['cost'],
        'safe_area': ({'type': 'polygon', 'vertices': [list(v) for v in area.vertices]}
                      if area is not None else None),
        'robot': deployment_record(config.robot, config.task_kwargs),
        'provenance': {'checkpoint': str(Path(checkpoint).resolve()),
                       'iteration': int(payload['iteration']),
                       'env_steps': int(payload.get('env_steps', 0)),
                       'algo': config.algo.algo, 'cost_limit': config.algo.cost_limit,
                       'seed': config.seed, 'cpo_ros_version': __version__,
                       'exported_at': datetime.now(UTC).isoformat()},
        'sha256': sha256(out / 'policy.pt'),
    }
    with atomic_path(out / 'policy.json') as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return out


def _numbers(value: Any, size: int | None = None) -> bool:
    """Return whether value is a list of finite numbers (of size entries when given)."""
    return (isinstance(value, list) and (size is None or len(value) == size) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in value))


def meta_problem(meta: dict[str, Any]) -> str | None:
    """Return what is missing or ill-typed in policy.json's content, or None when it fits.

    Every key a deployment reads: sha256, observation (labels, mean, var, clip), action
    (labels, low, high), task (with its name), and robot and provenance when present.
    """
    if not isinstance(meta.get('sha256'), str):
        return 'sha256: missing or not a string'
    for kind, arrays in (('observation', ('mean', 'var')), ('action', ('low', 'high'))):
        part = meta.get(kind)
        if not isinstance(part, dict):
            return f'{kind}: missing or not an object'
        labels = part.get('labels')
        if not isinstance(labels, list) or not labels or not all(
                isinstance(label, str) for label in labels):
            return f'{kind}.labels: missing or not a non-empty list of strings'
        for key in arrays:
            if not _numbers(part.get(key), len(labels)):
                return f'{kind}.{key}: need {len(labels)} finite numbers, one per label'
    clip = meta['observation'].get('clip')
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0:
        return 'observation.clip: need a positive number'
    task = meta.get('task')
    if not isinstance(task, dict) or not isinstance(task.get('name'), str):
        return 'task: missing, or without a name'
    for key in ('robot', 'provenance', 'safe_area'):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            return f'{key}: not an object'
    return None


def load_exported(directory: str | os.PathLike, obs_labels: tuple[str, ...] | None = None,
                  action_labels: tuple[str, ...] | None = None
                  ) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Load an exported policy, refusing it (CheckpointError naming path and reason) when unfit."""
    directory = Path(directory)
    meta_path, model_path = directory / 'policy.json', directory / 'policy.pt'
    for path in (meta_path, model_path):
        if not path.is_file():
            raise CheckpointError(f'exported policy {path}: no such file')
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f'exported policy {meta_path}: not JSON ({exc})') from exc
    except OSError as exc:  # unreadable (permissions), or gone since the check above
        raise CheckpointError(f'exported policy {meta_path}: cannot be read ({exc})') from exc
    if not isinstance(meta, dict) or meta.get('format') != FORMAT:
        raise CheckpointError(f'exported policy {meta_path}: not a {FORMAT} file')
    problem = meta_problem(meta)
    if problem is not None:
        raise CheckpointError(f'exported policy {meta_path}: {problem}')
    try:
        digest = sha256(model_path)
    except OSError as exc:
        raise CheckpointError(f'exported policy {model_path}: cannot be read ({exc})') from exc
    if digest != meta.get('sha256'):
        raise CheckpointError(f'exported policy {model_path}: SHA-256 does not match '
                              f'{meta_path} (file changed or corrupt)')
    for kind, expected in (('observation', obs_labels), ('action', action_labels)):
        got = tuple(meta[kind]['labels'])
        if expected is not None and got != tuple(expected):
            raise CheckpointError(f'exported policy {meta_path}: {kind} layout {list(got)} '
                                  f'does not match this node {list(expected)}')
    try:
        module = torch.jit.load(str(model_path), map_location='cpu')
    except (RuntimeError, OSError, ValueError) as exc:
        raise CheckpointError(f'exported policy {model_path}: unreadable ({exc})') from exc
    return module, meta
