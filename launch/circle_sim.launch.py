"""Train CPO on Point-Circle through the ROS 2 graph: sim bridge, monitor, executor, learner.

ros2 launch cpo_ros circle_sim.launch.py [namespace:=robot1] [params_file:=...]
    [use_sim_time:=true] [log_level:=info]

The node list comes from cpo_ros.ros.graph, the one list `cpo-ros bringup circle_sim` uses too.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, SetParameter

from cpo_ros.ros.graph import graph
from launch import LaunchDescription

BRINGUP = 'circle_sim'


def generate_launch_description() -> LaunchDescription:
    """Declare the launch arguments and one Node action per node of the bring-up."""
    share = get_package_share_directory('cpo_ros')
    namespace = LaunchConfiguration('namespace')
    params_file = LaunchConfiguration('params_file')
    use_sim_time = LaunchConfiguration('use_sim_time')
    log_level = LaunchConfiguration('log_level')
    actions = [
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of every node and topic (one per robot)'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', f'{BRINGUP}.yaml'),
                              description='ROS parameter file for every node'),
        DeclareLaunchArgument('use_sim_time', default_value='true',
                              description='follow /clock from the sim bridge'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='logging level of every node'),
        SetParameter(name='use_sim_time', value=use_sim_time),
    ]
    for entry in graph(BRINGUP):
        actions.append(Node(
            package='cpo_ros', executable=entry.executable, name=entry.name,
            namespace=namespace, output='screen',
            parameters=[params_file],
            arguments=['--ros-args', '--log-level', log_level],
            on_exit=[Shutdown(reason=f'{entry.name} finished')] if entry.ends_bringup else None))
    return LaunchDescription(actions)
