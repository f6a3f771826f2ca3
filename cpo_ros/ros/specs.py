"""The parameters of every node, described once (config/*.yaml sets them; tests check both).

TASK_PARAMS are shared by several nodes and live under the `/**:` key of the parameter files,
so the simulator, the executor, the learner and the monitor can never disagree about them.
The task's own parameters are declared from its Params dataclass under the task's name
(`circle.x_limit`, `goal.obstacle_radius`: task_parameter_specs), so a file may hold several
tasks' settings and `task:=goal` takes Goal's, never Circle's.
"""

from dataclasses import fields, MISSING
import math
import re

from cpo_ros.ros.params import ParamSpec
from cpo_ros.sim.robot import RANGES as ROBOT_RANGES
from cpo_ros.sim.robot import RobotConfig
from cpo_ros.tasks.base import Task
from cpo_ros.tasks.registry import DEFAULT_TASK
from cpo_ros.training.config import ALGO_RANGES, CHOICES, TRAIN_RANGES
from cpo_ros.training.settings import field_docs, train_settings

_R = RobotConfig()

TASK_PARAMS = [
    ParamSpec('task', DEFAULT_TASK, "task: a registered name (`cpo-ros tasks` lists them) or a "
              "dotted path 'my_pkg.tasks:Corridor'; its parameters are <name>.<field>"),
    ParamSpec('num_envs', 16, 'robots simulated side by side (batched lock-step)', 1, 1024),
    ParamSpec('seed', 0, 'seed of the simulator, the action noise and the networks', 0, 2**31 - 1),
    ParamSpec('steps_per_iteration', 50_000, 'samples (all robots) per policy update (at least '
              'num_envs)', 1, 100_000_000),
]


def task_namespace(task: str) -> str:
    """Return the parameter namespace of a task: its name, a dotted path made a name."""
    return re.sub(r'[^A-Za-z0-9_]', '_', task)


def task_parameter_specs(task: str, cls: type[Task]) -> list[ParamSpec]:
    """Return a ParamSpec per field of the task's Params: <namespace>.<field>, range, doc."""
    docs = field_docs(cls.Params)
    out = []
    for f in fields(cls.Params):
        default = f.default if f.default is not MISSING else f.default_factory()
        if isinstance(default, tuple):
            default = list(default)
        low, high = f.metadata.get('range', (None, None))
        out.append(ParamSpec(f'{task_namespace(task)}.{f.name}', default,
                             docs.get(f.name, f.name), low, high))
    return out

SEED_OFFSET = ParamSpec('seed_offset', 0, 'added to seed, so the workers of a fleet simulate '
                        'and sample different streams', 0, 2**30)

SIM_BRIDGE_PARAMS = [
    SEED_OFFSET,
    ParamSpec('mode', 'lockstep', 'lockstep: step when the executor answers (training); '
              'realtime: a robot stand-in, stepping at odom_rate_hz with the latest cmd_vel',
              choices=('lockstep', 'realtime')),
    ParamSpec('cmd_timeout_s', 0.5, 'realtime mode: an older cmd_vel means stop [s]', 0.001,
              60.0),
    ParamSpec('real_time_factor', 0.0, 'realtime mode: 0 runs on the system clock as a robot '
              'driver; N > 0 runs N times faster than real time and publishes /clock (use_sim_'
              'time in the other nodes)', 0.0, 1000.0),
    ParamSpec('resend_period_s', 1.0, 'lockstep: re-publish an unanswered state after [s]',
              0.01, 60.0),
    ParamSpec('telemetry_rate_hz', 50.0, 'lockstep: wall-clock rate of robot 0 odom, '
              'safety/cost and /clock (realtime mode publishes every step)', 0.1, 100000.0),
    ParamSpec('odom_frame', 'odom', 'frame of the odometry pose'),
    ParamSpec('mass', _R.mass, 'robot mass [kg]', *ROBOT_RANGES['mass']),
    ParamSpec('actuator_gain', _R.actuator_gain, 'servo gain error factor',
              *ROBOT_RANGES['actuator_gain']),
]

