"""The public task interface: what a task declares, vectorised over N robots (numpy).

A task is a `Task` subclass with a `Params` dataclass. It owns everything that makes the task:
the observation (from pose, twist and its sensor readings), the reward, one or more named costs
with default limits, termination, the reset distribution, the episode length, the sensors it
needs, the safe area the monitor and the shield enforce, and RViz markers as plain data. The
simulator (cpo_ros.sim), the ROS nodes and the deploy take whatever it declares; none of them
names a task. A task never imports the simulator, the learner or rclpy.

Arrays: pose (N, 3) x, y, yaw [m, m, rad] in the task frame; twist (N, 2) forward velocity and
yaw rate [m/s, rad/s], as odometry reports them; readings (N, len(sensor_labels)).
"""

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from cpo_ros.tasks.safe_area import SafeArea
from cpo_ros.tasks.scan import ScanSpec
from cpo_ros.validation import check_range


def param(default: Any, low: float | None = None, high: float | None = None, *,
          integer: bool = False, low_open: bool = False, high_open: bool = False) -> Any:
    """Return a Params field with an allowed range, checked by TaskParams.validate.

    Document the field with a docstring under it, as every other setting.
    """
    return field(default=default, metadata={'range': (low, high), 'integer': integer,
                                            'low_open': low_open, 'high_open': high_open})


@dataclass(frozen=True)
class TaskParams:
    """A task's parameters: settings (`--set`, `task:=` node parameters, policy.json)."""

    max_episode_steps: int = param(1000, 1, 10**7, integer=True)
    """Steps per episode (an episode is truncated there)."""

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its range, then check()."""
        for f in fields(self):
            low, high = f.metadata.get('range', (None, None))
            if low is None and high is None:
                continue
            check_range(f.name, getattr(self, f.name), -float('inf') if low is None else low,
                        float('inf') if high is None else high,
                        low_open=f.metadata['low_open'], high_open=f.metadata['high_open'],
                        integer=f.metadata['integer'])
        self.check()

    def check(self) -> None:
        """Raise ValueError when fields do not fit together (override; ranges are checked)."""


@dataclass(frozen=True)
class Marker:
    """One RViz marker as plain data (the sim bridge turns it into visualization_msgs/Marker).

    kind: 'points' (a sphere per point), 'line_strip' (points joined in order) or 'discs'
    (a flat cylinder of diameter `scale` per point). Coordinates are in the task frame.
    """

    ns: str
    kind: str
    points: np.ndarray
    """(K, 2) x, y [m]."""
    scale: float
    """Sphere diameter, line width or disc diameter [m]."""
    rgba: tuple[float, float, float, float]


@dataclass(frozen=True)
class Arena:
    """Walls and obstacle slots the simulator builds as MuJoCo geoms (navigation tasks).

    The robot's body collides with them (Task.contacts), and a task's range scan
    (Task.scan_spec) is cast against them. Each episode places up to max_obstacles cylinders
    (Task.obstacles).
    """

    half_size: float
    """Walls' inner faces at |x| = half_size and |y| = half_size [m]; 0: no walls."""
    max_obstacles: int
    """Cylinder slots per robot."""
    obstacle_radius: float
    """Radius of every obstacle cylinder [m]."""


