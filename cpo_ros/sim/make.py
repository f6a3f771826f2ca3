"""Make a vectorised env for the trainer: a project task, any Gymnasium id, Safety-Gymnasium."""

from collections.abc import Callable
from dataclasses import asdict
import difflib
from functools import partial
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from cpo_ros.sim.robot import apply_overrides, RobotConfig
from cpo_ros.sim.vec_env import DomainRandomization, TaskEnv, VecTaskEnv
from cpo_ros.tasks import registry
from cpo_ros.tasks.base import Task


class VecEnv(Protocol):
    """What the trainer needs of an env: VecTaskEnv's interface."""

    num_envs: int
    obs_dim: int
    act_dim: int
    num_costs: int
    """Constraints: step's cost is (N,) for one, (N, num_costs) for several."""
    single_observation_space: gym.spaces.Box
    single_action_space: gym.spaces.Box

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every env; return observations (N, obs_dim)."""

    def step(self, actions: np.ndarray) -> tuple:
        """Return obs, reward, cost, terminated, truncated, info (auto-reset, final_obs)."""


TASK_IDS = registry.GYM_IDS


def make_task(task: str, num_envs: int = 1, robot: RobotConfig | None = None,
              **options: Any) -> tuple[Task, RobotConfig]:
    """Return (task, robot) with options applied to whichever of the two owns each.

    Unknown options are an error naming the task; both are validated.
    """
    cls = registry.load_task_class(task)
    params, robot = apply_overrides(cls.Params(), robot or RobotConfig(), options, task)
    try:
        return cls(params, num_envs), robot
    except ValueError as exc:  # the task's own check() of its parameters
        raise ValueError(f'task {task} parameters: {exc}') from exc


def task_options(task: str, **task_kwargs: Any) -> dict[str, Any]:
    """Return a task's parameters with the options applied (for exports and reports)."""
    cls = registry.load_task_class(task)
    params = asdict(cls.Params())
    return {**params, **{k: v for k, v in task_kwargs.items() if k in params}}


def observation_labels(task: str, **task_kwargs: Any) -> tuple[str, ...]:
    """Return the names of a task's observation entries."""
    return make_task(task, **task_kwargs)[0].observation_labels


def task_of_env_id(env_id: str) -> str | None:
    """Return the built-in task registered under a Gymnasium id, or None."""
    return next((task for task, known in TASK_IDS.items() if known == env_id), None)


def default_cost_limits(task: str | None = None, env_id: str | None = None,
                        **task_kwargs: Any) -> tuple[float, ...] | None:
    """Return a task's default limits, one per constraint.

    None for Gymnasium ids the project does not know: their users must choose a limit.
    """
    task = task if task is not None else task_of_env_id(env_id or '')
    if task is None:
        return None
    return tuple(float(x) for x in make_task(task, **task_kwargs)[0].default_cost_limits)


