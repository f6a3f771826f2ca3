"""Every training setting by one flat name, read from text, YAML or ROS parameters.

The names are the fields of the configuration dataclasses, found generically (a field added
to AlgoConfig is a setting at once): TrainConfig's (`iterations`, `seed`, ...), AlgoConfig's
(`gamma`, `hidden_sizes`, ...) and the task options, the fields of the task's constants and of
RobotConfig (`max_episode_steps`, `x_limit`, ...). The learner node declares its ROS
parameters under the same names, so `cpo-ros train --set gamma=0.99` and
`-p learner:gamma:=0.99` mean the same thing. Values are parsed by the field's type and then
checked by the dataclasses' own validate(), whose messages name the key and its allowed range.
"""

import ast
from dataclasses import dataclass, fields, is_dataclass, MISSING, replace
import difflib
from functools import cache
import inspect
from pathlib import Path
import textwrap
import types
import typing
from typing import Any

import yaml

from cpo_ros.training.config import AlgoConfig, TrainConfig

TASK_KEY_PREFIX = 'task.'
"""Task options may also be written task.<name> (e.g. task.max_episode_steps)."""
ALGO_KEY_PREFIX = 'algo.'
"""Update settings may also be written algo.<name> (e.g. algo.gamma)."""
_NOT_SETTINGS = ('algo', 'task_kwargs', 'robot')
"""TrainConfig fields that hold other settings rather than being one."""


@dataclass(frozen=True)
class Setting:
    """One setting: its flat name, where it goes, its type, default and documentation."""

    key: str
    owner: str
    """'train' (TrainConfig), 'algo' (AlgoConfig) or 'task' (TrainConfig.task_kwargs)."""
    type: Any
    default: Any
    doc: str


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Return the docstring written under each field of a dataclass (and its bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body
        for node, after in zip(body, body[1:] + [None], strict=True):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = ' '.join(after.value.value.split())
    return docs


def _settings_of(cls: type, owner: str, instance: Any = None,
                 skip: tuple[str, ...] = ()) -> list[Setting]:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    out = []
    for f in fields(cls):
        if f.name in skip or f.name.startswith('_'):
            continue
        if instance is not None:
            default = getattr(instance, f.name)
        elif f.default is not MISSING:
            default = f.default
        else:
            default = f.default_factory()  # type: ignore[misc]
        out.append(Setting(f.name, owner, hints[f.name], default, docs.get(f.name, '')))
    return out


def train_settings() -> list[Setting]:
    """Return the TrainConfig and AlgoConfig settings, in declaration order."""
    return (_settings_of(TrainConfig, 'train', skip=_NOT_SETTINGS)
            + _settings_of(AlgoConfig, 'algo'))


def task_settings(task: str) -> list[Setting]:
    """Return the options of a task (name or dotted path): its parameters, then the robot's."""
    from cpo_ros.sim.robot import RobotConfig
    from cpo_ros.tasks.registry import load_task_class

    params = load_task_class(task).Params
    return _settings_of(params, 'task') + _settings_of(RobotConfig, 'task')


def all_settings(task: str | None) -> dict[str, Setting]:
    """Return every setting of a run on task (None: a Gymnasium id, no task options)."""
    out = {s.key: s for s in train_settings()}
    for s in task_settings(task) if task is not None else []:
        if s.key in out:
            raise ValueError(f'task option {s.key} of {task} has the name of a training '
                             f'setting: rename one')
        out[s.key] = s
    return out


# ---------------------------------------------------------------------------------------------
# Values by type
# ---------------------------------------------------------------------------------------------

def _type_name(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return ' or '.join(_type_name(a) for a in args)
    if origin is tuple:
        inner = _type_name(args[0])
        example = '"5,10" or "[5, 10]"' if args[0] is float else '"64,32" or "[64, 32]"'
        return f'list of {inner} ({example})' if args[-1] is Ellipsis else (
            f'list of {len(args)} {inner}')
    return {bool: 'true/false', int: 'int', float: 'float', str: 'string',
            type(None): 'null'}.get(kind, getattr(kind, '__name__', str(kind)))


def _scalar(kind: type, value: Any) -> Any:
    """Return value as kind (bool, int, float, str) or raise TypeError."""
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        if kind is bool:
            lowered = text.lower()
            if lowered in ('true', 'yes', 'on', '1'):
                return True
            if lowered in ('false', 'no', 'off', '0'):
                return False
            raise TypeError
        loaded = yaml.safe_load(text) if text else None
        value = float(text) if kind is float and isinstance(loaded, str) else loaded
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if kind is int:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        raise TypeError
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise TypeError
    raise TypeError


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith('['):
            value = yaml.safe_load(text)
        else:
            return [part for part in (p.strip() for p in text.split(',')) if part]
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]  # one layer, one limit
    raise TypeError


def _null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in
                             ('', 'null', 'none', '~'))


