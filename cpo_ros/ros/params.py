"""Declare node parameters from one description each: descriptor, range, start-up validation.

ROS silently ignores YAML keys a node never declares, so every node declares all of its
parameters here, and refuses at start-up any parameter it was given but does not declare (a
misspelt safety setting must never fall back silently to its default): a key in a section of a
parameter file that names this node, or in `-p <node>:<key>:=...`, must be one of this node's;
a key under a wildcard section (`/**`) or in a bare `-p <key>:=...`, shared by every node of
the process, must be one that some node of cpo_ros declares. The error names the node, the key,
where it was set and the close matches. A section or `-p` for a node whose name is close to
one of cpo_ros's but none of them (`safe_area_moniter`) is refused too. A value outside its
range fails at start-up with a message naming the parameter, its value and the allowed range;
later sets are validated the same way.
"""

from dataclasses import dataclass
import difflib
import re
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterException,
)
from rclpy.node import Node
from rclpy.parameter import Parameter


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its default (which fixes its type), meaning and allowed values."""

    name: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = True
    dynamic_typing: bool = False
    """Also accept a list of numbers where the default is a number (e.g. one per constraint),
    or, with choices, a bool for the choices 'true' and 'false'."""

    def allowed(self) -> str:
        """Return the allowed values in words."""
        if self.choices is not None:
            return f'one of {list(self.choices)}'
        if self.low is not None and self.high is not None:
            return f'[{self.low}, {self.high}]'
        if self.low is not None:
            return f'>= {self.low}'
        if self.high is not None:
            return f'<= {self.high}'
        return f'any {type(self.default).__name__}'

    def check(self, value: Any) -> str | None:
        """Return why value is not allowed, or None when it is."""
        values = value if isinstance(value, (list, tuple)) else [value]
        if self.choices is not None and value not in self.choices:
            return f'{self.name} = {value!r} is not allowed: {self.allowed()}'
        for v in values:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if v != v or (self.low is not None and v < self.low) or (
                        self.high is not None and v > self.high):
                    return f'{self.name} = {value!r} is out of range: allowed {self.allowed()}'
        return None

    def descriptor(self) -> ParameterDescriptor:
        """Return the ParameterDescriptor (ranges appear in rqt_reconfigure and ros2 param)."""
        desc = ParameterDescriptor(description=self.description, read_only=self.read_only,
                                   dynamic_typing=self.dynamic_typing)
        if self.choices is not None:
            desc.additional_constraints = f'one of {list(self.choices)}'
        is_num = isinstance(self.default, (int, float)) and not isinstance(self.default, bool)
        ranged = self.low is not None or self.high is not None
        if ranged and (isinstance(self.default, list) or self.dynamic_typing):
            # A range descriptor holds one number only: lists say theirs in words.
            desc.additional_constraints = f'each value {self.allowed()}'
        elif ranged and is_num and (self.low is None or self.high is None):
            desc.additional_constraints = self.allowed()
        if is_num and self.low is not None and self.high is not None and not (
                self.dynamic_typing):
            if isinstance(self.default, int):
                desc.integer_range = [IntegerRange(from_value=int(self.low),
                                                   to_value=int(self.high), step=0)]
            else:
                desc.floating_point_range = [FloatingPointRange(
                    from_value=float(self.low), to_value=float(self.high), step=0.0)]
        return desc


def _number_or_numbers(node_name: str, spec: ParamSpec, value: Any) -> float | list[float]:
    """Return a number as float or a non-empty sequence of numbers as list[float]."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, (str, bytes, bool)) and hasattr(value, '__len__') and len(value) > 0:
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [float(v) for v in value]
    raise ValueError(f'{node_name}: parameter {spec.name} = {value!r}: need a number or a list '
                     f'of numbers, each in {spec.allowed()}')


