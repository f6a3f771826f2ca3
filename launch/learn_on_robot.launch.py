"""Learn on a robot: realtime sampling from its topics, the monitor gating every command.

ros2 launch cpo_ros learn_on_robot.launch.py robot:=turtlebot3_burger \
    odom_topic:=/my_robot/odom cmd_vel_topic:=/my_robot/cmd_vel
ros2 launch cpo_ros learn_on_robot.launch.py robot:=turtlebot3_burger stand_in:=true \
    real_time_factor:=10

The learner, the policy executor in robot mode (publishes policy/cmd_vel) and the safe-area
monitor in gate mode (cmd_vel to the robot); stand_in:=true adds the realtime sim bridge as the
robot, publishing /clock at real_time_factor, and every node follows it. Same nodes as
`cpo-ros bringup learn_on_robot [--stand-in]`.
"""

from cpo_ros.ros.launch_description import bringup_launch_description


def generate_launch_description():
    """Return the learn_on_robot bring-up."""
    return bringup_launch_description('learn_on_robot')
