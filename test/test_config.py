"""config/*.yaml: standard ROS parameter files that set every declared parameter."""

from pathlib import Path

import pytest
import yaml

from cpo_ros.ros.graph import GRAPHS
from cpo_ros.ros.specs import (
    COMMAND_PARAMS,
    DEPLOY_EXECUTOR_PARAMS,
    EXECUTOR_PARAMS,
    LEARNER_CONFIG_PARAMS,
    NODE_PARAMS,
    TASK_PARAMS,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize('name', sorted(GRAPHS))
def test_every_declared_parameter_is_in_the_file(name):
    data = yaml.safe_load((REPO / 'config' / f'{name}.yaml').read_text())
    shared = set(data['/**']['ros__parameters'])
    assert {s.name for s in TASK_PARAMS + COMMAND_PARAMS} <= shared
    for entry in GRAPHS[name].nodes:
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