@dataclass
class StepResult:
    """What a task gives back for one step of N robots."""

    reward: np.ndarray
    """(N,) float32."""
    costs: np.ndarray
    """(N, len(cost_names)) float32, in the order of cost_names."""
    terminated: np.ndarray | None = None
    """(N,) bool: episodes that ended in a terminal state (None: none did)."""
    info: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-robot figures of the step ((N,) arrays), e.g. the goals reached."""


def check_start(start: Any, n: int) -> np.ndarray:
    """Return a task's reset() start poses as (n, 3) float64; ValueError saying what is wrong."""
    try:
        start = np.asarray(start, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError('reset() returned start poses that are not an array of numbers') from None
    if start.shape != (n, 3):
        raise ValueError(f'reset() returned start poses of shape {start.shape} for {n} env(s), '
                         f'expected ({n}, 3)')
    if not np.all(np.isfinite(start)):
        raise ValueError(f'reset() returned non-finite start poses in env(s) '
                         f'{np.flatnonzero(~np.isfinite(start).all(axis=1))[:8].tolist()}')
    return start


def check_observation(obs: Any, n: int, obs_dim: int) -> np.ndarray:
    """Return a task's observation() as an (n, obs_dim) array; ValueError saying what is wrong."""
    _, (obs,) = _numeric_parts([('observation() gave observations', obs, (n, obs_dim))], n)
    return np.asarray(obs)


def _numeric_parts(parts: list[tuple[str, Any, tuple[int, ...]]],
                   n: int) -> tuple[list[np.ndarray], list[Any]]:
    """Check (name, value, shape) triples: numbers, of the shape, finite per env.

    Return the float64 copies and the values as given (lists made arrays); ValueError names
    the first bad part.
    """
    checked = []
    for name, value, shape in parts:
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f'{name}, not an array of numbers') from None
        if array.shape != shape:
            raise ValueError(f'{name} of shape {array.shape}, expected {shape}')
        checked.append(array)
    # One sum is finite when every value is (the per-env search runs only when it is not).
    if not np.isfinite(sum(array.sum() for array in checked)):
        for (name, _, _), array in zip(parts, checked, strict=True):
            bad = ~np.isfinite(array).reshape(n, -1).all(axis=1)
            if bad.any():
                raise ValueError(f'{name} with non-finite values in env(s) '
                                 f'{np.flatnonzero(bad)[:8].tolist()}')
    return checked, [np.asarray(value) for _, value, _ in parts]


