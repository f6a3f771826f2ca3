"""Make a vectorised env for the trainer: a project task, any Gymnasium id, Safety-Gymnasium."""

from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from cpo_ros.sim.point_circle import VecPointCircle
from cpo_ros.tasks import circle, goal
from cpo_ros.tasks.circle import CircleTask
from cpo_ros.tasks.gather import GatherTask, VecPointGather
from cpo_ros.tasks.goal import GoalTask, VecPointGoal


class VecEnv(Protocol):
    """What the trainer needs of an env: VecPointCircle's interface."""

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


TASK_DEFAULTS: dict[str, Any] = {
    'circle': CircleTask(),
    'circle_long': CircleTask(max_episode_steps=500),
    'gather': GatherTask(),
    'goal': GoalTask(),
}
"""Each project task's constants; task options (task_kwargs) override them field by field.
circle_long is Point-Circle with benchmark-scale episodes: the paper's geometry, 500 steps."""

_VEC_CLASSES = {'circle': VecPointCircle, 'circle_long': VecPointCircle,
                'gather': VecPointGather, 'goal': VecPointGoal}

TASKS: dict[str, Callable[..., VecEnv]] = {
    name: (lambda num_envs, seed, _name=name, **kw: _VEC_CLASSES[_name](
        num_envs, TASK_DEFAULTS[_name], seed=seed, **kw))
    for name in TASK_DEFAULTS}
"""Vectorised env factories of the project tasks: TASKS[name](num_envs, seed, **options)."""

TASK_IDS = {'circle': 'cpo_ros/PointCircle-v0', 'circle_long': 'cpo_ros/PointCircleLong-v0',
            'gather': 'cpo_ros/PointGather-v0', 'goal': 'cpo_ros/PointGoal-v0'}
"""The Gymnasium id of each project task (cpo_ros.sim registers them)."""

DEFAULT_COST_LIMITS = {'circle': 5.0, 'circle_long': 25.0, 'gather': 0.1, 'goal': 50.0}
"""The paper's limits (5 steps outside the strip, 0.1 bombs per trajectory) and 5% of the
steps of the long-horizon tasks (500 and 1000 steps)."""
SPEED_COST_LIMIT = {'circle': 10.0, 'circle_long': 100.0}
"""Default limit of Circle's speed constraint: steps above the speed limit per episode (20%)."""


def task_options(task: str, **task_kwargs: Any) -> dict[str, Any]:
    """Return a project task's constants with the options applied (for exports and reports)."""
    return {**asdict(TASK_DEFAULTS[task]), **task_kwargs}


def observation_labels(task: str, **task_kwargs: Any) -> tuple[str, ...] | None:
    """Return the names of a project task's observation entries (None: not named yet)."""
    constants = replace(TASK_DEFAULTS[task], **{k: v for k, v in task_kwargs.items()
                                               if k in TASK_DEFAULTS[task].__dataclass_fields__})
    if isinstance(constants, CircleTask):
        return circle.OBS_LABELS
    if isinstance(constants, GoalTask):
        return goal.ROBOT_LABELS + goal.sensor_labels(constants)
    return None


def task_of_env_id(env_id: str) -> str | None:
    """Return the project task registered under a Gymnasium id, or None."""
    return next((task for task, known in TASK_IDS.items() if known == env_id), None)


def default_cost_limits(task: str | None = None, env_id: str | None = None,
                        **task_kwargs: Any) -> tuple[float, ...] | None:
    """Return a task's default limits, one per constraint.

    None for ids the project does not know: their users must choose a limit.
    """
    task = task if task is not None else task_of_env_id(env_id or '')
    if task not in DEFAULT_COST_LIMITS:
        return None
    limits = (DEFAULT_COST_LIMITS[task],)
    if task in SPEED_COST_LIMIT and float(task_kwargs.get('speed_limit', 0.0)) > 0.0:
        limits += (SPEED_COST_LIMIT[task],)
    return limits


class GymVecEnv:
    """Step Gymnasium envs one after the other with VecPointCircle's auto-reset semantics.

    Accepts envs whose step returns (obs, reward, terminated, truncated, info) with
    info['cost'], and Safety-Gymnasium envs whose step returns (obs, reward, cost, terminated,
    truncated, info). The cost must be one number per step (one constraint).
    """

    def __init__(self, env_fns: list[Callable[[], gym.Env]], env_id: str, seed: int = 0) -> None:
        self.envs = [fn() for fn in env_fns]
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
        self.seed = seed

    def _flat(self, obs: Any) -> np.ndarray:
        return np.asarray(obs, dtype=np.float32).reshape(self.obs_dim)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every env (env i seeded with seed + i); return observations (N, obs_dim)."""
        base = self.seed if seed is None else seed
        return np.stack([self._flat(env.reset(seed=base + i)[0])
                         for i, env in enumerate(self.envs)])

    def step(self, actions: np.ndarray):
        """Step every env; see VecPointCircle.step for what returns."""
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (self.num_envs, self.act_dim):
            raise ValueError(f'action has shape {actions.shape}, expected '
                             f'({self.num_envs}, {self.act_dim})')
        n = self.num_envs
        obs = np.zeros((n, self.obs_dim), np.float32)
        final_obs = np.zeros_like(obs)
        reward, cost = np.zeros(n, np.float32), np.zeros(n, np.float32)
        terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
        shape = self.single_action_space.shape
        for i, env in enumerate(self.envs):
            out = env.step(actions[i].reshape(shape))
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
                             f'Python 3.10 environment, see "Safety-Gymnasium" in the '
                             f'README') from exc
        return partial(safety_gymnasium.make, env_id, **kwargs)
    # Gymnasium's passive checker rejects the 6-tuple step of safety-style envs. A partial, not
    # a lambda: env workers receive the factory pickled.
    return partial(gym.make, env_id, disable_env_checker=True, **kwargs)


def check_env_id(env_id: str) -> None:
    """Raise ValueError unless env_id is registered with Gymnasium (or a Safety-Gymnasium id)."""
    import cpo_ros.sim  # noqa: F401 - registers the project's own ids
    if not env_id.startswith('Safety') and env_id not in gym.registry:
        raise ValueError(f'unknown env id {env_id!r}: not registered with Gymnasium (project '
                         f'tasks: {sorted(TASKS)}; cpo_ros ids: '
                         f'{sorted(k for k in gym.registry if k.startswith("cpo_ros/"))})')


def make_vec_env(task: str | None = None, env_id: str | None = None, num_envs: int = 1,
                 seed: int = 0, env_workers: int = 1, **task_kwargs: Any) -> VecEnv:
    """Return num_envs copies of a project task ('circle') or of a Gymnasium/Safety id.

    env_workers >= 2 steps an id's envs in that many processes (cpo_ros.sim.gym_workers).
    """
    if (task is None) == (env_id is None):
        raise ValueError('give exactly one of task and env_id')
    if task is not None:
        if task not in TASKS:
            raise ValueError(f'unknown task {task!r}: the project has {sorted(TASKS)}')
        if env_workers != 1:
            raise ValueError(f'env_workers = {env_workers}: the project task {task} steps all '
                             f'its robots in one MuJoCo model, in this process (env_workers '
                             f'is for --env-id envs; set it to 1)')
        return TASKS[task](num_envs, seed, **task_kwargs)
    check_env_id(env_id)
    factory = _gym_factory(env_id, task_kwargs)
    if env_workers != 1:
        from cpo_ros.sim.gym_workers import GymWorkerVecEnv
        return GymWorkerVecEnv(factory, num_envs, env_id, seed, env_workers)
    return GymVecEnv([factory] * num_envs, env_id, seed)
