"""A training run on disk: config.yaml, progress.csv, checkpoints and curves.png.

Both the direct trainer and the ROS learner node drive a TrainingRun, so the two write the same
files and resume the same way.
"""

import os
from pathlib import Path
import platform
import time
from typing import Any

import numpy as np
import torch
import yaml

from cpo_ros import __version__
from cpo_ros.core.algorithm import ConstrainedTrustRegion
from cpo_ros.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cpo_ros.core.config import TrainConfig
from cpo_ros.core.progress import flatten_row, plot_curves, progress_columns, ProgressLog


class TrainingRun:
    """Own the algorithm and the run directory; record each iteration and checkpoint it."""

    def __init__(self, config: TrainConfig, obs_dim: int, act_dim: int,
                 action_low: np.ndarray | None, action_high: np.ndarray | None,
                 max_episode_steps: int | None, resume: bool = False,
                 extra_config: dict[str, Any] | None = None, num_costs: int = 1) -> None:
        config.validate()
        self.config = config
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.out / 'checkpoints' / 'last.pt'
        self.progress = ProgressLog(self.out / 'progress.csv',
                                    progress_columns(num_costs, config.algo.cost_shaping))
        self.dims = {'obs_dim': int(obs_dim), 'act_dim': int(act_dim)}
        if num_costs > 1:
            self.dims['num_costs'] = int(num_costs)
        torch.manual_seed(config.seed)
        self.algorithm = ConstrainedTrustRegion(obs_dim, act_dim, config.algo, action_low,
                                                action_high, max_episode_steps, num_costs)
        self.iteration = 0
        self.env_steps = 0
        self.wall_time = 0.0
        if resume and self.checkpoint_path.is_file():
            self._restore()
        else:
            if self.progress.path.exists():
                self.progress.path.unlink()
        self._write_config(extra_config or {})
        self._t_last = time.perf_counter()

    @property
    def done(self) -> bool:
        """Return whether the iteration budget is spent."""
        return self.iteration >= self.config.iterations

    def record(self, rollout: dict[str, np.ndarray], timings: dict[str, float] | None = None,
               episode_cost: float | np.ndarray | None = None) -> dict[str, Any]:
        """Update from a rollout, append the progress row, checkpoint when due; return the row."""
        timings = dict(timings or {})
        t0 = time.perf_counter()
        metrics = self.algorithm.update(rollout, episode_cost)
        timings['update_time_s'] = time.perf_counter() - t0
        self.iteration += 1
        self.env_steps += int(metrics['samples'])
        now = time.perf_counter()
        elapsed = now - self._t_last
        self._t_last = now
        self.wall_time += elapsed
        row = flatten_row({'iteration': self.iteration, 'env_steps': self.env_steps, **metrics,
                           **timings, 'wall_time_s': self.wall_time,
                           'steps_per_s': metrics['samples'] / max(elapsed, 1e-9)})
        self.progress.append(row)
        if self.iteration % self.config.checkpoint_every == 0 or self.done:
            self.save()
        return row

    def save(self) -> Path:
        """Write the checkpoint of the current iteration atomically."""
        return save_checkpoint(self.checkpoint_path, {
            'config': self.config.to_dict(), 'dims': self.dims, 'iteration': self.iteration,
            'env_steps': self.env_steps, 'wall_time_s': self.wall_time,
            'algorithm': self.algorithm.state_dict(), 'torch_rng': torch.get_rng_state()})

    def finish(self) -> Path:
        """Write the last checkpoint and curves.png; return the plot's path."""
        self.save()
        title = f'{self.config.algo.algo.upper()} on {self.config.task or self.config.env_id}'
        return plot_curves(self.progress.path, self.out / 'curves.png', title)

    def _restore(self) -> None:
        payload = load_checkpoint(self.checkpoint_path,
                                  ('config', 'dims', 'iteration', 'algorithm', 'torch_rng'))
        if payload['dims'] != self.dims:
            raise CheckpointError(f'checkpoint {self.checkpoint_path}: observation/action sizes '
                                  f'{payload["dims"]} do not match this run {self.dims}')
        saved = TrainConfig.from_dict(payload['config'])
        for key in ('task', 'env_id', 'algo', 'num_envs', 'steps_per_iteration', 'seed'):
            if getattr(saved, key) != getattr(self.config, key):
                raise CheckpointError(f'checkpoint {self.checkpoint_path}: {key} was '
                                      f'{getattr(saved, key)!r}, this run has '
                                      f'{getattr(self.config, key)!r}')
        try:
            self.algorithm.load_state_dict(payload['algorithm'])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f'checkpoint {self.checkpoint_path}: {exc}') from exc
        torch.set_rng_state(payload['torch_rng'])
        self.iteration = int(payload['iteration'])
        self.env_steps = int(payload['env_steps'])
        self.wall_time = float(payload.get('wall_time_s', 0.0))
        self.progress.truncate(self.iteration)

    def _write_config(self, extra: dict[str, Any]) -> None:
        data = {'config': self.config.to_dict(), **self.dims, **extra,
                'versions': {'cpo_ros': __version__, 'python': platform.python_version(),
                             'torch': str(torch.__version__), 'numpy': np.__version__}}
        tmp = self.out / 'config.yaml.tmp'
        with open(tmp, 'w') as f:
            yaml.safe_dump(data, f, sort_keys=False)
        os.replace(tmp, self.out / 'config.yaml')