class GymVecEnv:
    """Step Gymnasium envs one after the other with VecTaskEnv's auto-reset semantics.

    Accepts envs whose step returns (obs, reward, terminated, truncated, info) with
    info['cost'], and Safety-Gymnasium envs whose step returns (obs, reward, cost, terminated,
    truncated, info). The cost must be one number per step (one constraint).
    """

    def __init__(self, env_fns: list[Callable[[], gym.Env]], env_id: str, seed: int = 0) -> None:
        try:
            self.envs = [fn() for fn in env_fns]
        except (ImportError, gym.error.Error) as exc:
            # A missing extra (gymnasium[mujoco] needs imageio, ...) or a bad option: named.
            raise ValueError(f'{env_id}: the env does not construct here '
                             f'({type(exc).__name__}: {exc})') from exc
        self.env_id = env_id
        self.num_envs = len(self.envs)
        first = self.envs[0]
        for name, space in (('observation', first.observation_space),
                            ('action', first.action_space)):
            if not isinstance(space, gym.spaces.Box):
                raise ValueError(f'{env_id}: only Box spaces are supported, its {name} space is '
                                 f'{space}')
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.obs_dim = int(np.prod(first.observation_space.shape))
        self.act_dim = int(np.prod(first.action_space.shape))
        self.cost_names, self.num_costs = ('cost',), 1
        spec = getattr(first, 'spec', None)
        self.max_episode_steps = getattr(spec, 'max_episode_steps', None)
        if self.max_episode_steps is None and isinstance(first.unwrapped, TaskEnv):
            # The project's ids truncate at their task's own length, not Gymnasium's.
            self.max_episode_steps = first.unwrapped.task.max_episode_steps
        self.seed = seed

    def _flat(self, obs: Any) -> np.ndarray:
        return np.asarray(obs, dtype=np.float32).reshape(self.obs_dim)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every env (env i seeded with seed + i); return observations (N, obs_dim)."""
        base = self.seed if seed is None else seed
        return np.stack([self._flat(env.reset(seed=base + i)[0])
                         for i, env in enumerate(self.envs)])

    def step(self, actions: np.ndarray):
        """Step every env; see VecTaskEnv.step for what returns."""
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (self.num_envs, self.act_dim):
            raise ValueError(f'action has shape {actions.shape}, expected '
                             f'({self.num_envs}, {self.act_dim})')
        n = self.num_envs
        obs = np.zeros((n, self.obs_dim), np.float32)
        final_obs = np.zeros_like(obs)
        reward, cost = np.zeros(n, np.float32), np.zeros(n, np.float32)
        terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
        space = self.single_action_space
        # The policy's Gaussian reaches beyond the Box: each env gets its action clipped to
        # the Box (the rollout keeps the sampled one for the log-probabilities).
        actions = np.clip(actions.reshape((n, *space.shape)), space.low, space.high).astype(
            space.dtype, copy=False)
        for i, env in enumerate(self.envs):
            out = env.step(actions[i])
            if len(out) == 6:
                o, r, c, te, tr, info = out
            elif len(out) == 5:
                o, r, te, tr, info = out
                if 'cost' not in info:
                    raise ValueError(f'{self.env_id}: step() info has no "cost" entry; the '
                                     f'trainer needs a cost per step')
                c = info['cost']
            else:
                raise ValueError(f'{self.env_id}: step() returned {len(out)} values, expected 5 '
                                 f'(with info["cost"]) or 6 (Safety-Gymnasium)')
            if np.size(c) != 1:
                raise ValueError(f'{self.env_id}: step() cost has shape {np.shape(c)}; '
                                 f'Gymnasium ids need one cost per step')
            obs[i], reward[i], cost[i] = self._flat(o), r, float(np.asarray(c).reshape(-1)[0])
            terminated[i], truncated[i] = te, tr
            if te or tr:
                final_obs[i] = obs[i]
                obs[i] = self._flat(env.reset()[0])
        return obs, reward, cost, terminated, truncated, {'final_obs': final_obs}


def _gym_factory(env_id: str, kwargs: dict[str, Any]) -> Callable[[], gym.Env]:
    if env_id.startswith('Safety'):
        try:
            import safety_gymnasium
        except (ImportError, ValueError) as exc:
            # 1.0.0 pins gymnasium 0.28.1 and mujoco 2.3.3 and imports on Python <= 3.10 only.
            raise ValueError(f'{env_id} is a Safety-Gymnasium id, and safety_gymnasium does not '
                             f'import here ({type(exc).__name__}: {exc}): it needs its own '
                             f'Python 3.10 environment, see "Safety-Gymnasium" in '
                             f'docs/training.md') from exc
        return partial(safety_gymnasium.make, env_id, **kwargs)
    # Gymnasium's passive checker rejects the 6-tuple step of safety-style envs. A partial, not
    # a lambda: env workers receive the factory pickled.
    return partial(gym.make, env_id, disable_env_checker=True, **kwargs)


def check_env_id(env_id: str) -> None:
    """Raise ValueError unless env_id is registered with Gymnasium (or a Safety-Gymnasium id).

    'module:EnvId' (Gymnasium's form) imports module first, which registers the id, as
    gym.make does in every env worker.
    """
    import importlib

    import cpo_ros.sim  # noqa: F401 - registers the project's own ids
    if ':' in env_id:
        module, _, env_id = env_id.partition(':')
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure, named
            raise ValueError(f'env id {module}:{env_id}: module {module!r} does not import '
                             f'({type(exc).__name__}: {exc})') from exc
    if not env_id.startswith('Safety') and env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f'did you mean {", ".join(close)}? ' if close else ''
        raise ValueError(f'unknown env id {env_id!r}: {hint}not registered with Gymnasium '
                         f'(project tasks: {sorted(registry.registered())}; cpo_ros ids: '
                         f'{sorted(k for k in gym.registry if k.startswith("cpo_ros/"))})')


def make_vec_env(task: str | None = None, env_id: str | None = None, num_envs: int = 1,
                 seed: int = 0, env_workers: int = 1, **task_kwargs: Any) -> VecEnv:
    """Return num_envs robots on a task (name or dotted path) or copies of a Gymnasium id.

    Task options are the task's parameters and RobotConfig fields; also robot (a RobotConfig),
    randomization (a DomainRandomization) and autoreset. env_workers >= 2 steps an id's envs
    in that many processes (cpo_ros.sim.gym_workers).
    """
    if (task is None) == (env_id is None):
        raise ValueError('give exactly one of task and env_id')
    if task is not None:
        if env_workers != 1:
            raise ValueError(f'env_workers = {env_workers}: the task {task} steps all its '
                             f'robots in one MuJoCo model, in this process (env_workers is for '
                             f'--env-id envs; set it to 1)')
        randomization = task_kwargs.pop('randomization', None)
        autoreset = task_kwargs.pop('autoreset', True)
        robot = task_kwargs.pop('robot', None)
        if randomization is not None and not isinstance(randomization, DomainRandomization):
            randomization = DomainRandomization(**randomization)
        instance, robot = make_task(task, num_envs, robot, **task_kwargs)
        return VecTaskEnv(instance, robot, seed=seed, autoreset=autoreset,
                          randomization=randomization)
    check_env_id(env_id)
    factory = _gym_factory(env_id, task_kwargs)
    if env_workers != 1:
        from cpo_ros.sim.gym_workers import GymWorkerVecEnv
        return GymWorkerVecEnv(factory, num_envs, env_id, seed, env_workers)
    return GymVecEnv([factory] * num_envs, env_id, seed)


def vec_env(task: str, num_envs: int = 1, seed: int = 0, **options: Any) -> VecTaskEnv:
    """Return num_envs robots on a task (make_vec_env with the task first)."""
    return make_vec_env(task=task, num_envs=num_envs, seed=seed, **options)