def _whole_numbers_as_floats(node: Node, spec: ParamSpec) -> None:
    """Take `-p x:=10` (an integer to rcl) for a float parameter as 10.0, and [1, 2] as floats.

    rclpy would refuse the override as a type mismatch; the number means the same.
    """
    overrides = getattr(node, '_parameter_overrides', {})
    given = overrides.get(spec.name)
    if given is None or spec.dynamic_typing:
        return
    if isinstance(spec.default, float) and given.type_ == Parameter.Type.INTEGER:
        overrides[spec.name] = Parameter(spec.name, Parameter.Type.DOUBLE, float(given.value))
    elif (isinstance(spec.default, list) and spec.default
          and isinstance(spec.default[0], float)
          and given.type_ == Parameter.Type.INTEGER_ARRAY):
        overrides[spec.name] = Parameter(spec.name, Parameter.Type.DOUBLE_ARRAY,
                                         [float(v) for v in given.value])


SHARED_VALUES_ATTRIBUTE = '_cpo_ros_shared_values'
"""Where the nodes of one bring-up process keep the task settings each declared (context)."""


def _agree_with_nodes_beside(node: Node, values: dict[str, Any]) -> None:
    """Raise ValueError when this node's task settings differ from another's in its process.

    The task, its parameters, num_envs, seed and steps_per_iteration are one setting of the
    graph: a `-p learner:task:=ring` beside a Circle simulator trained Ring's run on Circle's
    samples, and a learner's own steps_per_iteration refused every chunk for ever. Checked in
    processes started by run_nodes (a bring-up or `ros2 run`), as each node declares them, so
    the learner is refused before it makes a run directory.
    """
    from cpo_ros.ros.specs import TASK_PARAMS

    context = node.context
    if not hasattr(context, ARGS_ATTRIBUTE):
        return
    seen = getattr(context, SHARED_VALUES_ATTRIBUTE, None)
    if seen is None:
        seen = {}
        setattr(context, SHARED_VALUES_ATTRIBUTE, seen)
    task_keys = {s.name for s in TASK_PARAMS}
    name = node.get_name()
    for key, value in values.items():
        if key not in task_keys and '.' not in key:  # <task>.<field>: the task's own
            continue
        other, theirs = seen.setdefault(key, (name, value))
        if other != name and theirs != value:
            raise ValueError(
                f'{name}: parameter {key} = {value!r}, but {other} in this process has '
                f'{theirs!r}: the nodes of a bring-up share it (set it for all: '
                f'-p {key}:=..., or under /** in the parameter file)')


def declare_parameters(node: Node, specs: list[ParamSpec]) -> dict[str, Any]:
    """Declare specs on node, validate the values it got, and return them by name.

    Raises ValueError naming the first bad parameter. Also installs a set-parameters callback
    that refuses values outside the same ranges.
    """
    by_name = {s.name: s for s in specs}
    values: dict[str, Any] = {}
    for spec in specs:
        _whole_numbers_as_floats(node, spec)
        try:
            param = node.declare_parameter(spec.name, spec.default, spec.descriptor())
        except (InvalidParameterValueException, InvalidParameterTypeException,
                ParameterException) as exc:
            raise ValueError(f'{node.get_name()}: parameter {spec.name}: {exc} (allowed: '
                             f'{spec.allowed()}, type {type(spec.default).__name__})') from exc
        value = param.value
        if spec.dynamic_typing and spec.choices is not None:
            # A choice that reads like a bool (resume: true) arrives as one from YAML or -p.
            value = str(value).lower() if isinstance(value, bool) else value
        elif spec.dynamic_typing:
            value = _number_or_numbers(node.get_name(), spec, value)
        elif isinstance(spec.default, list):
            value = [type(spec.default[0])(v) for v in value] if spec.default else list(value)
        reason = spec.check(value)
        if reason is not None:
            raise ValueError(f'{node.get_name()}: parameter {reason}')
        values[spec.name] = value
    _agree_with_nodes_beside(node, values)

    def on_set(params) -> SetParametersResult:
        for p in params:
            if p.name == 'use_sim_time':
                # rclpy's own parameter, writable by default: switching clocks under a running
                # node stamps commands 0 and stops a deployed robot.
                return SetParametersResult(
                    successful=False, reason='use_sim_time is fixed once the node runs: '
                    'restart it with -p use_sim_time:=true|false')
            spec = by_name.get(p.name)
            reason = spec.check(p.value) if spec is not None else None
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return values


