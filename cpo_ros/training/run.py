"""A training run on disk: config.yaml, progress.csv, checkpoints and curves.png.

Both the direct trainer and the ROS learner node drive a TrainingRun, so the two write the same
files and resume the same way.

A run directory belongs to one run. How a start treats it (`mode`):

- 'fresh': start at iteration 0; refused when the directory already holds results.
- 'resume': continue from checkpoints/last.pt; refused when there is none, or when the task or
  algorithm configuration differs (every difference is named).
- 'auto': 'resume' when checkpoints/last.pt exists, else 'fresh' (a respawned learner).
- 'overwrite': move an existing run aside (<out>.old-<time>), then start fresh.

Each iteration is recorded whole or not at all: when the update, the progress row or the
checkpoint fails, the algorithm, the counters and progress.csv are put back as they were.
checkpoints/best.pt holds the best safe policy: the highest measured return among iterations
whose measured cost is within every limit.
"""

from collections.abc import Callable
import copy
from datetime import datetime
import os
from pathlib import Path
import platform
import time
from typing import Any

import numpy as np
import torch
import yaml

from cpo_ros import __version__
from cpo_ros.algo.algorithm import ConstrainedTrustRegion
from cpo_ros.files import atomic_path
from cpo_ros.training.checkpoint import (
    checkpoint_config,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    with_settings_before,
)
from cpo_ros.training.config import AlgoConfig, TrainConfig
from cpo_ros.training.progress import flatten_row, plot_curves, progress_columns, ProgressLog
from cpo_ros.training.tensorboard import TensorBoardLog

RUN_MODES = ('fresh', 'resume', 'auto', 'overwrite')
# Settings a resumed run may change: the budget, where it lives, and how it is computed.
RESUMABLE_KEYS = ('iterations', 'out', 'checkpoint_every', 'torch_threads', 'env_workers',
                  'tensorboard')


class RunDirError(ValueError):
    """A run directory that cannot be used as asked; the message names it and what to do."""


def run_mode(resume: bool | str) -> str:
    """Return the mode of a resume flag: True -> 'resume', False -> 'fresh', or a mode."""
    if isinstance(resume, bool):
        return 'resume' if resume else 'fresh'
    if resume not in RUN_MODES:
        raise ValueError(f'resume = {resume!r} is not allowed: one of {list(RUN_MODES)}')
    return resume


def run_results(out: Path) -> list[str]:
    """Return the entries of a run directory that hold results (all but start-up leftovers).

    A start writes config.yaml and the iteration-0 checkpoint; a process killed in between
    leaves config.yaml and perhaps a temporary checkpoint file, which hold nothing to lose.
    """
    if not out.is_dir():
        return []
    found = []
    for entry in sorted(out.iterdir()):
        if entry.name == 'config.yaml' or entry.name.endswith('.tmp'):
            continue
        if entry.name == 'checkpoints' and entry.is_dir() and all(
                p.name.endswith('.tmp') for p in entry.iterdir()):
            continue
        found.append(entry.name)
    return found


def prepare_run_dir(out: Path, mode: str) -> tuple[bool, Path | None]:
    """Apply mode to run directory out; return (resume?, where an old run was moved).

    Raises RunDirError naming the directory when the mode cannot be honoured.
    """
    checkpoint = out / 'checkpoints' / 'last.pt'
    if mode == 'resume' and not checkpoint.is_file():
        raise RunDirError(f'cannot resume: {checkpoint} does not exist (start without '
                          f'--resume / resume:=false for a new run)')
    if mode in ('resume', 'auto') and checkpoint.is_file():
        return True, None
    results = run_results(out)
    if not results:
        return False, None
    if mode == 'overwrite':
        stamp = datetime.now().strftime('%Y%m%d-%H%M%S')
        aside = out.with_name(f'{out.name}.old-{stamp}')
        n = 1
        while aside.exists():
            n += 1
            aside = out.with_name(f'{out.name}.old-{stamp}-{n}')
        os.replace(out, aside)
        return False, aside
    raise RunDirError(f'run directory {out} already holds a run ({", ".join(results)}): '
                      f'continue it with --resume (learner: resume true or auto), replace it '
                      f'with --overwrite (cpo-ros train; the old run is moved aside), or choose '
                      f'another run directory (--out; learner: out)')


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """Return a config dict whose task_kwargs are every task option in effect (defaults too).

    So a default set explicitly is no difference, and a default that changed between versions
    is one.
    """
    from cpo_ros.training.settings import task_options

    effective = task_options(TrainConfig.from_dict(config))
    return {**config, 'task_kwargs': effective or config['task_kwargs']}