def coerce(kind: Any, value: Any) -> Any:
    """Return value (text, YAML or ROS data) as the type kind, or raise TypeError."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and _null(value):
            return None
        scalars = [a for a in args if a is not type(None) and typing.get_origin(a) is None]
        for a in scalars:  # a lone number stays a number (e.g. one cost limit)
            try:
                return _scalar(a, value)
            except (TypeError, ValueError, yaml.YAMLError):
                pass
        for a in args:
            if typing.get_origin(a) is tuple:
                try:
                    return coerce(a, value)
                except (TypeError, ValueError, yaml.YAMLError):
                    pass
        raise TypeError
    if origin is tuple:
        items = _as_list(value)
        if args[-1] is Ellipsis:
            if not items:
                raise TypeError
            return tuple(coerce(args[0], v) for v in items)
        if len(items) != len(args):
            raise TypeError
        return tuple(coerce(a, v) for a, v in zip(args, items, strict=True))
    try:
        return _scalar(kind, value)
    except (ValueError, yaml.YAMLError) as exc:
        raise TypeError from exc


def parse_value(setting: Setting, value: Any) -> Any:
    """Return value as the setting's type; ValueError naming the key and the type otherwise."""
    try:
        parsed = coerce(setting.type, value)
    except TypeError:
        raise ValueError(f'{setting.key} = {value!r}: need {_type_name(setting.type)} '
                         f'(default {_show(setting.default)})') from None
    # One cost limit given as a list of one is the plain number (one constraint).
    if isinstance(parsed, tuple) and len(parsed) == 1 and setting.key == 'cost_limit':
        parsed = parsed[0]
    return parsed


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ','.join(str(v) for v in value) if value else '()'
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def unknown_key_error(key: str, known: dict[str, Setting], task: str | None) -> ValueError:
    """Return the error for a key that is no setting, with the closest names."""
    close = difflib.get_close_matches(key, list(known), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ''
    where = f'task {task}' if task is not None else 'a Gymnasium id (no task options)'
    return ValueError(f'unknown setting {key!r} for {where}{hint}: `cpo-ros train --help` '
                      f'lists every key')


# ---------------------------------------------------------------------------------------------
# Sources: key=value text, YAML files
# ---------------------------------------------------------------------------------------------

def parse_assignment(text: str) -> tuple[str, str]:
    """Split 'key=value' (the value may contain '=')."""
    key, sep, value = text.partition('=')
    if not sep or not key.strip():
        raise ValueError(f'--set {text!r}: write KEY=VALUE, e.g. --set gamma=0.99')
    return key.strip(), value.strip()


def flatten(data: dict[str, Any]) -> dict[str, Any]:
    """Return flat key -> value from a settings mapping.

    Accepts the flat form (the keys of `cpo-ros train --help`) and a run's config.yaml (its
    `config:` section, with `algo:` and `task_kwargs:` nested; its `out` is left out, so that
    a rerun never writes over the run it copies).
    """
    if not isinstance(data, dict):
        raise ValueError(f'a settings file holds a mapping of key: value, not '
                         f'{type(data).__name__}')
    if any(isinstance(v, dict) and 'ros__parameters' in v for v in data.values()):
        raise ValueError('this is a ROS parameter file (ros__parameters): `cpo-ros bringup` '
                         'reads those; give `cpo-ros train` the keys as KEY: VALUE lines')
    if isinstance(data.get('config'), dict):
        data = {k: v for k, v in data['config'].items() if k != 'out'}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == 'algo' and isinstance(value, dict):
            flat.update({ALGO_KEY_PREFIX + k: v for k, v in value.items()})
        elif key == 'task_kwargs' and isinstance(value, dict):
            flat.update({TASK_KEY_PREFIX + k: v for k, v in value.items()})
        else:
            flat[str(key)] = value
    return flat


def merge(values: dict[str, Any], key: str, value: Any) -> None:
    """Set key in values, a later source winning; choosing task drops env_id and vice versa."""
    other = {'task': 'env_id', 'env_id': 'task'}.get(key)
    if other is not None and not _null(value):
        values.pop(other, None)
    values.pop(key, None)  # re-insert: the latest source is applied last
    values[key] = value


def load_file(path: str | Path) -> dict[str, Any]:
    """Return the flat settings of a YAML file (see flatten)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f'--config {path}: no such file') from None
    except yaml.YAMLError as exc:
        raise ValueError(f'--config {path}: not YAML ({exc})') from exc
    try:
        return flatten(data or {})
    except ValueError as exc:
        raise ValueError(f'--config {path}: {exc}') from exc


# ---------------------------------------------------------------------------------------------
# Building the configuration
# ---------------------------------------------------------------------------------------------

def _canonical(key: str, known: dict[str, Setting], task: str | None) -> str:
    for prefix, owner in ((TASK_KEY_PREFIX, 'task'), (ALGO_KEY_PREFIX, 'algo')):
        if key.startswith(prefix):
            name = key[len(prefix):]
            if name in known and known[name].owner == owner:
                return name
            raise unknown_key_error(key, known, task)
    if key not in known:
        raise unknown_key_error(key, known, task)
    return key


def resolve_task(values: dict[str, Any]) -> tuple[str | None, str | None]:
    """Return (task, env_id) from raw settings: exactly one of them, the default task else."""
    task, env_id = values.get('task', MISSING), values.get('env_id', MISSING)
    task = None if task is MISSING or _null(task) else str(task)
    env_id = None if env_id is MISSING or _null(env_id) else str(env_id)
    if task is not None and env_id is not None:
        raise ValueError(f'task = {task!r} and env_id = {env_id!r}: give exactly one of them')
    if task is None and env_id is None:
        from cpo_ros.tasks.registry import DEFAULT_TASK
        task = DEFAULT_TASK
    return task, env_id


def build_config(values: dict[str, Any]) -> tuple[TrainConfig, set[str]]:
    """Return (TrainConfig, the keys that were set) from raw settings applied in order.

    values maps keys (flat, or prefixed task./algo.) to text or data. Settings the values do
    not name keep their defaults. The result is validated, task options included.
    """
    task, env_id = resolve_task(values)
    from cpo_ros.sim.make import task_of_env_id

    option_task = task if task is not None else task_of_env_id(env_id)
    known = all_settings(option_task)
    train: dict[str, Any] = {}
    algo: dict[str, Any] = {}
    task_kwargs: dict[str, Any] = {}
    given: set[str] = set()
    values = dict(values)
    # A run's config.yaml carries its robot profile (a mapping, not one setting): keep it.
    robot = values.pop('robot', None) or {}
    if not isinstance(robot, dict):
        raise ValueError(f'robot = {robot!r}: a robot profile mapping (use --robot NAME)')
    for raw_key, raw in values.items():
        key = _canonical(raw_key, known, option_task)
        setting = known[key]
        value = parse_value(setting, raw)
        {'train': train, 'algo': algo, 'task': task_kwargs}[setting.owner][key] = value
        given.add(key)
    train['task'], train['env_id'] = task, env_id
    config = TrainConfig(**train, algo=AlgoConfig(**algo), task_kwargs=task_kwargs,
                         robot=dict(robot))
    config.validate()
    if task_kwargs:
        check_task_options(config)
    return config, given


def check_task_options(config: TrainConfig) -> None:
    """Validate the task options of a project task (ValueError naming the first bad one)."""
    from cpo_ros.sim.make import make_task, task_of_env_id

    task = config.task if config.task is not None else task_of_env_id(config.env_id or '')
    if task is None:
        if config.task_kwargs:
            raise ValueError(f'{config.env_id} is no project task: it takes no task options '
                             f'({sorted(config.task_kwargs)})')
        return
    make_task(task, **config.task_kwargs)


def task_options(config: TrainConfig) -> dict[str, Any]:
    """Return every option of a run's project task in effect, robot included ({} for ids)."""
    from cpo_ros.sim.make import task_of_env_id

    task = config.task if config.task is not None else task_of_env_id(config.env_id or '')
    if task is None:
        return {}
    return {s.key: _plain(config.task_kwargs.get(s.key, s.default)) for s in task_settings(task)}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def algo_config_from(values: dict[str, Any]) -> AlgoConfig:
    """Return an AlgoConfig from values named like its fields (others are ignored)."""
    by_key = {s.key: s for s in train_settings() if s.owner == 'algo'}
    return AlgoConfig(**{k: parse_value(by_key[k], v) for k, v in values.items()
                         if k in by_key})


def algo_assignments(texts: list[str]) -> dict[str, Any]:
    """Return the update settings of KEY=VALUE texts (a bench's --set), parsed and checked.

    Each key must name an update setting (`cpo-ros train --help`, the algo. prefix allowed);
    a run setting (seed, out, ...) or an unknown key is refused by name, with close matches.
    The values are checked against their allowed ranges as AlgoConfig validates them.
    """
    known = {s.key: s for s in train_settings()}
    update = {k: s for k, s in known.items() if s.owner == 'algo' and k != 'algo'}
    out: dict[str, Any] = {}
    for text in texts:
        raw_key, raw = parse_assignment(text)
        key = raw_key.removeprefix(ALGO_KEY_PREFIX)
        if key not in update:
            close = difflib.get_close_matches(key, list(update), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ''
            what = ("the bench's own options set the run and the rule" if key in known
                    else '`cpo-ros train --help` lists them')
            raise ValueError(f'--set {raw_key}: not an update setting{hint}; {what}')
        out[key] = parse_value(update[key], raw)
    AlgoConfig(**out).validate()
    return out


def add_update_set_argument(parser: Any, what: str = 'every run') -> None:
    """Give a bench's argparse parser --set KEY=VALUE: an update setting (repeatable)."""
    parser.add_argument('--set', dest='assignments', action='append', default=[],
                        metavar='KEY=VALUE',
                        help=f'an update setting for {what} (repeatable), e.g. '
                             f'--set value_minibatch=512')


def update_sets(parser: Any, args: Any) -> dict[str, Any]:
    """Return the parsed --set update settings of args; a bad one ends with parser.error."""
    try:
        return algo_assignments(args.assignments)
    except ValueError as err:
        parser.error(str(err))
        raise  # parser.error exits; this line is never reached


def describe(setting: Setting, width: int = 99) -> str:
    """Return the help text of a setting: key, type, default, then its docstring."""
    head = f'  {setting.key} = {_show(setting.default)}  ({_type_name(setting.type)})'
    body = textwrap.fill(setting.doc, width, initial_indent=' ' * 6,
                         subsequent_indent=' ' * 6) if setting.doc else ''
    return head + ('\n' + body if body else '')


def help_text(task: str | None = None) -> str:
    """Return the list of every setting for `cpo-ros train --help`.

    task: a task given by dotted path is listed beside the registered ones.
    """
    from cpo_ros.sim.robot import RobotConfig
    from cpo_ros.tasks.registry import load_task_class, registered

    lines = ['settings (--set KEY=VALUE, or KEY: VALUE in --config FILE.yaml; the learner '
             "node's ROS parameters have the same names):", '', 'training:']
    lines += [describe(s) for s in train_settings() if s.owner == 'train']
    lines += ['', 'update (algo.KEY also works):']
    lines += [describe(s) for s in train_settings() if s.owner == 'algo']
    robot = {f.name for f in fields(RobotConfig)}
    by_kind: dict[tuple[str, ...], list[str]] = {}  # tasks with the same parameters
    names = registered()
    given = [task] if task and task not in names and task not in names.values() else []
    for name in [*names, *given]:
        try:
            params = load_task_class(name).Params
        except ValueError as exc:  # a broken installed task does not hide the others
            lines += ['', f'task {name}: {exc}']
            continue
        by_kind.setdefault(tuple(f.name for f in fields(params)), []).append(name)
    for tasks in by_kind.values():
        first = task_settings(tasks[0])
        lines += ['', f"task options of --task {' and '.join(tasks)} (task.KEY also works):"]
        lines += [describe(s) for s in first if s.key not in robot]
        for other in tasks[1:]:
            changed = [f'{s.key} = {_show(s.default)}' for s, f in
                       zip(task_settings(other), first, strict=True) if s.default != f.default]
            lines += [f"  ({other}: {', '.join(changed) or 'the same defaults'})"]
    lines += ['', 'robot options (every project task):']
    lines += [describe(s) for s in _settings_of(RobotConfig, 'task')]
    return '\n'.join(lines)


def with_cost_limit(config: TrainConfig, limits: tuple[float, ...]) -> TrainConfig:
    """Return config with its cost limits replaced (one number for one constraint)."""
    value = limits[0] if len(limits) == 1 else tuple(limits)
    return replace(config, algo=replace(config.algo, cost_limit=value))