BUILTIN_PARAMETERS = ('use_sim_time', 'start_type_description_service')
"""Parameters rclpy declares on every node."""

ARGS_ATTRIBUTE = 'cpo_ros_args'
"""The attribute of an rclpy Context where run_nodes keeps the arguments it was started with."""


def _flatten(values: dict, prefix: str = '') -> list[str]:
    """Return the dotted parameter names of a nested ros__parameters mapping."""
    names = []
    for key, value in values.items():
        name = f'{prefix}{key}'
        names += _flatten(value, f'{name}.') if isinstance(value, dict) else [name]
    return names


def _section_pattern(section: str) -> re.Pattern:
    """Return a regex of a parameter-file section name (rcl: /** any namespaces, * one token)."""
    name = section if section.startswith('/') else f'/{section}'
    parts = []
    for token in name.strip('/').split('/'):
        parts.append('(/[^/]+)*' if token == '**' else '/[^/]+' if token == '*'
                     else '/' + re.escape(token))
    return re.compile(''.join(parts) + '$')


def _named_settings(args: list[str]):
    """Yield (node pattern, keys, where, section?) of each node-named setting in ROS arguments.

    Sections of --params-file files that name a node (not '*', not '/**' alone), and
    `-p <node>:<key>:=value` arguments.
    """
    i = 0
    while i < len(args):
        arg, nxt = args[i], args[i + 1] if i + 1 < len(args) else ''
        if arg == '--params-file' and nxt:
            import yaml

            try:
                with open(nxt) as f:
                    content = yaml.safe_load(f) or {}
            except (OSError, yaml.YAMLError):
                content = {}  # rcl refuses an unreadable file itself
            for section, body in content.items() if isinstance(content, dict) else ():
                if str(section).rstrip('/').split('/')[-1] in ('*', '**'):
                    continue
                params = body.get('ros__parameters', {}) if isinstance(body, dict) else {}
                yield (str(section), _flatten(params if isinstance(params, dict) else {}),
                       f"{nxt} section '{section}'", True)
            i += 2
            continue
        if arg in ('-p', '--param') and ':=' in nxt:
            target, _, _value = nxt.partition(':=')
            if ':' in target:
                who, key = target.split(':', 1)
                yield who, [key], f'-p {nxt}', False
            i += 2
            continue
        i += 1


def explicit_keys(args: list[str], node_name: str, fqn: str) -> dict[str, str]:
    """Return {key: where it was set} of parameters given to this node by name.

    Sections of --params-file files that match the node's fully qualified name and name it
    (not '*', not '/**' alone), and `-p <node_name>:<key>:=value` arguments.
    """
    found: dict[str, str] = {}
    for who, keys, where, section in _named_settings(args):
        matches = bool(_section_pattern(who).match(fqn)) if section else who in (node_name, fqn)
        for key in keys if matches else ():
            found[key] = where
    return found


def misspelt_node_names(args: list[str], known: set[str]) -> list[str]:
    """Return an error for each setting that names a node close to, but not one of, known.

    A section or `-p` for a node of another package is no error; one for `safe_area_moniter`
    would leave the monitor on its defaults.
    """
    errors = []
    for who, _keys, where, _section in _named_settings(args):
        name = who.rstrip('/').split('/')[-1]
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        if name not in known and close:
            errors.append(f'{where} names node {name!r}, which no node of cpo_ros is; did you '
                          f'mean {close[0]}?')
    return errors


