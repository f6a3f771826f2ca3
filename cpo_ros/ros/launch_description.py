"""Launch descriptions built from cpo_ros.ros.graph: what every launch/*.launch.py returns.

Imports launch and launch_ros only when called: they come with a ROS 2 install, not from PyPI
(pip users run `cpo-ros bringup <name>` instead, from the same node list and parameter file).
"""

import os

# Seconds before a dead node is started again; a clean exit shuts the launch down meanwhile.
RESPAWN_DELAY_S = 2.0


def bringup_launch_description(name: str):
    """Return the LaunchDescription of bring-up `name` with the standard launch arguments."""
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import DeclareLaunchArgument, Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node, SetParameter

    from cpo_ros.ros.graph import graph
    from launch import LaunchDescription

    spec = graph(name)
    share = get_package_share_directory('cpo_ros')
    arg = LaunchConfiguration
    actions = [
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of every node and topic (one per robot)'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', f'{name}.yaml'),
                              description='ROS parameter file for every node'),
        DeclareLaunchArgument('use_sim_time', default_value=str(spec.use_sim_time).lower(),
                              description='follow /clock (true with the sim bridge)'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='logging level of every node'),
        DeclareLaunchArgument('odom_topic', default_value='odom',
                              description="the robot's odometry topic"),
        DeclareLaunchArgument('cmd_vel_topic', default_value='cmd_vel',
                              description="the robot's velocity command topic"),
        SetParameter(name='use_sim_time', value=arg('use_sim_time')),
    ]
    for entry in spec.nodes:
        actions.append(Node(
            package='cpo_ros', executable=entry.executable, name=entry.name,
            namespace=arg('namespace'), output='screen', parameters=[arg('params_file')],
            remappings=[('odom', arg('odom_topic')), ('cmd_vel', arg('cmd_vel_topic'))],
            arguments=[*entry.arguments, '--ros-args', '--log-level', arg('log_level')],
            respawn=spec.respawn, respawn_delay=RESPAWN_DELAY_S,
            on_exit=_on_exit(entry.name, entry.ends_bringup, Shutdown)))
    return LaunchDescription(actions)


def _on_exit(name: str, ends_bringup: bool, shutdown: type):
    """Return launch's on_exit callback: end the launch when respawning cannot help.

    Exit code 0 of the node that ends the bring-up (the learner's budget is spent) and exit code
    2 of any node (a bad parameter or checkpoint: a respawn would fail alike) shut the launch
    down, which also cancels the pending respawn. Any other exit (a crash, kill -9, the
    learner giving up with 1) leaves the node to respawn after RESPAWN_DELAY_S.
    """
    def on_exit(event, context):
        if event.returncode == 2:
            return [shutdown(reason=f'{name}: bad configuration (exit code 2)')]
        if ends_bringup and event.returncode == 0:
            return [shutdown(reason=f'{name} finished')]
        return None
    return on_exit
