"""Declare node parameters from one description each: descriptor, range, start-up validation.

ROS silently ignores YAML keys a node never declares, so every node declares all of its
parameters here. A value outside its range fails at start-up with a message naming the
parameter, its value and the allowed range; later sets are validated the same way.
"""

from dataclasses import dataclass
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
        if self.low is not None or self.high is not None:
            return f'[{self.low}, {self.high}]'
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


def declare_parameters(node: Node, specs: list[ParamSpec]) -> dict[str, Any]:
    """Declare specs on node, validate the values it got, and return them by name.

    Raises ValueError naming the first bad parameter. Also installs a set-parameters callback
    that refuses values outside the same ranges.
    """
    by_name = {s.name: s for s in specs}
    values: dict[str, Any] = {}
    for spec in specs:
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

    def on_set(params) -> SetParametersResult:
        for p in params:
            spec = by_name.get(p.name)
            reason = spec.check(p.value) if spec is not None else None
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return values


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


def task_options_of(task: Any) -> dict[str, Any]:
    """Return a built task's parameters as plain options (for TrainConfig.task_kwargs)."""
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(task.params).items()}