ROBOT_PARAMS = [
    ParamSpec('robot', 'point', 'robot profile (config/robots/<robot>.yaml) these settings '
              'come from; recorded in checkpoints and exports'),
    ParamSpec('max_linear_velocity', _R.max_linear_velocity, 'forward speed limit: action '
              'range in training, output limit in deployment [m/s]',
              *ROBOT_RANGES['max_linear_velocity']),
    ParamSpec('max_angular_velocity', _R.max_angular_velocity, 'yaw rate limit [rad/s]',
              *ROBOT_RANGES['max_angular_velocity']),
    ParamSpec('max_linear_accel', 3.0, 'deployment: limit on the change of the forward '
              'command [m/s^2]', 0.001, 1000.0),
    ParamSpec('max_angular_accel', 6.0, 'deployment: limit on the change of the yaw rate '
              'command [rad/s^2]', 0.001, 1000.0),
    ParamSpec('control_dt', _R.control_dt, 'control period: seconds per policy step in '
              'training and deployment [s]', *ROBOT_RANGES['control_dt']),
    ParamSpec('physics_dt', _R.physics_dt, 'MuJoCo timestep; divides control_dt and '
              '1/odom_rate_hz [s]', *ROBOT_RANGES['physics_dt']),
    ParamSpec('odom_rate_hz', 25.0, "the robot's odometry rate: the stand-in robot (sim "
              'bridge realtime mode) steps and publishes at it', 0.1, 1000.0),
    ParamSpec('dr_mass_scale', [1.0, 1.0], 'domain randomisation: mass factor range per '
              'episode [low, high]', 0.01, 10.0),
    ParamSpec('dr_gain_scale', [1.0, 1.0], 'domain randomisation: actuator gain factor range '
              '[low, high]', 0.01, 10.0),
    ParamSpec('dr_max_latency_steps', 0, 'domain randomisation: command latency 0..this '
              'control periods', 0, 100),
    ParamSpec('dr_position_noise', 0.0, 'odometry position noise std [m]', 0.0, 100.0),
    ParamSpec('dr_yaw_noise', 0.0, 'odometry heading noise std [rad]', 0.0, 100.0),
    ParamSpec('dr_velocity_noise', 0.0, 'odometry velocity noise std', 0.0, 100.0),
]
"""A robot profile (config/robots/): under `/**`, so simulator, learner and executor agree."""

COMMAND_PARAMS = [
    ParamSpec('cmd_vel_stamped', True, 'cmd_vel as geometry_msgs/TwistStamped (Jazzy '
              'diff_drive_controller); false: plain Twist for older drivers'),
    ParamSpec('base_frame', 'base_link', "the robot's body frame: frame_id of stamped "
              'commands, child frame of the odometry'),
]
"""How velocity commands go to the robot (or the stand-in): under `/**`, so both ends agree."""

POSE_PARAMS = [
    ParamSpec('pose_source', 'odom', 'odom: nav_msgs/Odometry on odom (velocities from its '
              'twist); pose: geometry_msgs/PoseWithCovarianceStamped on pose (AMCL, SLAM, '
              'motion capture; velocities from pose differences)', choices=('odom', 'pose')),
    ParamSpec('task_frame', 'odom', 'frame the task is placed in (e.g. map); a pose in another '
              'frame is refused: stop'),
    ParamSpec('task_origin', [0.0, 0.0, 0.0], "the task's origin [x, y, yaw] in task_frame "
              '[m, m, rad]', -1e6, 1e6),
    ParamSpec('pose_timeout_s', 0.5, 'a pose older than this (by header.stamp or by arrival) '
              'means stop [s]', 0.001, 60.0),
    ParamSpec('stamp_tolerance_s', 0.25, 'allowed clock offset between the pose source and '
              'this machine [s]', 0.0, 60.0),
]
"""Where the robot is: under `/**`, so the monitor and the executor agree."""

