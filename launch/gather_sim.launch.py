"""Train CPO on Point-Gather through the ROS 2 graph: sim bridge, executor, learner.

ros2 launch cpo_ros gather_sim.launch.py [namespace:=robot1] [params_file:=...]
    [use_sim_time:=true] [log_level:=info]

The node list comes from cpo_ros.ros.graph, the one list `cpo-ros bringup gather_sim` uses too.
The launch ends when the learner has run its iterations.
"""

from cpo_ros.ros.launch_description import bringup_launch_description


def generate_launch_description():
    """Return the gather_sim bring-up."""
    return bringup_launch_description('gather_sim')
