"""Write the parameter and topic reference tables of docs/ from the code, or check them.

Run: python -m cpo_ros.ros.reference [--check]. Parameters come from the specs
(cpo_ros/ros/specs.py), topics from the nodes themselves: each node of a bring-up is built with
that bring-up's parameter file (nothing spins) and its publishers, subscriptions and services
are listed. The tables go between `<!-- BEGIN GENERATED X -->` and `<!-- END GENERATED X -->`
markers; --check writes nothing and exits 1 naming each file whose tables are stale.
"""

import argparse
from collections.abc import Iterable
import contextlib
import os
from pathlib import Path
import sys
import tempfile
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / 'docs'
PARAMETERS_PAGE = 'reference.md'
TOPICS_PAGE = 'ros.md'
TOPIC_BRINGUPS = ('circle_sim', 'deploy')
"""Bring-ups whose topics are tabulated: training, and the shield with the stand-in robot (the
deployed executor, a lifecycle node, creates its endpoints when configured with a policy)."""
_NAMESPACE = '/reference'
"""Nodes are built in this namespace, so relative names can be told from absolute ones."""
_ROS_INFRASTRUCTURE = ('/rosout', '/parameter_events')


def _value(value: Any, bound: bool = False) -> str:
    """Return a default as it is written in a parameter file (a float keeps its point)."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(_value(v) for v in value) + ']'
    if isinstance(value, str):
        return repr(value) if value == '' else value
    if isinstance(value, float):
        return f'{value:g}' if bound else repr(value)
    return str(value)


def _cell(text: str) -> str:
    return text.replace('|', '\\|').replace('\n', ' ')


def _allowed(spec) -> str:
    if spec.choices is not None:
        return ', '.join(spec.choices)
    if spec.low is not None and spec.high is not None:
        return f'{_value(spec.low, True)} .. {_value(spec.high, True)}'
    if spec.low is not None:  # no upper bound
        return f'>= {_value(spec.low, True)}'
    if spec.high is not None:
        return f'<= {_value(spec.high, True)}'
    return ''


def parameter_table(specs: Iterable) -> str:
    """Return a Markdown table of parameter specs: name, default, allowed values, meaning."""
    rows = ['| parameter | default | allowed | meaning |', '|---|---|---|---|']
    for s in specs:
        rows.append(f'| `{s.name}` | `{_value(s.default)}` | {_allowed(s)} | '
                    f'{_cell(s.description)} |')
    return '\n'.join(rows)


def parameter_tables() -> str:
    """Return every node's parameters, the shared `/**` ones first, as Markdown sections."""
    from cpo_ros.ros import specs
    sections = [
        ('Shared: the task (`/**`)', specs.TASK_PARAMS),
        ('Shared: the robot profile (`/**`, `config/robots/`)', specs.ROBOT_PARAMS),
        ('Shared: velocity commands (`/**`)', specs.COMMAND_PARAMS),
        ('Shared: the pose (`/**`)', specs.POSE_PARAMS),
        ('Shared: the laser scan (`/**`, tasks that declare a scan)', specs.SCAN_PARAMS),
    ]
    sections += [(f'`{node}` (`/**/{node}`)', params)
                 for node, params in specs.NODE_PARAMS.items()]
    sections.append(('`policy_executor --deploy` (`/**/policy_executor` in deploy.yaml)',
                     specs.DEPLOY_EXECUTOR_PARAMS))
    sections.append(('`policy_executor --robot` (`/**/policy_executor` in '
                     'learn_on_robot.yaml)', specs.ROBOT_EXECUTOR_OWN_PARAMS))
    return '\n\n'.join(f'### {title}\n\n{parameter_table(params)}'
                       for title, params in sections)


def _type_name(msg_type: type) -> str:
    """Return 'std_msgs/msg/Float32' for the Python class of a message or service."""
    package, kind = msg_type.__module__.split('.')[:2]
    return f'{package}/{kind}/{msg_type.__name__}'


def _qos(profile) -> str:
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
    reliable = profile.reliability == ReliabilityPolicy.RELIABLE
    latched = profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
    return (f'{"reliable" if reliable else "best effort"}, '
            f'{"transient local" if latched else "volatile"}, depth {profile.depth}')


def _relative(name: str) -> str:
    """Return a resolved name as the node wrote it: relative unless it was absolute."""
    prefix = _NAMESPACE + '/'
    return name[len(prefix):] if name.startswith(prefix) else name


def node_endpoints(node) -> list[tuple[str, str, str, str]]:
    """Return (name, type, qos, 'pub'|'sub'|'srv') of a node's own topics and services."""
    out = []
    for pub in node.publishers:
        if pub.topic_name not in _ROS_INFRASTRUCTURE:
            out.append((_relative(pub.topic_name), _type_name(pub.msg_type),
                        _qos(pub.qos_profile), 'pub'))
    for sub in node.subscriptions:
        if sub.topic_name not in _ROS_INFRASTRUCTURE:
            out.append((_relative(sub.topic_name), _type_name(sub.msg_type),
                        _qos(sub.qos_profile), 'sub'))
    for srv in node.services:
        # The parameter and type-description services every rclpy node has are left out.
        if not srv.srv_name.startswith(f'{node.get_name()}/'):
            out.append((_relative(srv.srv_name), _type_name(srv.srv_type), '', 'srv'))
    return out