SCAN_PARAMS = [
    ParamSpec('laser_frame', 'base_scan', 'frame_id of the LaserScan on scan (the stand-in '
              'publishes in it; a scan in another frame is refused: stop)'),
    ParamSpec('laser_pose', [0.0, 0.0, 0.0], "the laser's [x, y, yaw] in the robot's base frame "
              '[m, m, rad]', -100.0, 100.0),
    ParamSpec('scan_timeout_s', 0.5, 'a scan older than this (by header.stamp or by arrival) '
              'means stop [s]', 0.001, 60.0),
    ParamSpec('scan_min_valid_share', 0.5, 'a scan with fewer measurements than this share of '
              'its readings (NaN, or outside [range_min, range_max]; +inf and -inf are '
              'measurements, REP 117) is refused: stop. One measurement at least, always', 0.0,
              1.0),
    ParamSpec('scan_num_rays', 360, "the scanner's readings per scan (the stand-in's "
              'LaserScan)', 1, 100_000),
    ParamSpec('scan_fov', 6.283185307179586, "the scanner's field of view, centred ahead [rad]",
              0.01, 6.283185307179586),
    ParamSpec('scan_range_min', 0.05, "the scanner's range_min [m]", 0.0, 1000.0),
    ParamSpec('scan_range_max', 4.0, "the scanner's range_max [m]", 0.01, 1000.0),
    ParamSpec('scan_noise_std', 0.0, 'range noise of the simulated scanner [m]', 0.0, 10.0),
    ParamSpec('scan_dropout', 0.0, 'share of readings the simulated scanner loses (NaN)', 0.0,
              0.99),
    ParamSpec('robot_radius_m', 0.1, "radius of a disc around the base frame that holds the "
              "robot's body (the scan guard's clearance; learning on the robot, a return "
              "inside it is a contact) [m]", 0.0, 100.0),
]
"""The robot's laser scanner (robot profiles set it): under `/**`, shared by the stand-in,
the monitor's scan guard, the deployed executor and the robot executor."""

SCAN_GUARD_PARAMS = [
    ParamSpec('scan_guard', True, 'gate, with a task that reads a scan (navigation): also '
              'refuse commands whose rollout brings the body within scan_margin_m of a scan '
              'point, and stop on a stale scan (false: the guard off)'),
    ParamSpec('scan_margin_m', 0.1, 'free space a passing command keeps to every scan point '
              '[m]', 0.0, 100.0),
]

EXECUTOR_PARAMS = [
    ParamSpec('deterministic', False, 'act with the mean action (true) or sample (training)'),
    ParamSpec('executor_id', '', "this executor's name in the learner's shares (empty: the "
              "node's fully qualified name, e.g. /worker_0/policy_executor)"),
    ParamSpec('chunk_steps', 0, 'lock-step steps per rollout chunk sent to the learner (each '
              'step is num_envs samples); 0: steps_per_iteration / num_envs, one chunk per '
              'iteration; a slow robot sends small chunks', 0, 100_000_000),
    ParamSpec('chunk_fraction', 1.0, 'with chunk_steps 0: chunks of this fraction of '
              'steps_per_iteration (a fleet of K workers: 1/K)', 1e-6, 1.0),
    SEED_OFFSET,
]

DEPLOY_EXECUTOR_PARAMS = [
    ParamSpec('policy_dir', 'policy', 'directory of an exported policy (policy.pt, policy.json)'),
    ParamSpec('autostart', True, 'configure and activate at start (no lifecycle manager)'),
    ParamSpec('allow_profile_mismatch', False, 'deploy even when control_dt or the limits '
              'differ from those the policy was trained with (a warning instead of a refusal)'),
    ParamSpec('diagnostics_rate_hz', 2.0, 'diagnostics publication rate', 0.01, 100.0),
]

