"""Checkpoints: written atomically, read back only with torch.load(weights_only=True)."""

import os
from pathlib import Path
from typing import Any

import torch

from cpo_ros.files import atomic_path, CheckpointError

FORMAT = 'cpo_ros.checkpoint/1'


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write payload to path atomically (temporary file in the same directory, fsync, rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({'format': FORMAT, **payload}, tmp)
    return path


def _load_error(exc: Exception) -> str:
    """Return torch.load's reason in a line, without its advice to load unsafely."""
    text = str(exc)
    if 'WeightsUnpickler error:' in text:  # a pickle of objects, or not a pickle at all
        detail = text.split('WeightsUnpickler error:', 1)[1].strip().splitlines()
        detail = detail[0].split('. ')[0][:160] if detail else ''
        return f'not a checkpoint that loads with weights_only=True: {detail}'
    lines = text.strip().splitlines()
    return f'{type(exc).__name__}: {lines[0] if lines else ""}'


def load_checkpoint(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a checkpoint, refusing a missing, corrupt or foreign file with its path and reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path}: no such file')
    size: int | str = '?'
    try:
        size = path.stat().st_size
        with open(path, 'rb') as f:  # a file this user may not read is named as such
            payload = torch.load(f, map_location='cpu', weights_only=True)
    except OSError as exc:
        if isinstance(exc, (PermissionError, FileNotFoundError)):
            raise CheckpointError(f'checkpoint {path}: cannot be read ({exc.strerror})') from exc
        raise CheckpointError(f'checkpoint {path}: unreadable ({_load_error(exc)}; {size} bytes: '
                              f'truncated, or not a checkpoint)') from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise CheckpointError(f'checkpoint {path}: unreadable ({_load_error(exc)}; {size} bytes: '
                              f'truncated, or not a checkpoint)') from exc
    if not isinstance(payload, dict) or payload.get('format') != FORMAT:
        raise CheckpointError(f'checkpoint {path}: not a {FORMAT} file')
    missing = [k for k in required if k not in payload]
    if missing:
        raise CheckpointError(f'checkpoint {path}: lacks {missing}')
    dims = payload.get('dims')
    if 'dims' in payload and not (isinstance(dims, dict) and {'obs_dim', 'act_dim'} <= set(dims)
                                  and all(type(v) is int and v >= 1 for v in dims.values())):
        raise CheckpointError(f'checkpoint {path}: dims {dims!r} are not the sizes of a run '
                              f'(obs_dim, act_dim and num_costs: integers >= 1)')
    for key in ('iteration', 'env_steps'):
        if key in payload and not (type(payload[key]) is int and payload[key] >= 0):
            raise CheckpointError(f'checkpoint {path}: {key} {payload[key]!r} is not a count')
    policy = payload.get('algorithm', {}).get('policy') if isinstance(
        payload.get('algorithm'), dict) else None
    for name, value in (policy.items() if isinstance(policy, dict) else ()):
        if (isinstance(value, torch.Tensor) and value.is_floating_point()
                and not bool(torch.isfinite(value).all())):
            raise CheckpointError(f'checkpoint {path}: policy weight {name} holds non-finite '
                                  f'values (NaN or inf): a policy that acts on nothing')
    return payload


BEFORE_SETTINGS = {'lagrangian_optimizer': 'sgd', 'lagrangian_cost_adv': 'standardize',
                   'pid_p_ema': 0.0, 'pid_d_ema': 0.0, 'pid_d_delay': 1}
"""The rules of the Lagrangian baselines until 88eede9, in settings added after it: a run of
ppo_lag or pid_lag recorded without them resumes and compares as it was trained, not as
today's defaults."""


def with_settings_before(config: dict[str, Any]) -> dict[str, Any]:
    """Return a recorded configuration with the settings it predates as they were then."""
    algo = config.get('algo')
    if isinstance(algo, dict) and algo.get('algo') in ('ppo_lag', 'pid_lag'):
        return {**config, 'algo': {**BEFORE_SETTINGS, **algo}}
    return config


def checkpoint_config(payload: dict[str, Any], path: str | os.PathLike):
    """Return the TrainConfig a checkpoint was trained with; CheckpointError naming path."""
    from cpo_ros.training.config import TrainConfig

    try:
        if not isinstance(payload['config'], dict):
            raise TypeError(f'a {type(payload["config"]).__name__}, not a mapping')
        return TrainConfig.from_dict(with_settings_before(payload['config']))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f'checkpoint {path}: its configuration does not load ({exc})'
                              ) from exc
