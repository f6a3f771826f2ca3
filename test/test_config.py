"""config/*.yaml: standard ROS parameter files that set every declared parameter."""

from pathlib import Path
import re

import pytest
import yaml

from cpo_ros.ros.graph import GRAPHS
from cpo_ros.ros.specs import (
    DEPLOY_EXECUTOR_PARAMS,
    EXECUTOR_PARAMS,
    LEARNER_CONFIG_PARAMS,
    NODE_PARAMS,
    ROBOT_EXECUTOR_PARAMS,
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
        elif entry.target.endswith('RobotExecutor'):
            specs = ROBOT_EXECUTOR_PARAMS
        elif entry.name == 'policy_executor':
            specs = EXECUTOR_PARAMS
        # A field new in AlgoConfig is declared at once; its default holds until a file sets it.
        # Keys under /** reach every node (learn_on_robot: iteration_timeout_s, read by the
        # learner and the robot executor alike).
        missing = ({s.name for s in specs} - params - {s.name for s in LEARNER_CONFIG_PARAMS}
                   - shared)
        assert not missing, f'{name}.yaml /**/{entry.name} lacks {sorted(missing)}'
        unknown = params - {s.name for s in specs} - {'use_sim_time'}
        assert not unknown, f'{name}.yaml /**/{entry.name} sets undeclared {sorted(unknown)}'


def test_launch_files_exist_for_every_bringup():
    for name in GRAPHS:
        text = (REPO / 'launch' / f'{name}.launch.py').read_text()
        assert f"bringup_launch_description('{name}')" in text


class _Recorded:
    """A stand-in for a launch action or substitution: records its arguments."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


@pytest.mark.parametrize('name', sorted(GRAPHS))
def test_launch_arguments_are_declared_before_they_are_read(name, monkeypatch):
    # launch resolves a DeclareLaunchArgument's default when the declaration is reached: a
    # default reading an argument declared later fails every launch that does not set it
    # (learn_on_robot's use_sim_time read stand_in). launch is not on PyPI: its classes are
    # stood in by recorders, and the order of the real description's actions is checked.
    import sys
    import types

    import ament_index_python.packages

    kinds = {'launch': ('LaunchDescription',),
             'launch.actions': ('DeclareLaunchArgument', 'OpaqueFunction'),
             'launch.substitutions': ('LaunchConfiguration',),
             'launch_ros.actions': ('Node', 'SetParameter')}
    for module, names in kinds.items():
        stub = types.ModuleType(module)
        for cls in names:
            setattr(stub, cls, type(cls, (_Recorded,), {}))
        monkeypatch.setitem(sys.modules, module, stub)
    monkeypatch.setitem(sys.modules, 'launch_ros', types.ModuleType('launch_ros'))
    monkeypatch.setattr(ament_index_python.packages, 'get_package_share_directory',
                        lambda package: str(REPO))
    from cpo_ros.ros.launch_description import bringup_launch_description

    declared = []
    for action in bringup_launch_description(name).args[0]:
        kind = type(action).__name__
        reads = [v for v in (*action.args, *action.kwargs.values())
                 if type(v).__name__ == 'LaunchConfiguration']
        for read in reads:
            assert read.args[0] in declared, (name, kind, action.args, read.args[0])
        if kind == 'DeclareLaunchArgument':
            declared.append(action.args[0])
    assert {'params_file', 'robot', 'log_level'} <= set(declared)


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


def test_a_profile_with_a_missing_key_a_typo_or_a_misspelt_task_section_is_refused(tmp_path):
    # A missing control_dt would train, export and deploy at the point robot's period; a
    # misspelt task section would leave the task at the paper's scale (its safe strip too).
    from cpo_ros.deploy.profile import load_profile
    text = (REPO / 'config' / 'robots' / 'turtlebot3_burger.yaml').read_text()
    cases = {
        'control_dt': ("missing ['control_dt']", text.replace('    control_dt:', '    # ')),
        'circle': ("task section 'circel': no such task (did you mean circle?)",
                   text.replace('    circle:', '    circel:')),
        'accel': ("unknown key 'max_angular_acel' (did you mean max_angular_accel",
                  text.replace('max_angular_accel:', 'max_angular_acel:')),
    }
    for name, (message, changed) in cases.items():
        assert changed != text, name
        path = tmp_path / f'{name}.yaml'
        path.write_text(changed)
        with pytest.raises(ValueError, match=re.escape(message)):
            load_profile(str(path))
