"""The nodes of each bring-up: one list that feeds the launch files and `cpo-ros bringup`."""

from dataclasses import dataclass
import importlib


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
LEARNER = NodeEntry('learner', 'learner', 'cpo_ros.nodes.learner:Learner', ends_bringup=True)

# In deployment the shield is the last line of defence: when it ends, the deploy ends. A
# crashed executor leaves it running (its stale command means stop); an executor that cannot
# configure ends the deploy.
DEPLOY_MONITOR = NodeEntry('safe_area_monitor', 'safe_area_monitor',
                           'cpo_ros.nodes.safe_area_monitor:SafeAreaMonitor', ends_bringup=True)
DEPLOYED_EXECUTOR = NodeEntry('policy_executor', 'policy_executor',
                              'cpo_ros.nodes.deployed_executor:DeployedPolicyExecutor',
                              arguments=('--deploy',), ends_on_error=True)
STAND_IN = NodeEntry('sim_bridge', 'sim_bridge', 'cpo_ros.nodes.sim_bridge:SimBridge')
"""The realtime sim bridge as the robot (deploy.yaml's /**/sim_bridge: mode realtime)."""


@dataclass(frozen=True)
class Bringup:
    """The nodes of a bring-up, in start order, and whether they follow /clock."""

    nodes: tuple[NodeEntry, ...]
    use_sim_time: bool
    respawn: bool = False
    """The launch file restarts a node that dies (not one that ends cleanly or on a bad
    parameter); the learner then continues its run (resume: auto)."""
    separate_processes: bool = False
    """Run each node in its own process (deployment: a crash in the policy cannot take the
    shield with it), as the launch file does; otherwise `cpo-ros bringup` composes them."""
    stand_in: NodeEntry | None = None
    """A simulated robot that stand_in:=true (--stand-in) starts first."""


GRAPHS: dict[str, Bringup] = {
    # The learner last: it publishes the first policy once everything listens.
    'circle_sim': Bringup((SIM_BRIDGE, MONITOR, EXECUTOR, LEARNER), use_sim_time=True,
                          respawn=True),
    # Gather's cost (bombs) is not a function of the pose: no monitor estimate to compare.
    'gather_sim': Bringup((SIM_BRIDGE, EXECUTOR, LEARNER), use_sim_time=True, respawn=True),
    # On a robot its driver replaces the sim bridge: odom in, cmd_vel out.
    'deploy': Bringup((DEPLOY_MONITOR, DEPLOYED_EXECUTOR), use_sim_time=False,
                      separate_processes=True, stand_in=STAND_IN),
}


def graph(name: str) -> Bringup:
    """Return the nodes of a bring-up, or raise ValueError listing the known names."""
    if name not in GRAPHS:
        raise ValueError(f'unknown bring-up {name!r}: choose one of {sorted(GRAPHS)}')
    return GRAPHS[name]
