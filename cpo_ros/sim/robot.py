"""N unicycle mobile robots in one MuJoCo model, commanded like a Twist (v, yaw rate)."""

import copy
from dataclasses import dataclass, replace
from typing import Any
import xml.etree.ElementTree as ET

import mujoco
import numpy as np

from cpo_ros.paths import sim_file
from cpo_ros.sim.arena import add_arenas, Arenas, ArenaSpec
from cpo_ros.validation import check_range

MODEL_FILE = 'point_robot.xml'


RANGES = {'max_linear_velocity': (0.01, 100.0), 'max_angular_velocity': (0.01, 100.0),
          'physics_dt': (0.0001, 1.0), 'control_dt': (0.001, 10.0), 'mass': (0.01, 1000.0),
          'actuator_gain': (0.01, 10.0), 'servo_time_constant': (0.001, 10.0)}
"""Allowed [low, high] of the fields: `cpo-ros train` and the ROS parameters of the same names
(cpo_ros/ros/specs.py) check these, so what trains also deploys."""


@dataclass
class RobotConfig:
    """Physical constants of the robot and its velocity servos."""

    max_linear_velocity: float = 1.5
    """Commands are clipped to +- this forward velocity [m/s]."""
    max_angular_velocity: float = 2.0
    """Commands are clipped to +- this yaw rate [rad/s]."""
    control_dt: float = 0.2
    """Control period: simulated seconds per env step."""
    physics_dt: float = 0.04
    """MuJoCo timestep; control_dt must be a whole multiple of it (implicit servo damping
    keeps the servos stable at steps near their time constant)."""
    mass: float = 1.0
    """Chassis mass [kg]."""
    actuator_gain: float = 1.0
    """Factor between commanded and servo target velocity (an actuator gain error)."""
    servo_time_constant: float = 0.05
    """Time constant of the forward and yaw velocity servos [s]."""

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        for name, (low, high) in RANGES.items():
            check_range(name, getattr(self, name), low, high)
        ratio = self.control_dt / self.physics_dt
        if abs(ratio - round(ratio)) > 1e-6:
            raise ValueError(f'control_dt = {self.control_dt} is not a whole multiple of '
                             f'physics_dt = {self.physics_dt}')

    @property
    def substeps(self) -> int:
        """Return MuJoCo steps per control period."""
        return int(round(self.control_dt / self.physics_dt))


def apply_overrides(task: Any, robot: RobotConfig, overrides: dict[str, Any],
                    label: str) -> tuple[Any, RobotConfig]:
    """Return (task, robot) with keyword overrides applied to whichever dataclass owns each.

    Unknown keys are an error naming the task (label), not silently ignored; both results are
    validated.
    """
    task_keys, robot_keys = type(task).__dataclass_fields__, RobotConfig.__dataclass_fields__
    unknown = set(overrides) - set(task_keys) - set(robot_keys)
    if unknown:
        raise ValueError(f'unknown {label} settings: {sorted(unknown)}')
    task = replace(task, **{k: v for k, v in overrides.items() if k in task_keys})
    robot = replace(robot, **{k: v for k, v in overrides.items() if k in robot_keys})
    task.validate()
    robot.validate()
    return task, robot


def build_model_xml(num_robots: int, config: RobotConfig, arena: ArenaSpec | None = None) -> str:
    """Return MJCF text with num_robots copies of sim/point_robot.xml's robot (and arenas)."""
    tree = ET.parse(sim_file(MODEL_FILE))
    root = tree.getroot()
    root.find('option').set('timestep', repr(config.physics_dt))
    world = root.find('worldbody')
    actuators = root.find('actuator')
    body = world.find("body[@name='robot']")
    acts = list(actuators)
    world.remove(body)
    for act in acts:
        actuators.remove(act)
    body.find("geom[@name='robot_chassis']").set('mass', repr(config.mass))
    inertia = 0.4 * config.mass * 0.1 ** 2  # solid sphere of radius 0.1
    gains = {'robot_forward': config.mass / config.servo_time_constant,
             'robot_lateral': 10 * config.mass / config.servo_time_constant,
             'robot_turn': inertia / config.servo_time_constant}
    for i in range(num_robots):
        prefix = f'r{i}_'
        clone = copy.deepcopy(body)
        for element in clone.iter():
            if 'name' in element.attrib:
                element.set('name', prefix + element.get('name'))
        world.append(clone)
        for act in acts:
            a = copy.deepcopy(act)
            a.set('kv', repr(gains[act.get('name')]))
            a.set('name', prefix + act.get('name'))
            for key in ('site', 'joint'):
                if key in a.attrib:
                    a.set(key, prefix + a.get(key))
            actuators.append(a)
    if arena is not None:
        add_arenas(root, num_robots, arena)
    return ET.tostring(root, encoding='unicode')


