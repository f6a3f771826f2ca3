"""config/cpo_ros.perspective opens ready to read, on topics the training graph publishes.

The settings keys are the ones qt_gui 2.7 (jazzy), rqt_plot 1.4 and rqt_runtime_monitor 1.0
read: qt_gui's main window restores `geometry` (QWidget.restoreGeometry) and titles the window
after the perspective's file name; rqt_plot restores `topics`, `autoscroll`, `plot_type` and
`x_limits`. No rqt is needed here: the file is parsed, and every plugin's topics are checked
against the live graph's topics and types.
"""

import ast
import importlib
import json
from pathlib import Path
import struct

from conftest import wait_until
from diagnostic_msgs.msg import DiagnosticArray
import yaml

from cpo_ros.ros import qos

REPO = Path(__file__).resolve().parent.parent
PERSPECTIVE = REPO / 'config' / 'cpo_ros.perspective'
QT_GEOMETRY_MAGIC = 0x1D9D0CB  # QWidget::saveGeometry, format version 3 (Qt 5.12 and later)


def _value(entry: dict):
    """Return a setting as qt_gui's PerspectiveManager._import_value reads it (no Qt)."""
    if entry['type'] == 'repr':
        return ast.literal_eval(entry['repr'])
    assert entry['type'] == 'repr(QByteArray.hex)', entry
    text = entry['repr(QByteArray.hex)']
    assert text.startswith("QtCore.QByteArray(b'") and text.endswith("')"), text
    return bytes.fromhex(text[len("QtCore.QByteArray(b'"):-2])


def _settings():
    data = json.loads(PERSPECTIVE.read_text())
    manager = data['groups']['pluginmanager']
    plugins = {name: {k: _value(v) for k, v in group['groups']['plugin']['keys'].items()}
               for name, group in manager['groups'].items()}
    window = {k: _value(v) for k, v in data['groups']['mainwindow']['keys'].items()}
    return _value(manager['keys']['running-plugins']), plugins, window


def _message_class(type_name: str):
    package, _, name = type_name.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), name)


def _subscribed_topics(running: dict, plugins: dict) -> dict[str, set[str]]:
    """Return each topic the perspective's plugins subscribe to, with the fields they read."""
    topics: dict[str, set[str]] = {}
    for plugin_id, serials in running.items():
        for serial in serials:
            settings = plugins[f'plugin__{plugin_id.replace("/", "__")}__{serial}']
            if plugin_id == 'rqt_plot/Plot':
                for field in settings['topics']:
                    topic, name = field.rsplit('/', 1)
                    topics.setdefault(topic, set()).add(name)
            elif plugin_id == 'rqt_runtime_monitor/RuntimeMonitor':
                # It subscribes to the relative name 'diagnostics' from rqt's root-namespace
                # node (runtime_monitor_widget.py), whatever the perspective says.
                topics.setdefault('/diagnostics', set())
            else:
                raise AssertionError(f'no check for plugin {plugin_id}')
    return topics


def test_perspective_opens_a_sized_window_and_a_plot_of_the_whole_run():
    running, plugins, window = _settings()
    # rqt_runtime_monitor reads /diagnostics itself; rqt_robot_monitor would need the
    # aggregator (C++, not on PyPI) and show "No messages received" without it.
    assert set(running) == {'rqt_plot/Plot', 'rqt_runtime_monitor/RuntimeMonitor'}
    # qt_gui restores the window's size from `geometry` and reads no other window key; the
    # window title is '<perspective file name> - rqt'.
    assert set(window) == {'geometry'}
    geometry = window['geometry']
    magic, major, _minor = struct.unpack('>IHH', geometry[:8])
    left, top, right, bottom = struct.unpack('>4i', geometry[8:24])
    (screen_width,) = struct.unpack('>i', geometry[46:50])
    assert (magic, major, len(geometry)) == (QT_GEOMETRY_MAGIC, 3, 66)
    width, height = right - left + 1, bottom - top + 1
    assert width >= 1024 and height >= 640, (width, height)
    # Saved screen width 0: Qt restores the size on any screen at least width / 1.5 wide
    # (with a saved width it refuses screens more than 25% narrower or wider).
    assert screen_width == 0
    plot = plugins['plugin__rqt_plot__Plot__1']
    # Autoscroll keeps the x-range's width, which rqt_plot shrinks to 1 s before the first
    # sample: off, and a saved x-range of a whole default run (about 5 minutes on 2 cores).
    assert plot['autoscroll'] is False
    x_min, x_max = plot['x_limits']
    assert x_min == 0.0 and x_max >= 600.0


def test_perspective_topics_are_published_with_their_types(start_node, probe, tmp_path):
    running, plugins, _window = _settings()
    topics = _subscribed_topics(running, plugins)
    assert set(topics) == {'/cpo/episode_return', '/cpo/episode_cost', '/cpo/cost_limit',
                           '/diagnostics'}
    names: set[str] = set()
    probe.create_subscription(DiagnosticArray, '/diagnostics',
                              lambda m: names.update(s.name for s in m.status), qos.CLI_DEFAULT)
    learner = start_node('learner', 'iterations:=1', f'out:={tmp_path / "run"}',
                         'steps_per_iteration:=64', 'num_envs:=2')

    def published():
        found = dict(probe.get_topic_names_and_types())
        return all(t in found for t in topics) and bool(names)
    assert wait_until(published, 60), (sorted(dict(probe.get_topic_names_and_types())),
                                       learner.output)
    found = dict(probe.get_topic_names_and_types())
    for topic, fields in topics.items():
        (type_name,) = found[topic]
        message = _message_class(type_name)
        slots = message.get_fields_and_field_types()
        for field in fields:  # rqt_plot plots a numeric field of the message
            assert slots.get(field) in ('float', 'double', 'int32', 'int64'), (topic, field)
    assert found['/diagnostics'] == ['diagnostic_msgs/msg/DiagnosticArray']
    # The aggregator's analyzers (config/diagnostics.yaml) take each status exactly once.
    analyzers = yaml.safe_load((REPO / 'config' / 'diagnostics.yaml').read_text())
    params = analyzers['analyzers']['ros__parameters']
    parts = [a['contains'] for a in params.values() if isinstance(a, dict)]
    for name in names:
        assert sum(any(p in name for p in group) for group in parts) == 1, name
    assert '/learner' in names
