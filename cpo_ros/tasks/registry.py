"""Find a task by name, by dotted path, or among installed packages; refuse bad definitions.

Three doors, as Gymnasium's registry: a built-in name ('circle'), a dotted path
('my_pkg.tasks:Corridor', imported when asked) and the `cpo_ros.tasks` entry-point group, through
which a pip- or colcon-installed package adds its tasks by name. Every task is checked once
before use (check_task_class): a bad definition raises TaskDefinitionError naming the task's path
and what is wrong, which the CLI and the nodes turn into exit code 2.
"""

import difflib
from functools import cache
import importlib
from importlib import metadata
from typing import Any

import numpy as np

from cpo_ros.tasks.base import check_observation, check_start, check_step, Task, TaskParams

ENTRY_POINT_GROUP = 'cpo_ros.tasks'
"""Installed packages add tasks here: `[project.entry-points."cpo_ros.tasks"] name = "pkg:Cls"`."""

BUILTIN = {
    'circle': 'cpo_ros.tasks.circle:Circle',
    'circle_long': 'cpo_ros.tasks.circle:CircleLong',
    'gather': 'cpo_ros.tasks.gather:Gather',
    'goal': 'cpo_ros.tasks.goal:Goal',
}
"""The tasks that come with cpo_ros, by name."""

DEFAULT_TASK = 'circle'
"""The task of a run or a graph that names none (the CPO paper's Point-Circle)."""

GYM_IDS = {'circle': 'cpo_ros/PointCircle-v0', 'circle_long': 'cpo_ros/PointCircleLong-v0',
           'gather': 'cpo_ros/PointGather-v0', 'goal': 'cpo_ros/PointGoal-v0'}
"""The Gymnasium id of each built-in task (cpo_ros.sim registers them; any task also runs as
cpo_ros/Task-v0 with task=...)."""

RESERVED_NAMES = ('x', 'y', 'yaw', 'v', 'w', 'reward', 'cost', 'terminated', 'truncated', 'seq')
"""Fields of the batched state every task shares: no sensor may take one of these names."""

_OVERRIDES = ('observation_labels', 'default_cost_limits', 'reset', 'observation', 'step')
"""What every task must write itself (the rest has defaults in Task)."""


class TaskDefinitionError(ValueError):
    """A task that cannot be used; the message names its path and what is wrong."""


class TaskRuntimeError(ValueError):
    """A task that failed while it ran: it raised, or gave values that cannot be used.

    The message names its path, the call and, for an exception, the line that raised it.
    """


class UnknownTaskError(ValueError):
    """A task name that no door knows; the message lists the close matches."""


def is_path(name: str) -> bool:
    """Return whether name is a dotted path 'module:Class' rather than a registered name."""
    return ':' in name


def installed() -> dict[str, str]:
    """Return the tasks of the cpo_ros.tasks entry-point group: name -> 'module:Class'."""
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def registered() -> dict[str, str]:
    """Return every task by name: the built-in ones, then the installed ones."""
    out = dict(BUILTIN)
    for name, target in installed().items():
        out.setdefault(name, target)  # a package cannot replace a built-in task
    return out


def target_of(name: str) -> str:
    """Return the 'module:Class' path of a task name or path; UnknownTaskError with matches."""
    if is_path(name):
        return name
    known = registered()
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f'did you mean {" or ".join(repr(c) for c in close)}? ' if close else ''
    raise UnknownTaskError(f'unknown task {name!r}: {hint}registered tasks: {sorted(known)} '
                           f"(or give a dotted path 'package.module:Class')")


def _import(target: str) -> Any:
    module_name, _, attr = target.partition(':')
    if not module_name or not attr:
        raise TaskDefinitionError(f'task {target}: a dotted path is module:Class, e.g. '
                                  f'my_pkg.tasks:Corridor')
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the task's fault
        raise TaskDefinitionError(f'task {target}: does not import: {type(exc).__name__}: '
                                  f'{exc}') from exc
    obj = module
    for part in attr.split('.'):
        if not hasattr(obj, part):
            raise TaskDefinitionError(f'task {target}: module {module_name} has no {attr!r}')
        obj = getattr(obj, part)
    return obj


def load_task_class(name: str) -> type[Task]:
    """Return the checked Task class of a name or a dotted path.

    UnknownTaskError for a name nobody registered, TaskDefinitionError for a bad definition.
    """
    target = target_of(name)
    cls = _import(target)
    check_task_class(cls, target)
    return cls


def _fail(target: str, what: str) -> None:
    raise TaskDefinitionError(f'task {target}: {what}')