def check_step(result: Any, obs: Any, n: int, num_costs: int,
               obs_dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return a task's step as arrays, or raise ValueError saying what is wrong.

    reward (n,), costs (n, m) and obs (n, obs_dim) come back as the task's own numeric arrays
    (lists made arrays), terminated as (n,) bool.

    The one check of a step's output, at start-up (the registry) and at every step (the
    simulator): a StepResult whose reward and costs, and the observation after the step, have
    the documented shapes and finite values, and terminated (n,) or None.
    """
    if not isinstance(result, StepResult):
        raise ValueError(f'step() returned {type(result).__name__}, expected StepResult')
    _, (reward, costs, obs) = _numeric_parts(
        [('step() gave reward', result.reward, (n,)),
         ('step() gave costs', result.costs, (n, num_costs)),
         ('observation() gave observations', obs, (n, obs_dim))], n)
    terminated = (np.zeros(n, bool) if result.terminated is None
                  else np.asarray(result.terminated))
    if terminated.shape != (n,):
        raise ValueError(f'step() gave terminated of shape {terminated.shape}, expected ({n},) '
                         f'or None')
    return reward, costs, obs, terminated.astype(bool)


class Task:
    """Base of every task; subclasses set Params and write the methods marked 'override'.

    A Task instance also holds the per-robot state of N episodes (objects, goals), which
    reset() draws and step() updates. The methods observation, safe_area, cost_names and
    sensor_labels depend on the parameters only, so a robot (the deploy) calls them with its
    own odometry and sensor readings.
    """

    Params: ClassVar[type[TaskParams]] = TaskParams
    """The parameter dataclass of the task."""
    randomized_dynamics: ClassVar[bool] = False
    """The simulator draws the robot's mass, gain and latency each episode even without a
    randomising profile (a profile's dr_* settings randomise any task)."""

    def __init__(self, params: TaskParams | None = None, num_envs: int = 1) -> None:
        self.params = self.Params() if params is None else params
        if not isinstance(self.params, self.Params):
            raise TypeError(f'{type(self).__name__} takes {self.Params.__name__}, got '
                            f'{type(self.params).__name__}')
        self.params.validate()
        self.num_envs = int(num_envs)
        self.contacts = np.zeros(self.num_envs, bool)
        """Whether each robot's body touches a wall or an obstacle of its arena now: written by
        the simulator before step() when the task declares an arena()."""

    # -- declarations ---------------------------------------------------------------------------
    @property
    def cost_names(self) -> tuple[str, ...]:
        """Return the names of the constraints, in the order of the cost vector (override)."""
        return ('cost',)

    @property
    def default_cost_limits(self) -> tuple[float, ...]:
        """Return each constraint's default limit on the expected cost per episode (override)."""
        raise NotImplementedError

    @property
    def sensor_labels(self) -> tuple[str, ...]:
        """Return the names of the task's sensor readings (override when it has sensors)."""
        return ()

    @property
    def observation_labels(self) -> tuple[str, ...]:
        """Return the names of the observation entries, in order (override)."""
        raise NotImplementedError

    @property
    def obs_dim(self) -> int:
        """Return the size of an observation."""
        return len(self.observation_labels)

    @property
    def max_episode_steps(self) -> int:
        """Return the episode length."""
        return int(self.params.max_episode_steps)

    def safe_area(self) -> SafeArea | None:
        """Return the area the monitor and the shield keep the robot in (None: no area)."""
        return None

    def markers(self, index: int = 0) -> list[Marker]:
        """Return robot index's task markers for RViz (objects, goals)."""
        return []

    # -- navigation: an arena the simulator builds, a scan it casts, goals a robot takes -------
    def arena(self) -> Arena | None:
        """Return the walls and obstacle slots the simulator builds (None: an open floor)."""
        return None

    def obstacles(self, index: int) -> np.ndarray:
        """Return robot index's obstacle centres (K, 2) this episode, K <= max_obstacles."""
        return np.zeros((0, 2))

    @property
    def scan_spec(self) -> ScanSpec | None:
        """Return the rays of the range scan the task reads (None: it reads none).

        The simulator casts them against the arena (with the robot profile's range noise and
        dropout); a robot resamples its sensor_msgs/LaserScan onto them. Either way sensors()
        then receives the ranges as scan= (N, num_rays), LaserScan values (+inf: no return).
        """
        return None

    takes_goals: ClassVar[bool] = False
    """The task drives to goals that an operator sets on a robot (goal_pose): set_goal and
    at_goal are written."""

    def set_goal(self, index: int, goal: np.ndarray) -> None:
        """Give robot index the goal (x, y) in task coordinates (override with takes_goals)."""
        raise NotImplementedError

    def at_goal(self, pose: np.ndarray) -> np.ndarray:
        """Return (N,) bool: each robot has reached its goal (override with takes_goals)."""
        raise NotImplementedError

    # -- the episode ----------------------------------------------------------------------------
    def reset(self, index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw new episodes for the robots in index; return their start poses (len(index), 3).

        Override; draw everything from rng (the simulator's seeded generator).
        """
        raise NotImplementedError

    def sensors(self, pose: np.ndarray) -> np.ndarray:
        """Return the sensor readings (N, len(sensor_labels)) of robots at the true poses.

        A task with a scan_spec takes the ranges too: sensors(self, pose, scan).
        """
        return np.zeros((len(pose), 0), np.float32)

    def observation(self, pose: np.ndarray, twist: np.ndarray,
                    readings: np.ndarray) -> np.ndarray:
        """Return (N, obs_dim) float32 observations from odometry and readings (override)."""
        raise NotImplementedError

    def step(self, pose: np.ndarray, twist: np.ndarray,
             rng: np.random.Generator) -> StepResult:
        """Return reward, costs and terminations after the robots moved to pose (override).

        pose and twist are the true state after the step; update the episode state here
        (collected objects, a new goal drawn from rng).
        """
        raise NotImplementedError

    def place(self, index: int, pose: np.ndarray, **state: Any) -> None:
        """Put robot index's episode in a hand-made state (tests): state names attributes."""
        for key, value in state.items():
            if not isinstance(getattr(self, key, None), np.ndarray):
                raise ValueError(f'{type(self).__name__} has no episode state {key!r}')
            getattr(self, key)[index] = value
