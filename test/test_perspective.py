"""config/cpo_ros.perspective names only topics the training graph really publishes."""

import ast
import json
from pathlib import Path

from conftest import wait_until

REPO = Path(__file__).resolve().parent.parent


def perspective_plugins():
    data = json.loads((REPO / 'config' / 'cpo_ros.perspective').read_text())
    manager = data['groups']['pluginmanager']
    running = ast.literal_eval(manager['keys']['running-plugins']['repr'])
    return running, manager['groups']


def test_perspective_opens_plot_and_robot_monitor_on_published_topics(start_node, probe,
                                                                      tmp_path):
    running, groups = perspective_plugins()
    assert set(running) == {'rqt_plot/Plot', 'rqt_robot_monitor/RobotMonitor'}
    plot = groups['plugin__rqt_plot__Plot__1']['groups']['plugin']['keys']
    fields = ast.literal_eval(plot['topics']['repr'])
    topics = {f.rsplit('/', 1)[0] for f in fields}
    assert topics == {'/cpo/episode_return', '/cpo/episode_cost', '/cpo/cost_limit'}
    assert all(f.endswith('/data') for f in fields)  # the std_msgs/Float32 field plotted
    # The learner publishes the plotted figures, and diagnostics (what rqt_robot_monitor shows
    # through the aggregator) on /diagnostics.
    learner = start_node('learner', 'iterations:=1', f'out:={tmp_path / "run"}',
                         'steps_per_iteration:=64', 'num_envs:=2')

    def published():
        found = dict(probe.get_topic_names_and_types())
        return all(t in found and 'std_msgs/msg/Float32' in found[t] for t in topics) and (
            'diagnostic_msgs/msg/DiagnosticArray' in found.get('/diagnostics', []))
    assert wait_until(published, 60), (sorted(dict(probe.get_topic_names_and_types())),
                                       learner.output)