def update_setting_differences(out: str | Path, asked: AlgoConfig) -> list[str]:
    """Return 'key: saved -> asked' for each update setting of the run in out not as asked.

    A bench that reports a finished run instead of training it checks with this that the run
    was trained as asked. Settings its config.yaml does not hold (written before they existed)
    are not compared.
    """
    with open(Path(out) / 'config.yaml') as f:
        recorded = with_settings_before((yaml.safe_load(f) or {}).get('config') or {})
    held = recorded.get('algo') or {}
    wanted = TrainConfig(algo=asked).to_dict()['algo']
    held = {key: value for key, value in held.items() if key in wanted}
    saved = TrainConfig.from_dict({'algo': held}).to_dict()['algo']
    return config_differences({k: saved[k] for k in held}, {k: wanted[k] for k in held})


def config_differences(saved: Any, current: Any, prefix: str = '') -> list[str]:
    """Return 'key: saved -> current' for every setting that differs (RESUMABLE_KEYS aside)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        diffs = []
        for key in sorted(set(saved) | set(current), key=str):
            name = f'{prefix}{key}'
            if not prefix and key in RESUMABLE_KEYS:
                continue
            if key not in saved or key not in current:
                diffs.append(f'{name}: {saved.get(key, "(unset)")!r} -> '
                             f'{current.get(key, "(unset)")!r}')
                continue
            diffs += config_differences(saved[key], current[key], f'{name}.')
        return diffs
    if isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple)):
        same = len(saved) == len(current) and all(
            not config_differences(a, b) for a, b in zip(saved, current, strict=False))
    else:
        same = saved == current
    return [] if same else [f'{prefix[:-1]}: {saved!r} -> {current!r}']


class TrainingRun:
    """Own the algorithm and the run directory; record each iteration and checkpoint it."""

    def __init__(self, config: TrainConfig, obs_dim: int, act_dim: int,
                 action_low: np.ndarray | None, action_high: np.ndarray | None,
                 max_episode_steps: int | None, resume: bool | str = 'fresh',
                 extra_config: dict[str, Any] | None = None, num_costs: int = 1,
                 extra_columns: tuple[str, ...] = (),
                 init_from: str | os.PathLike | None = None) -> None:
        """Open or start the run in config.out (see run_mode for resume).

        init_from: a new run starts from this run's (directory or checkpoint) policy and
        critics (fine-tuning); a resumed run ignores it. Checked before anything is written:
        a bad source leaves no run behind for a corrected restart to resume.
        """
        config.validate()
        # Before the run directory: a refused setting leaves nothing behind.
        ConstrainedTrustRegion.check_config(config.algo, num_costs)
        self.config = config
        self.cost_names = tuple((extra_config or {}).get('cost_names', ()))
        """The task's cost names, for the plot's legend (the progress columns are numbered)."""
        self.out = Path(config.out)
        self.resumed, self.moved_aside = prepare_run_dir(self.out, run_mode(resume))
        self.out.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.out / 'checkpoints' / 'last.pt'
        self.best_path = self.out / 'checkpoints' / 'best.pt'
        self.progress = ProgressLog(self.out / 'progress.csv',
                                    progress_columns(num_costs, config.algo.cost_shaping)
                                    + tuple(extra_columns))
        self.dims = {'obs_dim': int(obs_dim), 'act_dim': int(act_dim)}
        if num_costs > 1:
            self.dims['num_costs'] = int(num_costs)
        torch.manual_seed(config.seed)
        self.algorithm = ConstrainedTrustRegion(obs_dim, act_dim, config.algo, action_low,
                                                action_high, max_episode_steps, num_costs)
        self.iteration = 0
        self.env_steps = 0
        self.wall_time = 0.0
        self.best: dict[str, Any] | None = None
        """The best safe iteration so far: iteration, episode_return, episode_costs,
        policy_version and the policy's state (the one that sampled that iteration)."""
        self.initialised_from: Path | None = None
        """The checkpoint whose networks this run started from (init_from), if any."""
        if self.resumed:
            self._restore()
        else:
            if init_from:
                self.initialised_from = self._initialise_from(init_from)
            # The iteration-0 checkpoint: from here on, a restart (resume: auto) continues.
            self.save()
        self._write_config(extra_config or {})
        # A resumed run's events after its checkpoint are dropped (those iterations are redone):
        # TensorBoard purges steps >= purge_step.
        self.tensorboard = (TensorBoardLog(self.out, self.progress.columns,
                                           self.env_steps + 1 if self.resumed else None)
                            if config.tensorboard else None)
        self._t_last = time.perf_counter()

    def _initialise_from(self, path: str | os.PathLike) -> Path:
        """Take another run's policy and critics (fine-tuning); return its checkpoint file.

        path: a run directory (its checkpoints/last.pt) or a checkpoint. The networks must have
        this run's sizes; the version, multipliers and optimiser start afresh.
        """
        source = Path(path)
        if source.is_dir():
            source = source / 'checkpoints' / 'last.pt'
        payload = load_checkpoint(source, required=('algorithm', 'dims'))
        if 'config' in payload:
            from cpo_ros.sim.make import task_of_env_id

            theirs = checkpoint_config(payload, source)

            def task(config: TrainConfig) -> str | None:  # a project id is its task
                return config.task or task_of_env_id(config.env_id or '') or config.env_id

            if task(theirs) != task(self.config):
                # The same sizes do not make the same task: Ring's policy is no Circle's start.
                raise CheckpointError(
                    f'checkpoint {source}: trained on {theirs.task or theirs.env_id}, this run '
                    f'is {self.config.task or self.config.env_id}: init_from takes a run of '
                    f'the same task')
        if payload['dims'] != self.dims:
            raise CheckpointError(f'checkpoint {source}: dimensions {payload["dims"]} do not '
                                  f'match this run {self.dims}')
        state = payload['algorithm']
        try:
            self.algorithm.policy.load_state_dict(state['policy'])
            self.algorithm.reward_critic.load_state_dict(state['reward_critic'])
            self.algorithm.cost_critics.load_state_dict(state['cost_critics'])
        except (KeyError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f'checkpoint {source}: its networks do not fit this run '
                                  f'(hidden_sizes, value_hidden_sizes): {exc}') from exc
        return source

    @property
    def done(self) -> bool:
        """Return whether the iteration budget is spent."""
        return self.iteration >= self.config.iterations

    def record(self, rollout: dict[str, np.ndarray], timings: dict[str, float] | None = None,
               episode_cost: float | np.ndarray | None = None,
               policy_ready: Callable[[], None] | None = None) -> dict[str, Any]:
        """Update from a rollout, append the progress row, checkpoint when due; return the row.

        All or nothing: on any exception (a bad rollout, a numerical failure, a full disk) the
        run is put back as it was before the call and the exception propagates.
        policy_ready: see ConstrainedTrustRegion.update (the time spent in it is not counted
        in update_time_s).
        """
        before = self._snapshot()
        try:
            return self._record(rollout, dict(timings or {}), episode_cost, policy_ready)
        except BaseException:
            self._rollback(before)
            raise

    def _record(self, rollout: dict[str, np.ndarray], timings: dict[str, float],
                episode_cost: float | np.ndarray | None,
                policy_ready: Callable[[], None] | None) -> dict[str, Any]:
        sampled_by = copy.deepcopy(self.algorithm.policy.state_dict())
        t0 = time.perf_counter()
        metrics = self.algorithm.update(rollout, episode_cost, policy_ready)
        histograms = metrics.pop('histograms', {})
        timings['update_time_s'] = (time.perf_counter() - t0
                                    - metrics.get('time_policy_ready_s', 0.0))
        self.iteration += 1
        self.env_steps += int(metrics['samples'])
        now = time.perf_counter()
        elapsed = now - self._t_last
        self._t_last = now
        self.wall_time += elapsed
        # The return and cost measured on this batch are those of the policy that sampled it.
        safe = all(float(c) <= float(d) for c, d in zip(
            metrics['episode_costs'], metrics['cost_limits'], strict=True))
        new_best = safe and (self.best is None
                             or metrics['episode_return'] > self.best['episode_return'])
        if new_best:
            self.best = {'iteration': self.iteration,
                         'episode_return': float(metrics['episode_return']),
                         'episode_costs': [float(c) for c in metrics['episode_costs']],
                         'policy_version': int(metrics['policy_version']) - 1,
                         'policy': sampled_by}
        row = flatten_row({'iteration': self.iteration, 'env_steps': self.env_steps, **metrics,
                           'safe': int(safe),
                           'best_iteration': self.best['iteration'] if self.best else '',
                           **timings, 'wall_time_s': self.wall_time,
                           'steps_per_s': metrics['samples'] / max(elapsed, 1e-9)})
        self.progress.append(row)
        if new_best:
            self._save_best()
        if self.iteration % self.config.checkpoint_every == 0 or self.done:
            self.save()
        if self.tensorboard is not None:
            self.tensorboard.write(row, histograms)
        return row

    def _snapshot(self) -> dict[str, Any]:
        return {'algorithm': copy.deepcopy(self.algorithm.state_dict()),
                'iteration': self.iteration, 'env_steps': self.env_steps,
                'wall_time': self.wall_time, 'best': self.best,
                'torch_rng': torch.get_rng_state(), 't_last': self._t_last}

    def _rollback(self, snapshot: dict[str, Any]) -> None:
        # Memory first, files last: a file that cannot be put back (a full disk) leaves the
        # object consistent, and a restart resumes from last.pt, which was never touched.
        self.algorithm.load_state_dict(snapshot['algorithm'])
        torch.set_rng_state(snapshot['torch_rng'])
        self.env_steps, self.wall_time = snapshot['env_steps'], snapshot['wall_time']
        self._t_last = snapshot['t_last']
        best_changed = self.best is not snapshot['best']
        self.best = snapshot['best']
        counted = self.iteration != snapshot['iteration']
        self.iteration = snapshot['iteration']
        if counted:
            self.progress.truncate(self.iteration)
        if best_changed:
            self._save_best()

    def save(self) -> Path:
        """Write the checkpoint of the current iteration atomically."""
        return save_checkpoint(self.checkpoint_path, {
            'config': self.config.to_dict(), 'dims': self.dims, 'iteration': self.iteration,
            'env_steps': self.env_steps, 'wall_time_s': self.wall_time,
            'algorithm': self.algorithm.state_dict(), 'torch_rng': torch.get_rng_state(),
            'best': self.best})

    def _save_best(self) -> None:
        """Write checkpoints/best.pt from self.best (removed when there is no safe iteration)."""
        if self.best is None:
            self.best_path.unlink(missing_ok=True)
            return
        best = self.best
        save_checkpoint(self.best_path, {
            'config': self.config.to_dict(), 'dims': self.dims, 'kind': 'best',
            'iteration': best['iteration'], 'policy_version': best['policy_version'],
            'episode_return': best['episode_return'], 'episode_costs': best['episode_costs'],
            'algorithm': {'policy': best['policy']}})

    def finish(self, save: bool = True) -> Path:
        """Write the last checkpoint (unless save is False) and curves.png; return the plot."""
        title = f'{self.config.algo.algo.upper()} on {self.config.task or self.config.env_id}'
        if self.tensorboard is not None:
            self.tensorboard.close()  # the next write, after a resume in-process, reopens
        try:
            if save:
                self.save()
        finally:  # the plot even when the checkpoint cannot be written (a full disk)
            plot = plot_curves(self.progress.path, self.out / 'curves.png', title,
                               self.cost_names)
        return plot

    def summary(self) -> str:
        """Return where the results are, and the best safe iteration."""
        best = (f'best safe iteration {self.best["iteration"]} (return '
                f'{self.best["episode_return"]:.2f}, cost '
                f'{", ".join(f"{c:.2f}" for c in self.best["episode_costs"])}): '
                f'{self.best_path}' if self.best else
                'no iteration met every cost limit (no best.pt)')
        written = [name for name in ('progress.csv', 'config.yaml', 'curves.png')
                   if (self.out / name).exists()]
        if self.checkpoint_path.exists():
            written.append(f'checkpoint {self.checkpoint_path}')
        return (f'iteration {self.iteration}/{self.config.iterations}; results in {self.out}: '
                f'{", ".join(written) or "none written"}; {best}')

    def _restore(self) -> None:
        payload = load_checkpoint(self.checkpoint_path, ('config', 'dims', 'iteration',
                                                         'env_steps', 'algorithm', 'torch_rng'))
        saved = checkpoint_config(payload, self.checkpoint_path).to_dict()
        try:
            _comparable(saved)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f'checkpoint {self.checkpoint_path}: configuration does not '
                                  f'load ({exc})') from exc
        # The settings first: `task: circle -> corridor` says more than the sizes it changes.
        diffs = config_differences(_comparable(saved), _comparable(self.config.to_dict()))
        if not diffs and payload['dims'] != self.dims:
            raise CheckpointError(f'checkpoint {self.checkpoint_path}: observation/action sizes '
                                  f'{payload["dims"]} do not match this run {self.dims}')
        if not diffs and int(payload['iteration']) > self.config.iterations:
            raise CheckpointError(
                f'checkpoint {self.checkpoint_path} has {payload["iteration"]} iterations done, '
                f'more than iterations = {self.config.iterations}: set iterations >= '
                f'{payload["iteration"]} to continue it, or start a new run (another out)')
        if diffs:
            raise CheckpointError(
                f'checkpoint {self.checkpoint_path} was trained with another configuration '
                f'(checkpoint -> this run): {"; ".join(diffs)}. Resume with the same settings, '
                f'or start a new run: `cpo-ros train` --overwrite or another --out; the '
                f'learner node its resume or out parameter (-p learner:out:=runs/<name>, or '
                f'learner: out: in a params_file)')
        try:
            self.algorithm.load_state_dict(payload['algorithm'])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f'checkpoint {self.checkpoint_path}: {exc}') from exc
        try:
            torch.set_rng_state(payload['torch_rng'])
        except (TypeError, RuntimeError) as exc:
            raise CheckpointError(f'checkpoint {self.checkpoint_path}: torch_rng is no random '
                                  f'state ({exc})') from exc
        self.iteration = int(payload['iteration'])
        self.env_steps = int(payload['env_steps'])
        self.wall_time = float(payload.get('wall_time_s', 0.0))
        self.best = payload.get('best')
        self.progress.truncate(self.iteration)
        # best.pt may be newer than last.pt (a stop between the two writes): last.pt decides.
        self._save_best()

    def _write_config(self, extra: dict[str, Any]) -> None:
        data = {'config': self.config.to_dict(), **self.dims, **extra,
                'versions': {'cpo_ros': __version__, 'python': platform.python_version(),
                             'torch': str(torch.__version__), 'numpy': np.__version__}}
        with atomic_path(self.out / 'config.yaml') as tmp, open(tmp, 'w') as f:
            yaml.safe_dump(data, f, sort_keys=False)
