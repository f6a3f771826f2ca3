"""config/*.yaml: standard ROS parameter files that set every declared parameter."""

from pathlib import Path

import pytest
import yaml

from cpo_ros.ros.graph import GRAPHS
from cpo_ros.ros.specs import (
    DEPLOY_EXECUTOR_PARAMS,
    EXECUTOR_PARAMS,
    LEARNER_CONFIG_PARAMS,
    NODE_PARAMS,
    SHARED_PARAMS,
)
from cpo_ros.training import settings

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize('name', sorted(GRAPHS))
def test_every_declared_parameter_is_in_the_file(name):
    data = yaml.safe_load((REPO / 'config' / f'{name}.yaml').read_text())
    shared = set(data['/**']['ros__parameters'])
    assert {s.name for s in SHARED_PARAMS} <= shared
    # Task parameters sit in a section named after their task (ROS: <task>.<field>).
    task = data['/**']['ros__parameters']['task']
    section = data['/**']['ros__parameters'][task]
    assert set(section) <= {s.key for s in settings.task_settings(task)}
    spec = GRAPHS[name]
    for entry in spec.nodes + spec.worker_nodes + ((spec.stand_in,) if spec.stand_in else ()):
        params = set(data[f'/**/{entry.name}']['ros__parameters'])
        specs = NODE_PARAMS[entry.name]
        if entry.target.endswith('DeployedPolicyExecutor'):
            specs = DEPLOY_EXECUTOR_PARAMS
        elif entry.name == 'policy_executor':
            specs = EXECUTOR_PARAMS
        # A field new in AlgoConfig is declared at once; its default holds until a file sets it.
        missing = {s.name for s in specs} - params - {s.name for s in LEARNER_CONFIG_PARAMS}
        assert not missing, f'{name}.yaml /**/{entry.name} lacks {sorted(missing)}'
        unknown = params - {s.name for s in specs} - {'use_sim_time'}
        assert not unknown, f'{name}.yaml /**/{entry.name} sets undeclared {sorted(unknown)}'


def test_launch_files_exist_for_every_bringup():
    for name in GRAPHS:
        text = (REPO / 'launch' / f'{name}.launch.py').read_text()
        assert f"bringup_launch_description('{name}')" in text


@pytest.mark.parametrize('profile', sorted(p.stem for p in (REPO / 'config' / 'robots').glob(
    '*.yaml')))
def test_robot_profiles_set_only_shared_parameters(profile):
    from cpo_ros.deploy.profile import load_profile
    params = load_profile(profile)
    assert params['robot'] == profile
    # A task's scale is a section named after the task, holding that task's parameters.
    sections = {k: v for k, v in params.items() if isinstance(v, dict)}
    assert set(params) - set(sections) <= {s.name for s in SHARED_PARAMS}
    for task, section in sections.items():
        assert set(section) <= {s.key for s in settings.task_settings(task)}, task