ROBOT_EXECUTOR_PARAMS = [
    ParamSpec('executor_id', 'robot', "this robot's name in the learner's shares"),
    ParamSpec('chunk_episodes', 0, 'episodes per rollout chunk (a chunk also ends at a pause '
              'or stop); 0: as many as fill steps_per_iteration, at most what half of '
              'iteration_timeout_s holds', 0, 1_000_000),
    ParamSpec('late_tolerance', 0.5, 'a control step later than control_dt * (1 + this) after '
              'the previous one is counted and flagged late in the samples', 0.0, 100.0),
    ParamSpec('shield_samples', 'keep', 'a step whose command the shield replaced: keep (the '
              "policy's action and log-prob; the shield is part of the environment), cost (as "
              'keep, plus intervention_cost on the first constraint), drop (no sample; the '
              'stream is cut there)', choices=('keep', 'cost', 'drop')),
    ParamSpec('intervention_cost', 1.0, 'shield_samples cost: cost per replaced step', 0.0,
              1e6),
    ParamSpec('reset_position_tolerance', 0.05, 'the reset behaviour has reached the start '
              'pose within this distance [m]', 1e-4, 100.0),
    ParamSpec('reset_yaw_tolerance', 0.2, '... and within this heading [rad]', 1e-4, 3.15),
    ParamSpec('reset_timeout_s', 60.0, 'a reset not there after this long starts the episode '
              'where the robot stands [s, ROS clock]', 0.1, 1e6),
    ParamSpec('max_policy_age_s', 10.0, 'the robot stops when nothing came from the learner '
              '(a policy, or the cpo/iteration status it re-sends every second) for this long '
              '[s, steady clock]', 0.1, 1e6),
    ParamSpec('start_paused', False, 'start paused: learning begins with the pause service '
              '(learning/pause false)'),
    ParamSpec('diagnostics_rate_hz', 1.0, 'diagnostics publication rate', 0.01, 100.0),
    SEED_OFFSET,
]

LEARNER_PARAMS = [
    ParamSpec('out', 'runs/circle_sim', 'run directory: progress.csv, curves.png, checkpoints'),
    ParamSpec('resume', 'auto', 'auto: continue from out/checkpoints/last.pt when it exists '
              '(a respawned learner), else start; true: continue (refused without a '
              'checkpoint); false: start (refused when out already holds a run)',
              choices=('auto', 'true', 'false'), dynamic_typing=True),
    ParamSpec('init_from', '', 'a new run starts from the policy and critics of this run '
              'directory or checkpoint (fine-tuning, e.g. on the robot); its own target_kl '
              "sets the trust region ('': from scratch; a resumed run ignores it)"),
    ParamSpec('rollout_timeout_s', 30.0, 'no rollout for this long (steady time): re-publish '
              'the policy so that executors sample again (0: never); set above the sampling '
              'time of one iteration on a real robot', 0.0, 1e6),
    ParamSpec('max_failed_updates', 3, 'updates failing in a row after which the learner '
              'exits with code 1 (for respawn or the operator)', 1, 1000),
    ParamSpec('fit_while_sampling', True, 'publish the new policy once it is final and fit the '
              'critics in a child process while the executors sample (off: when executors and '
              'learner share too few cores, the fit competes with the lock-step sampling)'),
    ParamSpec('shutdown_when_done', True, 'end the process after the last iteration'),
    ParamSpec('iteration_timeout_s', 60.0, 'an iteration waiting longer for samples proceeds '
              'on what arrived when that is at least min_fraction, else warns and waits on '
              '[s, wall clock]', 0.1, 1e6),
    ParamSpec('queue_bytes', 0, 'bytes of rollout chunks that may wait while an update runs '
              "(0: twice the size cap of one iteration's rollout); more are dropped and "
              'counted', 0, 2**40),
    ParamSpec('executor_queue_bytes', 0, 'of queue_bytes, what one executor id may fill (0: '
              "the size cap of one iteration's rollout)", 0, 2**40),
    ParamSpec('min_fraction', 0.5, 'least fraction of steps_per_iteration an iteration may '
              'proceed on after iteration_timeout_s', 0.0, 1.0),
    ParamSpec('cost_limit', -1.0, 'limit d on the expected cost per episode; a list gives '
              "one per constraint (e.g. [5.0, 10.0] with circle.speed_limit); -1: the task's "
              'default limits (`cpo-ros tasks`)', -1.0, 1e9, dynamic_typing=True),
]