def bringup_endpoints(name: str, domain_id: int | None = None) -> dict[str, list]:
    """Build each node of bring-up `name` (nothing spins) and return its endpoints by node."""
    import rclpy
    from rclpy.lifecycle import LifecycleNode

    from cpo_ros.ros.bringup import ros_arguments
    from cpo_ros.ros.graph import graph
    spec = graph(name)
    entries = ([spec.stand_in] if spec.stand_in else []) + list(spec.nodes)
    with tempfile.TemporaryDirectory() as tmp:
        # The learner starts a run as it is built: in a directory thrown away afterwards. A
        # file, since `-p learner:...` names a node outside the namespace.
        overrides = Path(tmp) / 'overrides.yaml'
        overrides.write_text(f'{_NAMESPACE}/learner:\n  ros__parameters:\n'
                             f'    out: {tmp}/run\n    fit_while_sampling: false\n')
        user = ['-r', f'__ns:={_NAMESPACE}', '--params-file', str(overrides)]
        args = ros_arguments(name, user, spec.use_sim_time)
        context = rclpy.Context()
        rclpy.init(args=args, context=context, domain_id=domain_id)
        nodes, found = [], {}
        try:
            for entry in entries:
                cls = entry.load()
                if issubclass(cls, LifecycleNode):
                    # Its endpoints exist from `configure` on, which needs an exported policy.
                    continue
                # The stand-in is the sim bridge: its section of the file sets mode realtime.
                with contextlib.redirect_stdout(sys.stderr):
                    node = cls(context=context)
                nodes.append(node)
                label = f'{entry.executable} {" ".join(entry.arguments)}'.strip()
                found[label] = node_endpoints(node)
        finally:
            with contextlib.redirect_stdout(sys.stderr):
                for node in nodes:
                    node.destroy_node()
            rclpy.try_shutdown(context=context)
    return found


def topic_table(endpoints: dict[str, list]) -> str:
    """Return a Markdown table: each topic or service with its type, QoS and nodes."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for node, items in endpoints.items():
        for topic, kind, qos, role in items:
            row = rows.setdefault((topic, kind), {'pub': [], 'sub': [], 'srv': [], 'qos': {}})
            row[role].append(f'`{node}`')
            if qos:
                row['qos'].setdefault(qos, set()).add(role)
    lines = ['| topic / service | type | publishers | subscribers | QoS |',
             '|---|---|---|---|---|']
    for (topic, kind), row in sorted(rows.items()):
        pubs = ', '.join(row['pub'] + [f'{n} (service)' for n in row['srv']])
        # One QoS when both ends use the same, else each with the side that uses it.
        qos = row['qos']
        qos_text = (next(iter(qos)) if len(qos) == 1 else
                    '; '.join(f'{q} ({"/".join(sorted(r))})' for q, r in sorted(qos.items())))
        lines.append(f'| `{topic}` | `{kind}` | {pubs} | {", ".join(row["sub"])} | '
                     f'{qos_text} |')
    return '\n'.join(lines)


def topic_tables(domain_id: int | None = None) -> str:
    """Return the topic table of each bring-up in TOPIC_BRINGUPS as Markdown sections."""
    parts = []
    for name in TOPIC_BRINGUPS:
        parts.append(f'#### `{name}`\n\n{topic_table(bringup_endpoints(name, domain_id))}')
    return '\n\n'.join(parts)


def replace_block(text: str, marker: str, body: str) -> str:
    """Return text with the lines between marker's BEGIN and END comments set to body."""
    begin, end = f'<!-- BEGIN GENERATED {marker} -->', f'<!-- END GENERATED {marker} -->'
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f'need one {begin} before one {end}')
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f'{head}{begin}\n{body}\n{end}{tail}'


def render(docs: Path = DOCS, topics: bool = True,
           domain_id: int | None = None) -> dict[Path, tuple[str, str]]:
    """Return {page: (current text, text with fresh tables)} for the generated pages."""
    pages = {docs / PARAMETERS_PAGE: ('PARAMETERS', parameter_tables)}
    if topics:
        pages[docs / TOPICS_PAGE] = ('TOPICS', lambda: topic_tables(domain_id))
    out = {}
    for path, (marker, make) in pages.items():
        text = path.read_text()
        out[path] = (text, replace_block(text, marker, make()))
    return out


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the generated tables of docs/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 when a page differs from the code')
    parser.add_argument('--docs', type=Path, default=DOCS, help='the docs folder')
    parser.add_argument('--parameters-only', action='store_true',
                        help='only the parameter tables (builds no nodes)')
    args = parser.parse_args(argv)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    stale = []
    for path, (old, new) in render(args.docs, topics=not args.parameters_only).items():
        if old == new:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(new)
    verb = 'stale' if args.check else 'updated'
    for path in stale:
        print(f'{verb}: {path}')
    if not stale:
        print('the reference tables match the code')
    return 1 if args.check and stale else 0


if __name__ == '__main__':
    sys.exit(main())
