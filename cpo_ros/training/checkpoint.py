"""Checkpoints: written atomically, read back only with torch.load(weights_only=True)."""

import os
from pathlib import Path
import tempfile
from typing import Any

import torch

FORMAT = 'cpo_ros.checkpoint/1'


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: the message names the path and the reason."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write payload to path atomically (temporary file in the same directory, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save({'format': FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a checkpoint, refusing a missing, corrupt or foreign file with its path and reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path}: no such file')
    try:
        payload = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise CheckpointError(f'checkpoint {path}: unreadable ({type(exc).__name__}: {exc})'
                              ) from exc
    if not isinstance(payload, dict) or payload.get('format') != FORMAT:
        raise CheckpointError(f'checkpoint {path}: not a {FORMAT} file')
    missing = [k for k in required if k not in payload]
    if missing:
        raise CheckpointError(f'checkpoint {path}: lacks {missing}')
    return payload