class PointRobots:
    """N unicycle robots simulated in one MjModel (no contacts between them).

    qpos and qvel hold (x, y, yaw) per robot, so reading all states is numpy slicing and one
    mj_step advances every robot.
    """

    def __init__(self, num_robots: int, config: RobotConfig | None = None,
                 arena: ArenaSpec | None = None) -> None:
        if not 1 <= int(num_robots) <= 4096:
            raise ValueError(f'num_robots = {num_robots!r} is out of range: allowed [1, 4096]')
        self.config = config or RobotConfig()
        self.config.validate()
        self.num_robots = int(num_robots)
        self.model = mujoco.MjModel.from_xml_string(build_model_xml(self.num_robots,
                                                                    self.config, arena))
        self.data = mujoco.MjData(self.model)
        # Walls and obstacles (navigation tasks); None keeps the contact-free model.
        self.arenas = (Arenas(self.model, self.data, self.num_robots, arena)
                       if arena is not None else None)
        self._limits = np.array([self.config.max_linear_velocity,
                                 self.config.max_angular_velocity])
        self.gain = np.full(self.num_robots, self.config.actuator_gain)
        self._chassis = np.array([mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY,
                                                    f'r{i}_robot')
                                  for i in range(self.num_robots)])
        self.nominal_mass = self.model.body_mass[self._chassis].copy()
        mujoco.mj_forward(self.model, self.data)

    def set_dynamics(self, index, mass_scale, gain) -> None:
        """Scale robots' masses and set their actuator gains (domain randomisation)."""
        idx = np.atleast_1d(np.asarray(index, dtype=np.int64))
        self.model.body_mass[self._chassis[idx]] = self.nominal_mass[idx] * mass_scale
        self.gain[idx] = gain

    @property
    def time(self) -> float:
        """Return simulated seconds since construction."""
        return float(self.data.time)

    def set_pose(self, index, x, y, yaw) -> None:
        """Place robots (int or int array index) at rest at the given poses."""
        idx = np.atleast_1d(np.asarray(index, dtype=np.int64))
        q = self.data.qpos.reshape(self.num_robots, 3)
        v = self.data.qvel.reshape(self.num_robots, 3)
        q[idx, 0], q[idx, 1], q[idx, 2] = x, y, yaw
        v[idx] = 0.0

    def step(self, cmd: np.ndarray) -> None:
        """Advance one control period with commands (N, 2) [v, yaw rate], clipped to limits."""
        cmd = np.asarray(cmd, dtype=np.float64)
        if cmd.shape != (self.num_robots, 2):
            raise ValueError(f'command has shape {cmd.shape}, expected ({self.num_robots}, 2)')
        if not np.all(np.isfinite(cmd)):
            raise ValueError('command holds non-finite values')
        cmd = np.clip(cmd, -self._limits, self._limits) * self.gain[:, None]
        ctrl = self.data.ctrl.reshape(self.num_robots, 3)
        ctrl[:, 0] = cmd[:, 0]
        ctrl[:, 1] = 0.0
        ctrl[:, 2] = cmd[:, 1]
        mujoco.mj_step(self.model, self.data, nstep=self.config.substeps)

    def pose(self) -> np.ndarray:
        """Return (N, 3) x, y, yaw with yaw wrapped to (-pi, pi]."""
        q = self.data.qpos.reshape(self.num_robots, 3).copy()
        q[:, 2] = np.pi - np.mod(np.pi - q[:, 2], 2 * np.pi)
        return q

    def twist(self) -> np.ndarray:
        """Return (N, 2) forward velocity along the heading and yaw rate, as odometry reports."""
        q = self.data.qpos.reshape(self.num_robots, 3)
        v = self.data.qvel.reshape(self.num_robots, 3)
        forward = v[:, 0] * np.cos(q[:, 2]) + v[:, 1] * np.sin(q[:, 2])
        return np.stack([forward, v[:, 2]], axis=1)