LEARNER_TRAIN_KEYS = ('iterations', 'checkpoint_every', 'torch_threads', 'tensorboard')
"""TrainConfig settings the learner takes as parameters of their own (the rest are shared
task parameters, or set by the graph: env_id, out)."""


def _from_config(hand: list[ParamSpec]) -> list[ParamSpec]:
    """Return a ParamSpec for each AlgoConfig setting and LEARNER_TRAIN_KEYS, hand lacks.

    One source: the names, defaults and descriptions are the dataclass fields and their
    docstrings (cpo_ros.training.settings, as for `cpo-ros train --set`), the allowed values
    their ALGO_RANGES, TRAIN_RANGES and CHOICES, which validate() checks at start-up too. Only
    what ROS adds is written by hand above (cost_limit's -1, out's default, node settings).
    """
    have = {spec.name for spec in hand}
    specs = []
    for s in train_settings():
        if s.key in have or not (s.owner == 'algo' or s.key in LEARNER_TRAIN_KEYS):
            continue
        allowed = {**ALGO_RANGES, **TRAIN_RANGES}.get(s.key)
        low = high = None
        if allowed is not None:
            low = allowed.low
            high = allowed.high if math.isfinite(allowed.high) else None
        specs.append(ParamSpec(s.key, list(s.default) if isinstance(s.default, tuple)
                               else s.default, s.doc, low, high, CHOICES.get(s.key)))
    return specs


LEARNER_CONFIG_PARAMS = _from_config(LEARNER_PARAMS + TASK_PARAMS)
"""Learner parameters declared from the dataclasses (parameter files may leave them out)."""
LEARNER_PARAMS += LEARNER_CONFIG_PARAMS

MONITOR_PARAMS = [
    ParamSpec('area_type', 'task', "safe area: the task's own (Task.safe_area), a rectangle "
              "or a polygon, in the task's coordinates (task_origin at 0, 0)",
              choices=('task', 'rectangle', 'polygon')),
    ParamSpec('area_rectangle', [-2.5, 2.5, -100.0, 100.0],
              'rectangle [x_min, x_max, y_min, y_max] [m]', -1e6, 1e6),
    ParamSpec('area_polygon', [-2.5, -100.0, 2.5, -100.0, 2.5, 100.0, -2.5, 100.0],
              'polygon [x0, y0, x1, y1, ...] [m]', -1e6, 1e6),
    ParamSpec('shield_mode', 'none', 'none: no cmd_vel (simulation training); gate: pass '
              'policy/cmd_vel only when it keeps the robot inside; pass: forward it unchanged',
              choices=('none', 'gate', 'pass')),
    ParamSpec('cmd_timeout_s', 0.5, 'a policy command older than this means stop [s]', 0.001,
              60.0),
    ParamSpec('gate_rate_hz', 20.0, 'rate of the gated cmd_vel when no new input arrives',
              0.1, 1000.0),
    ParamSpec('shield_horizon_s', 0.8, 'look-ahead of the command rollout [s]', 0.01, 10.0),
    ParamSpec('shield_turn_rate', 1.0, 'yaw rate of the turn back inside [rad/s]', 0.01, 100.0),
    ParamSpec('shield_creep_speed', 0.2, 'speed back inside once facing it [m/s]', 0.0, 10.0),
    ParamSpec('shield_margin_m', 0.05, 'distance from the boundary a passing command must keep '
              '(pose noise, latency, actuator error) [m]', 0.0, 100.0),
    ParamSpec('e_stop_heartbeat_s', 0.0, 'deadman: with > 0, stop when no e_stop message '
              '(true or false) arrived for this long, as from a relay or joystick that '
              'publishes continuously [s] (0: off); a heartbeat never releases a latched stop',
              0.0, 3600.0),
    ParamSpec('command_source', 'policy_executor', 'the one node whose policy/cmd_vel the '
              "gate takes (relative: in this node's namespace); commands while any other "
              'node publishes there are refused (see docs/safety.md for what this does not '
              'prevent without SROS2)'),
    ParamSpec('latch_on_source_loss', True, 'latch the e-stop when the publisher commands '
              'were taken from leaves policy/cmd_vel (the executor died or restarted; a '
              'process taking its name must not drive); release: the e_stop service'),
    ParamSpec('publish_cost', False, 'publish safety/cost from the pose (on a robot); in '
              'simulation the bridge owns that topic and the monitor compares'),
    ParamSpec('diagnostics_rate_hz', 1.0, 'diagnostics publication rate', 0.01, 100.0),
]

