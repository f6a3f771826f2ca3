"""Direct training without ROS: sample N envs in-process, update, log (the fastest path)."""

from collections.abc import Callable
import time
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cpo_ros.training.config import TrainConfig
from cpo_ros.training.run import TrainingRun
from cpo_ros.training.settings import task_options
from cpo_ros.training.worker import RolloutWorker


def iteration_seed(seed: int, iteration: int) -> int:
    """Return the seed of an iteration's env resets and action noise (exact resume needs it)."""
    return (seed * 1_000_003 + iteration * 7_919) % (2 ** 31)


def summary_line(row: dict[str, Any]) -> str:
    """Return the one-line report of an iteration (shared by the trainer and the learner)."""
    costs = row.get('episode_costs') or [row['episode_cost']]
    limits = row.get('cost_limits') or [row['cost_limit']]
    cost = ', '.join(f'{float(c):6.2f} / {float(d):.2f}' for c, d in zip(costs, limits,
                                                                        strict=True))
    return (f"it {row['iteration']:4d} | steps {row['env_steps']:9d} | "
            f"return {float(row['episode_return']):8.2f} | cost {cost} | "
            f"kl {float(row['kl']):.4f} | {row['case']:9s} |"
            f" {float(row['steps_per_s']):7.0f} steps/s")


def sample(env: Any, worker: RolloutWorker, obs: np.ndarray
           ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, float]]:
    """Step env with the worker until it hands out a rollout; return it, next obs, timings."""
    env_time = policy_time = 0.0
    rollout = None
    while rollout is None:
        t0 = time.perf_counter()
        action = worker.act(obs)
        t1 = time.perf_counter()
        obs, reward, cost, terminated, truncated, info = env.step(action)
        t2 = time.perf_counter()
        worker.record(reward, cost, terminated, truncated, info.get('final_obs', obs))
        rollout = worker.take_rollout(obs)
        policy_time += t1 - t0
        env_time += t2 - t1
    return rollout, obs, {'env_time_s': env_time, 'policy_time_s': policy_time}