@cache
def check_task_class(cls: Any, target: str) -> None:
    """Raise TaskDefinitionError unless cls is a usable Task; run it on two robots once."""
    from dataclasses import is_dataclass

    if not (isinstance(cls, type) and issubclass(cls, Task)):
        _fail(target, f'{cls!r} is not a subclass of cpo_ros.tasks.base.Task')
    missing = [m for m in _OVERRIDES if getattr(cls, m) is getattr(Task, m)]
    if missing:
        _fail(target, f'missing method(s) {", ".join(missing)} (every task writes '
                      f'{", ".join(_OVERRIDES)})')
    if not (is_dataclass(cls.Params) and issubclass(cls.Params, TaskParams)):
        _fail(target, 'Params is not a dataclass subclass of cpo_ros.tasks.base.TaskParams')
    n = 2
    try:
        task = cls(cls.Params(), num_envs=n)
    except Exception as exc:  # noqa: BLE001
        _fail(target, f'does not build with its default parameters: {type(exc).__name__}: {exc}')
    names, sensors = tuple(task.cost_names), tuple(task.sensor_labels)
    if not names or not all(isinstance(c, str) and c.isidentifier() for c in names):
        _fail(target, f'cost_names {names!r}: give one or more names (identifiers)')
    clash = sorted({c for c in names if names.count(c) > 1 or c in sensors})
    if clash:
        _fail(target, f'cost-name clash: {clash} in cost_names {names} (names must be unique '
                      f'and differ from the sensor labels {sensors})')
    bad_sensors = sorted({s for s in sensors if sensors.count(s) > 1 or s in RESERVED_NAMES
                          or s.startswith('final_') or ',' in s})
    if bad_sensors:
        _fail(target, f'sensor labels {bad_sensors} repeat or take a reserved name')
    labels = tuple(task.observation_labels)
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated or not all(isinstance(x, str) and x for x in labels):
        # An export names each observation entry; a deploy reads them by name.
        _fail(target, f'observation_labels {labels!r}: give one unique non-empty name per '
                      f'entry (repeated: {repeated})')
    limits = tuple(task.default_cost_limits)
    if len(limits) != len(names) or not all(np.isfinite(limits)) or min(limits) < 0:
        _fail(target, f'default_cost_limits {limits} do not give one limit >= 0 per cost '
                      f'{names}')
    rng = np.random.default_rng(0)
    try:
        start = task.reset(np.arange(n), rng)
    except Exception as exc:  # noqa: BLE001
        _fail(target, f'reset() raised {type(exc).__name__}: {exc}')
    try:
        start = check_start(start, n)
    except ValueError as exc:
        _fail(target, str(exc))
    twist = np.zeros((n, 2))
    try:
        scan = ({} if task.scan_spec is None
                else {'scan': np.full((n, task.scan_spec.num_rays), np.inf)})
        readings = np.asarray(task.sensors(start, **scan))
        obs = np.asarray(task.observation(start, twist, readings))
        result = task.step(start, twist, rng)
    except Exception as exc:  # noqa: BLE001
        _fail(target, f'raised on two robots at their start: {type(exc).__name__}: {exc}')
    if readings.shape != (n, len(sensors)):
        _fail(target, f'sensors() has shape {readings.shape}, expected ({n}, {len(sensors)}) '
                      f'for sensor_labels')
    try:
        check_observation(obs, n, task.obs_dim)
    except ValueError as exc:
        _fail(target, f'{exc} (one column per observation_labels) on two robots at their '
                      f'start')
    try:
        check_step(result, obs, n, len(names), task.obs_dim)
    except ValueError as exc:
        _fail(target, f'{exc} on two robots at their start')


def make_task(name: str, num_envs: int = 1, **options: Any) -> Task:
    """Return a task by name or path with its parameters set from options (validated)."""
    from dataclasses import fields, replace

    cls = load_task_class(name)
    known = {f.name for f in fields(cls.Params)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f'unknown {name} settings: {unknown} (its parameters: '
                         f'{sorted(known)})')
    return cls(replace(cls.Params(), **options), num_envs)


def describe_tasks() -> list[dict[str, Any]]:
    """Return each registered task's name, path, origin, costs and default limits."""
    from_packages = installed()
    rows = []
    for name, target in registered().items():
        row: dict[str, Any] = {'name': name, 'path': target,
                               'origin': 'built-in' if name in BUILTIN else 'installed'}
        try:
            task = load_task_class(name)()
            row.update(costs=list(task.cost_names), limits=list(task.default_cost_limits),
                       sensors=len(task.sensor_labels), obs_dim=task.obs_dim,
                       episode=task.max_episode_steps, doc=(task.__doc__ or '').split('\n')[0])
        except ValueError as exc:
            row['error'] = str(exc)
        rows.append(row)
    for name, target in from_packages.items():
        if name in BUILTIN and target != BUILTIN[name]:
            rows.append({'name': name, 'path': target, 'origin': 'installed',
                         'error': f'shadowed by the built-in task {name!r}'})
    return rows
