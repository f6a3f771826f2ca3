"""Train CPO with a fleet: K simulator workers feed one learner over DDS.

ros2 launch cpo_ros fleet_sim.launch.py workers:=4 [params_file:=...] [log_level:=info]

Worker i runs sim_bridge, safe_area_monitor and policy_executor in namespace worker_<i>, each
node a process of its own; the learner merges their rollout chunks. The node list comes from
cpo_ros.ros.graph, the one list `cpo-ros bringup fleet_sim -p workers:=4` uses too. The
launch ends when the learner has run its iterations.
"""

from cpo_ros.ros.launch_description import bringup_launch_description


def generate_launch_description():
    """Return the fleet_sim bring-up."""
    return bringup_launch_description('fleet_sim')
