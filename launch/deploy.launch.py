"""Deploy an exported policy to a robot, the safe-area monitor standing guard as a shield.

ros2 launch cpo_ros deploy.launch.py params_file:=my_robot.yaml \
    odom_topic:=/my_robot/odom cmd_vel_topic:=/my_robot/cmd_vel [namespace:=...]

The robot's driver publishes odom and consumes cmd_vel; the policy executor (a lifecycle node)
publishes policy/cmd_vel, which the monitor gates onto cmd_vel. Same nodes as
`cpo-ros bringup deploy`.
"""

from cpo_ros.ros.launch_description import bringup_launch_description


def generate_launch_description():
    """Return the deploy bring-up."""
    return bringup_launch_description('deploy')
