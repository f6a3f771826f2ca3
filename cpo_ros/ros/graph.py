"""The nodes of each bring-up: one list that feeds the launch files and `cpo-ros bringup`."""

from dataclasses import dataclass, field
import importlib
from typing import Any


@dataclass(frozen=True)
class NodeEntry:
    """A node of a bring-up: its `ros2 run` executable, node name and Python class."""

    executable: str
    name: str
    target: str
    ends_bringup: bool = False
    """When this node's process ends (the learner after its budget), the bring-up ends."""
    arguments: tuple[str, ...] = ()
    """Command-line arguments of the executable before --ros-args (e.g. --deploy)."""
    ends_on_error: bool = False
    """When this node's process ends with code 2 (it could not configure: a bad parameter or
    policy), the bring-up ends with a message; other exits leave the rest running."""
    stop_timeout_s: float = 10.0
    """After Ctrl-C, how long the process may take to stop before it is killed (launch:
    its sigterm_timeout)."""
    respawns: bool = True
    """False: never restarted, even in a bring-up that respawns its nodes (a robot's shield:
    a new process would not know the e-stop its predecessor latched)."""

    @property
    def module(self) -> str:
        """Return the module whose main() is the executable (python -m <module>)."""
        return f'cpo_ros.nodes.{self.executable}'

    def load(self) -> type:
        """Import and return the node class."""
        module, cls = self.target.split(':')
        return getattr(importlib.import_module(module), cls)


SIM_BRIDGE = NodeEntry('sim_bridge', 'sim_bridge', 'cpo_ros.nodes.sim_bridge:SimBridge')
MONITOR = NodeEntry('safe_area_monitor', 'safe_area_monitor',
                    'cpo_ros.nodes.safe_area_monitor:SafeAreaMonitor')
EXECUTOR = NodeEntry('policy_executor', 'policy_executor',
                     'cpo_ros.nodes.policy_executor:PolicyExecutor')
# Stopped, the learner lets an update in progress finish (up to 60 s), then saves the run and
# writes curves.png: killed sooner it would lose its last iteration.
LEARNER = NodeEntry('learner', 'learner', 'cpo_ros.nodes.learner:Learner', ends_bringup=True,
                    stop_timeout_s=75.0)

# On a robot the shield is the last line of defence: when it ends, the bring-up ends, and it is
# never respawned (a latched e-stop ends only by its release). A crashed executor leaves it
# running (its stale command means stop); an executor that cannot configure ends the deploy.
ROBOT_MONITOR = NodeEntry('safe_area_monitor', 'safe_area_monitor',
                          'cpo_ros.nodes.safe_area_monitor:SafeAreaMonitor', ends_bringup=True,
                          respawns=False)
DEPLOYED_EXECUTOR = NodeEntry('policy_executor', 'policy_executor',
                              'cpo_ros.nodes.deployed_executor:DeployedPolicyExecutor',
                              arguments=('--deploy',), ends_on_error=True)
STAND_IN = NodeEntry('sim_bridge', 'sim_bridge', 'cpo_ros.nodes.sim_bridge:SimBridge',
                     ends_on_error=True)
"""The realtime sim bridge as the robot (deploy.yaml's /**/sim_bridge: mode realtime)."""
ROBOT_EXECUTOR = NodeEntry('policy_executor', 'policy_executor',
                           'cpo_ros.nodes.robot_executor:RobotExecutor', arguments=('--robot',),
                           ends_on_error=True)
"""Learning on the robot: realtime sampling from the robot's topics (policy_executor --robot)."""


@dataclass(frozen=True)
class Bringup:
    """The nodes of a bring-up, in start order, and whether they follow /clock."""

    nodes: tuple[NodeEntry, ...]
    use_sim_time: bool
    respawn: bool = False
    """The launch file restarts a node that dies (not one that ends cleanly or on a bad
    parameter, nor one with respawns False); the learner then continues its run (resume:
    auto)."""

    def restarts(self, entry: NodeEntry) -> bool:
        """Return whether the launch file restarts `entry` when it dies."""
        return self.respawn and entry.respawns
    separate_processes: bool = False
    """Run each node in its own process (deployment: a crash in the policy cannot take the
    shield with it), as the launch file does; otherwise `cpo-ros bringup` composes them."""
    stand_in: NodeEntry | None = None
    """A simulated robot that stand_in:=true (--stand-in) starts first."""
    stand_in_sim_time: bool = False
    """With the stand-in, every node follows the /clock it publishes (real_time_factor)."""
    worker_nodes: tuple[NodeEntry, ...] = ()
    """A fleet: these nodes run once per worker, in namespace worker_<i>, one process each
    worker (`cpo-ros bringup`) or each node (launch); `nodes` run once, in the root namespace,
    on the wall clock."""


