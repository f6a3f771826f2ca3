"""Train CPO on the Goal navigation task through the ROS 2 graph: sim bridge, executor, learner.

ros2 launch cpo_ros nav_sim.launch.py [namespace:=robot1] [params_file:=...]
    [use_sim_time:=true] [log_level:=info]

The node list comes from cpo_ros.ros.graph, the one list `cpo-ros bringup nav_sim` uses too.
Robot 0's scan is published on `scan` (sensor_msgs/LaserScan), its arena on task/markers.
The launch ends when the learner has run its iterations.
"""

from cpo_ros.ros.launch_description import bringup_launch_description


def generate_launch_description():
    """Return the nav_sim bring-up."""
    return bringup_launch_description('nav_sim')