def _task_parameter(key: str) -> bool:
    """Return whether key is <task>.<field> of a registered task (shared files hold several)."""
    from dataclasses import fields

    from cpo_ros.ros.specs import task_namespace
    from cpo_ros.tasks.registry import load_task_class, registered

    prefix, _, name = key.partition('.')
    for task in registered():
        if task_namespace(task) == prefix:
            try:
                return name in {f.name for f in fields(load_task_class(task).Params)}
            except ValueError:
                return False
    return False


def refuse_unknown(node: Node) -> None:
    """Raise ValueError naming a parameter node was given but does not take (close matches).

    Call once the node declared everything (its class's parameters and its task's).
    """
    # rclpy keeps a node's overrides (parameter files and -p, already matched to this node)
    # only in this attribute; Jazzy has no public accessor.
    from cpo_ros.ros.graph import node_names
    from cpo_ros.ros.specs import all_parameter_names

    given = set(getattr(node, '_parameter_overrides', {}))
    args = getattr(node.context, ARGS_ATTRIBUTE, None) or []
    misspelt = misspelt_node_names(list(args), node_names())
    if misspelt:
        raise ValueError(f'{node.get_name()}: {misspelt[0]} Its settings would be ignored.')
    explicit = explicit_keys(list(args), node.get_name(), node.get_fully_qualified_name())
    declared = {name for name in given | set(explicit) if node.has_parameter(name)}
    everyone = set(all_parameter_names())
    for key in sorted(given | set(explicit)):
        if key in declared or key in BUILTIN_PARAMETERS or key.startswith('qos_overrides.'):
            continue
        if key in explicit:
            where = explicit[key]
            choices = sorted(node._parameters)
            what = f'{node.get_name()} has no parameter {key!r}'
        elif key in everyone or _task_parameter(key):
            continue  # shared (/** or a bare -p): another node or task takes it
        else:
            where = 'a wildcard section or a bare -p'
            choices = sorted(everyone | set(node._parameters))
            what = f'{node.get_name()}: no node of cpo_ros has a parameter {key!r}'
        close = difflib.get_close_matches(key, choices, n=3, cutoff=0.6)
        hint = f'; did you mean {", ".join(close)}?' if close else ''
        raise ValueError(f'{what} (set by {where}){hint} Run the node with --help for its '
                         f'parameters.')


def declare_task(node: Node, name: str, num_envs: int = 1) -> Any:
    """Load the task of the `task` parameter, declare its parameters, return it built.

    A bad task (unknown name, bad definition) or parameter raises ValueError naming it, which
    ends the node with exit code 2.
    """
    from dataclasses import replace

    from cpo_ros.ros.specs import task_namespace, task_parameter_specs
    from cpo_ros.tasks.registry import load_task_class

    cls = load_task_class(name)
    values = declare_parameters(node, task_parameter_specs(name, cls))
    prefix = task_namespace(name) + '.'
    options = {key[len(prefix):]: value for key, value in values.items()}
    try:
        return cls(replace(cls.Params(), **options), num_envs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'{node.get_name()}: task {name} parameters: {exc}') from exc


def task_identity(task: Any) -> str:
    """Return the task as the wire names it: its class and a digest of its parameters.

    The learner sends it with each policy; an executor whose own task differs refuses the
    policy (LearnerInput), so no node samples one task for a learner of another. The class
    ('module:Class'), not the name given: an entry point's name and its dotted path are one
    task.
    """
    import hashlib
    import json

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)  # 15 from one file, 15.0 from another: one value
        return value

    options = {k: plain(v) for k, v in task_options_of(task).items()}
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]
    cls = type(task)
    return f'{cls.__module__}:{cls.__qualname__} {digest}'


def task_options_of(task: Any) -> dict[str, Any]:
    """Return a built task's parameters as plain options (for TrainConfig.task_kwargs)."""
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(task.params).items()}