SHARED_PARAMS = TASK_PARAMS + ROBOT_PARAMS + COMMAND_PARAMS + POSE_PARAMS + SCAN_PARAMS
"""Parameters under `/**` in every parameter file (nodes declare the ones they use)."""

NODE_PARAMS = {
    'sim_bridge': SIM_BRIDGE_PARAMS,
    'policy_executor': EXECUTOR_PARAMS,
    'learner': LEARNER_PARAMS,
    'safe_area_monitor': MONITOR_PARAMS + SCAN_GUARD_PARAMS,
}
"""Node-specific parameters (`/**/<node>` sections); every node also declares TASK_PARAMS."""

def _spec(specs: list[ParamSpec], name: str) -> ParamSpec:
    return next(s for s in specs if s.name == name)


ROBOT_EXECUTOR_OWN_PARAMS = ROBOT_EXECUTOR_PARAMS + [_spec(LEARNER_PARAMS, 'iteration_timeout_s')]
"""What `policy_executor --robot` declares beyond the shared parameters (the learner's iteration
timeout too: an iteration's samples end by it)."""

_CLASS_PARAMS = {
    'SimBridge': SIM_BRIDGE_PARAMS + ROBOT_PARAMS + COMMAND_PARAMS + TASK_PARAMS + SCAN_PARAMS,
    'PolicyExecutor': EXECUTOR_PARAMS + TASK_PARAMS,
    'RobotExecutor': (ROBOT_EXECUTOR_OWN_PARAMS + ROBOT_PARAMS + COMMAND_PARAMS + POSE_PARAMS
                      + TASK_PARAMS + SCAN_PARAMS),
    'DeployedPolicyExecutor': (DEPLOY_EXECUTOR_PARAMS + ROBOT_PARAMS + COMMAND_PARAMS
                               + POSE_PARAMS + TASK_PARAMS + SCAN_PARAMS),
    'Learner': LEARNER_PARAMS + ROBOT_PARAMS + TASK_PARAMS,
    'SafeAreaMonitor': (MONITOR_PARAMS + ROBOT_PARAMS + COMMAND_PARAMS + POSE_PARAMS
                        + TASK_PARAMS + SCAN_PARAMS + SCAN_GUARD_PARAMS),
}


def node_parameters(cls: type) -> list[ParamSpec]:
    """Return every parameter a node class declares (its own and the shared ones it uses)."""
    return _CLASS_PARAMS[cls.__name__]


def all_parameter_names() -> set[str]:
    """Return the names of every parameter some node of cpo_ros declares."""
    return {spec.name for specs in _CLASS_PARAMS.values() for spec in specs}