def train(config: TrainConfig, resume: bool | str = 'fresh', show_progress: bool = True,
          on_iteration: Callable[[dict[str, Any]], None] | None = None) -> TrainingRun:
    """Run a whole training; return the finished run (its out dir holds every result).

    resume is a run-directory mode of core.run ('fresh', 'resume', 'auto', 'overwrite'; True
    means 'resume'). An interruption (KeyboardInterrupt: Ctrl-C, or SIGTERM as the CLI maps it)
    still writes the checkpoint, curves.png and the summary, then propagates.
    """
    from cpo_ros.sim.make import make_vec_env

    config.validate()
    torch.set_num_threads(config.torch_threads)
    env = make_vec_env(task=config.task, env_id=config.env_id, num_envs=config.num_envs,
                       seed=config.seed, env_workers=config.env_workers, **config.task_kwargs,
                       **profile_randomization(config))
    try:
        check_env_for_run(env, config)
    except BaseException:
        if hasattr(env, 'close'):
            env.close()
        raise
    space = env.single_action_space
    run = TrainingRun(config, env.obs_dim, env.act_dim, space.low, space.high,
                      max_episode_steps(env), resume=resume,
                      extra_config={'env': type(env).__name__,
                                    'cost_names': list(getattr(env, 'cost_names', ('cost',))),
                                    'task_options': task_options(config)},
                      num_costs=env.num_costs)
    # The next rollout is sampled while the critics fit: in a process of their own, so the two
    # do not take turns on the GIL.
    run.algorithm.fit_critics_in_process()
    if show_progress and run.moved_aside is not None:
        print(f'moved the previous run aside to {run.moved_aside}')
    if show_progress and run.resumed:
        print(f'resuming {run.out} at iteration {run.iteration}')
    worker = RolloutWorker(config.num_envs, env.obs_dim, env.act_dim, config.steps_per_env,
                           num_costs=env.num_costs)
    bar = tqdm(total=config.iterations, initial=run.iteration, disable=not show_progress,
               unit='it', dynamic_ncols=True)
    interrupted = False

    def sample_iteration(iteration: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        seed = iteration_seed(config.seed, iteration)
        obs = env.reset(seed=seed)
        worker.reseed(seed)
        worker.use_policy(run.algorithm.policy, run.algorithm.version)
        t0 = time.perf_counter()
        rollout, _, timings = sample(env, worker, obs)
        timings['sample_time_s'] = time.perf_counter() - t0
        return rollout, timings

    try:
        ahead: dict[str, Any] = {}
        while not run.done:
            rollout, timings = ahead.pop('sample', None) or sample_iteration(run.iteration)

            def sample_ahead() -> None:
                # The next iteration's rollout, with the same seed and policy as after the
                # update, sampled while the critics finish fitting on the other core. An
                # interruption here is raised once this iteration is recorded.
                if run.iteration + 1 < config.iterations:
                    try:
                        ahead['sample'] = sample_iteration(run.iteration + 1)
                    except BaseException as exc:  # noqa: BLE001 - re-raised below
                        ahead['error'] = exc

            row = run.record(rollout, timings, policy_ready=sample_ahead)
            bar.update(1)
            if show_progress:
                bar.write(summary_line(row))
            if on_iteration is not None:
                on_iteration(row)
            if 'error' in ahead:
                raise ahead.pop('error')
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        bar.close()
        run.algorithm.close()
        if hasattr(env, 'close'):
            env.close()  # env workers, when it has them
        # Also on Ctrl-C, SIGTERM or an error: the work done so far gets its plot and summary.
        run.finish()
        if show_progress or interrupted:
            stopped = 'interrupted at ' if interrupted else ''
            print(f'{stopped}{run.summary()}', flush=True)
            if interrupted:
                print(f'continue with: cpo-ros train ... --out {run.out} --resume', flush=True)
    return run


def profile_randomization(config: TrainConfig) -> dict[str, Any]:
    """Return make_vec_env's randomization argument of the run's robot profile, if it has one."""
    from cpo_ros.deploy.profile import randomization_kwargs
    from cpo_ros.sim.vec_env import DomainRandomization

    kwargs = randomization_kwargs(config.robot)
    if not kwargs or config.task is None or DomainRandomization(**kwargs) == (
            DomainRandomization()):
        return {}
    return {'randomization': DomainRandomization(**kwargs)}


def check_env_for_run(env: Any, config: TrainConfig) -> None:
    """Raise ValueError for an env this run could not measure, before the run directory exists.

    Every iteration starts each env afresh: an env's share of the batch shorter than an episode
    finishes no episode, so J_C (a per-episode cost) would never be measured. A Gymnasium id
    takes one reset and one step here, so an env that cannot run (no info['cost']) fails
    before a run directory is made.
    """
    limit = max_episode_steps(env)
    per_env = config.steps_per_env
    if limit and per_env < limit:
        raise ValueError(
            f'steps_per_iteration {config.steps_per_iteration} over num_envs {config.num_envs} '
            f'gives each env {per_env} steps an iteration, fewer than an episode '
            f'({limit} steps): no episode would finish and the cost would never be measured. '
            f'Set steps_per_iteration >= {limit * config.num_envs} or num_envs <= '
            f'{max(1, config.steps_per_iteration // limit)}')
    if config.env_id is not None:
        space = env.single_action_space
        env.reset(seed=config.seed)
        action = np.clip(np.zeros(space.shape), space.low, space.high)  # a valid action
        centre = np.tile(action.reshape(1, -1), (env.num_envs, 1)).astype(np.float32)
        env.step(centre)


def max_episode_steps(env: Any) -> int | None:
    """Return the env's episode step limit when it has one."""
    task = getattr(env, 'task', None)
    limit = getattr(task, 'max_episode_steps', None) or getattr(env, 'max_episode_steps', None)
    return int(limit) if limit else None