# A worker's executor talks to the one learner at the root; its simulator's /clock stays its own.
FLEET_REMAPPINGS = (('cpo/rollout', '/cpo/rollout'), ('cpo/policy', '/cpo/policy'),
                    ('cpo/iteration', '/cpo/iteration'), ('/clock', 'clock'))
FLEET_PARAM_NODES = {'seed_offset': ('sim_bridge', 'policy_executor'),
                     'chunk_fraction': ('policy_executor',)}


@dataclass(frozen=True)
class PlacedNode:
    """A node of a bring-up as started: namespace, remappings and parameter overrides."""

    entry: NodeEntry
    namespace: str = ''
    """'' for the bring-up's own namespace (the launch argument), else /worker_<i>."""
    remappings: tuple[tuple[str, str], ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    """Set after the parameter file (per-worker seed and chunk size)."""
    use_sim_time: bool = False
    worker: int | None = None
    """Index of the worker process group, None for the bring-up's own process."""


def placed_nodes(name: str, workers: int = 1) -> list[PlacedNode]:
    """Return every node that bring-up `name` starts, workers first, in start order.

    workers: size of a fleet (fleet bring-ups only); ValueError outside 1..64.
    """
    spec = graph(name)
    if not spec.worker_nodes:
        return [PlacedNode(e, use_sim_time=spec.use_sim_time) for e in spec.nodes]
    if not 1 <= int(workers) <= 64:
        raise ValueError(f'workers = {workers}: choose 1 to 64 worker processes')
    out = []
    for i in range(int(workers)):
        # Each worker samples its own streams and brings about 1/K of an iteration per chunk.
        params = {'seed_offset': 1000 * i, 'chunk_fraction': 1.0 / int(workers)}
        for entry in spec.worker_nodes:
            out.append(PlacedNode(entry, f'/worker_{i}', FLEET_REMAPPINGS,
                                  {k: v for k, v in params.items()
                                   if entry.executable in FLEET_PARAM_NODES[k]},
                                  use_sim_time=True, worker=i))
    out += [PlacedNode(e, use_sim_time=False) for e in spec.nodes]
    return out


GRAPHS: dict[str, Bringup] = {
    # The learner last: it publishes the first policy once everything listens.
    'circle_sim': Bringup((SIM_BRIDGE, MONITOR, EXECUTOR, LEARNER), use_sim_time=True,
                          respawn=True),
    # Gather's cost (bombs) is not a function of the pose: no monitor estimate to compare.
    'gather_sim': Bringup((SIM_BRIDGE, EXECUTOR, LEARNER), use_sim_time=True, respawn=True),
    # Navigation (Goal): collisions are not a function of the pose alone, as Gather's bombs.
    'nav_sim': Bringup((SIM_BRIDGE, EXECUTOR, LEARNER), use_sim_time=True, respawn=True),
    # On a robot its driver replaces the sim bridge: odom in, cmd_vel out.
    'deploy': Bringup((ROBOT_MONITOR, DEPLOYED_EXECUTOR), use_sim_time=False,
                      separate_processes=True, stand_in=STAND_IN),
    # A robot learns: its driver (or the stand-in) publishes odom and takes cmd_vel from the
    # monitor's gate; the executor samples in real time; the learner may be fed by simulators
    # too (fleet workers on the same cpo/rollout).
    'learn_on_robot': Bringup((ROBOT_MONITOR, ROBOT_EXECUTOR, LEARNER), use_sim_time=False,
                              respawn=True, separate_processes=True, stand_in=STAND_IN,
                              stand_in_sim_time=True),
    # K simulators with their executors and monitors (workers:=K), one learner.
    'fleet_sim': Bringup((LEARNER,), use_sim_time=False, respawn=True,
                         worker_nodes=(SIM_BRIDGE, MONITOR, EXECUTOR)),
}


def node_names() -> set[str]:
    """Return the name of every node a bring-up of cpo_ros starts."""
    return {e.name for spec in GRAPHS.values()
            for e in (*spec.nodes, *spec.worker_nodes,
                      *([spec.stand_in] if spec.stand_in else []))}


def graph(name: str) -> Bringup:
    """Return the nodes of a bring-up, or raise ValueError listing the known names."""
    if name not in GRAPHS:
        raise ValueError(f'unknown bring-up {name!r}: choose one of {sorted(GRAPHS)}')
    return GRAPHS[name]
