"""Robot profiles (config/robots/<name>.yaml): one robot's limits, control period and task scale.

A profile is a ROS parameter file with one `/**` section, so launch files and `cpo-ros bringup`
layer it over a bring-up's parameters, while `cpo-ros train --robot` reads the same file. The
training run records the profile (TrainConfig.robot), the export copies it into policy.json,
and the deployed executor compares it with its own settings (check_deployment).
"""

import difflib
import math
from pathlib import Path
from typing import Any

import yaml

ROBOT_CONFIG_KEYS = ('max_linear_velocity', 'max_angular_velocity', 'control_dt', 'physics_dt')
"""Profile keys that are RobotConfig fields (the simulated robot)."""
TASK_KEYS = ()
"""Flat profile keys that are task parameters: none; a profile scales a task in a section
named after it (`circle: {x_limit: 0.5}`, ROS parameters circle.x_limit), see task_scale."""
RANDOMIZATION_KEYS = {'dr_mass_scale': 'mass_scale', 'dr_gain_scale': 'gain_scale',
                      'dr_max_latency_steps': 'max_latency_steps',
                      'dr_position_noise': 'position_noise', 'dr_yaw_noise': 'yaw_noise',
                      'dr_velocity_noise': 'velocity_noise'}
"""Profile keys of the domain randomisation, and their DomainRandomization field names."""
DEPLOY_KEYS = ('control_dt', 'max_linear_velocity', 'max_angular_velocity', 'max_linear_accel',
               'max_angular_accel')
"""What a deployment must share with training (compared by check_deployment)."""
SCAN_KEYS = ('laser_frame', 'laser_pose', 'scan_num_rays', 'scan_fov', 'scan_range_min',
             'scan_range_max', 'scan_noise_std', 'scan_dropout', 'scan_min_valid_share',
             'robot_radius_m')
"""Profile keys of the laser scanner and the body (navigation: stand-in, sim, scan guard)."""
REQUIRED_KEYS = ('robot', *ROBOT_CONFIG_KEYS, 'max_linear_accel', 'max_angular_accel',
                 'odom_rate_hz')
"""What every profile states: the robot's name, limits and periods (a missing one would be
filled with the point robot's and train, export and deploy at its rate)."""
KNOWN_KEYS = set(REQUIRED_KEYS) | set(SCAN_KEYS) | set(RANDOMIZATION_KEYS)


def profile_path(name: str) -> Path:
    """Return config/robots/<name>.yaml, or name itself when it is a path to a file."""
    from cpo_ros.paths import share_dir

    if name.endswith('.yaml') or '/' in name:
        return Path(name)
    return share_dir() / 'config' / 'robots' / f'{name}.yaml'


def available_profiles() -> list[str]:
    """Return the names of the profiles shipped in config/robots/."""
    return sorted(p.stem for p in profile_path('point').parent.glob('*.yaml'))


def load_profile(name: str) -> dict[str, Any]:
    """Return a profile's parameters; ValueError naming the file and the problem."""
    path = profile_path(name)
    if not path.is_file():
        raise ValueError(f'robot profile {name!r}: no file {path} (shipped profiles: '
                         f'{available_profiles()})')
    try:
        data = yaml.safe_load(path.read_text())
        params = dict(data['/**']['ros__parameters'])
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise ValueError(f'robot profile {path}: not a ROS parameter file with a /** section '
                         f'({exc})') from exc
    problems = []
    for key in sorted(set(params) - KNOWN_KEYS):
        if isinstance(params[key], dict):
            # A task's section (its ROS namespace). A dotted-path task's cannot be told from a
            # typo, so only one close to a registered task's name is refused.
            names = _task_sections()
            close = difflib.get_close_matches(key, names, n=2, cutoff=0.75)
            if key not in names and close:
                problems.append(f'task section {key!r}: no such task (did you mean '
                                f'{" or ".join(close)}?)')
            continue
        close = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=2)
        problems.append(f'unknown key {key!r}' + (f' (did you mean {" or ".join(close)}?)'
                                                  if close else ''))
    missing = [k for k in REQUIRED_KEYS if k not in params]
    if missing:
        problems.append(f'missing {missing} (every profile states {list(REQUIRED_KEYS)})')
    if problems:
        raise ValueError(f'robot profile {path}: {"; ".join(problems)}; the keys are listed in '
                         f'docs/reference.md')
    return params


def _task_sections() -> list[str]:
    """Return the ROS namespace of every registered task (a profile's task sections)."""
    from cpo_ros.ros.specs import task_namespace
    from cpo_ros.tasks.registry import registered

    return sorted(task_namespace(name) for name in registered())


def env_overrides(profile: dict[str, Any]) -> dict[str, Any]:
    """Return the robot keyword overrides of a profile (for make_vec_env)."""
    return {k: profile[k] for k in ROBOT_CONFIG_KEYS if k in profile}


def task_scale(profile: dict[str, Any], task: str) -> dict[str, Any]:
    """Return the profile's parameters of a task: its section named after the task."""
    from cpo_ros.ros.specs import task_namespace

    section = profile.get(task_namespace(task), {})
    return dict(section) if isinstance(section, dict) else {}


def randomization_kwargs(profile: dict[str, Any]) -> dict[str, Any]:
    """Return DomainRandomization keyword arguments of a profile (empty: none)."""
    out = {}
    for key, field in RANDOMIZATION_KEYS.items():
        if key in profile:
            value = profile[key]
            out[field] = tuple(value) if isinstance(value, (list, tuple)) else value
    return out


def deployment_record(robot: dict[str, Any], task_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Return what an export records of the robot: profile name, control_dt, limits.

    robot is TrainConfig.robot (empty for runs without a profile: the simulator's defaults,
    with any task_kwargs overrides, and no acceleration limits).
    """
    from cpo_ros.sim.robot import RobotConfig

    defaults = RobotConfig()
    record: dict[str, Any] = {'profile': robot.get('robot')}
    for key in DEPLOY_KEYS:
        value = robot.get(key, task_kwargs.get(key, getattr(defaults, key, None)))
        record[key] = None if value is None else float(value)
    return record


def check_deployment(meta: dict[str, Any], settings: dict[str, Any],
                     where: str) -> list[str]:
    """Return each way the deployment settings differ from the export's robot record."""
    trained = meta.get('robot')
    if not trained:
        return [f'exported policy {where}: policy.json records no robot profile, control_dt or '
                f'limits (exported before profiles existed): re-export it']
    problems = []
    for key in DEPLOY_KEYS:
        then, now = trained.get(key), settings.get(key)
        if then is None or now is None or math.isclose(float(then), float(now), rel_tol=1e-6):
            continue
        unit = {'control_dt': 's', 'max_linear_velocity': 'm/s', 'max_angular_velocity': 'rad/s',
                'max_linear_accel': 'm/s^2', 'max_angular_accel': 'rad/s^2'}[key]
        extra = (f' ({1 / float(now):.3g} Hz here, {1 / float(then):.3g} Hz in training)'
                 if key == 'control_dt' else '')
        problems.append(f'{key} is {float(now):g} {unit} here but {float(then):g} {unit} in '
                        f'training{extra}')
    if problems:
        profile = trained.get('profile')
        problems[-1] += (f' (trained with robot profile {profile!r}' if profile else
                         ' (trained without a robot profile, the simulator defaults')
        problems[-1] += f', per {where}/policy.json)'
    return problems
