"""Launch descriptions built from cpo_ros.ros.graph: what every launch/*.launch.py returns.

Imports launch and launch_ros only when called: they come with a ROS 2 install, not from PyPI
(pip users run `cpo-ros bringup <name>` instead, from the same node list and parameter file).
"""

import os

from cpo_ros.ros.exit_policy import exit_outcome, FailureRecord

RESPAWN_DELAY_S = 2.0


def _shared_arguments(name: str) -> list:
    """Return the launch arguments of every bring-up: params_file, robot and log_level."""
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import DeclareLaunchArgument

    share = get_package_share_directory('cpo_ros')
    return [
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', f'{name}.yaml'),
                              description='ROS parameter file for every node'),
        DeclareLaunchArgument('robot', default_value='',
                              description='robot profile layered over params_file: a name in '
                              'config/robots/ (point, turtlebot3_burger) or a .yaml path'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='logging level of every node'),
    ]


def _parameter_files(context) -> list[str]:
    """Return params_file and, with robot:=<profile>, the profile's file layered over it."""
    from cpo_ros.deploy.profile import load_profile, profile_path

    arg = context.launch_configurations
    if not os.path.isfile(arg['params_file']):
        # launch_ros would only warn and start every node on its built-in defaults (a deploy
        # with no shield, the simulator as a 16-robot trainer): end the launch instead.
        raise ValueError(f"params_file:={arg['params_file']}: no such file")
    files = [arg['params_file']]
    if arg.get('robot'):
        load_profile(arg['robot'])  # an unknown profile ends the launch with its reason
        files.append(str(profile_path(arg['robot'])))
    return files


def bringup_launch_description(name: str):
    """Return the LaunchDescription of bring-up `name` with the standard launch arguments."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import SetParameter

    from cpo_ros.ros.graph import graph
    from launch import LaunchDescription

    spec = graph(name)
    if spec.worker_nodes:
        return fleet_launch_description(name)
    # The stand-in's arguments first: use_sim_time's default reads stand_in, and launch
    # resolves a default when its declaration is reached.
    stand_in = [
        DeclareLaunchArgument('stand_in', default_value='false',
                              description='true: the realtime sim bridge plays the robot'),
        DeclareLaunchArgument('real_time_factor', default_value='',
                              description='the stand-in runs this many times faster than '
                              'real time and publishes /clock (empty: params_file)'),
    ] if spec.stand_in is not None else []
    actions = [
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of every node and topic (one per robot)'),
        *_shared_arguments(name),
        *stand_in,
        # Beside the stand-in robot of learn_on_robot every node follows its /clock.
        DeclareLaunchArgument('use_sim_time',
                              default_value=(LaunchConfiguration('stand_in')
                                             if spec.stand_in_sim_time
                                             else str(spec.use_sim_time).lower()),
                              description='follow /clock (true with the sim bridge)'),
        DeclareLaunchArgument('odom_topic', default_value='odom',
                              description="the robot's odometry topic"),
        DeclareLaunchArgument('pose_topic', default_value='pose',
                              description="the robot's pose topic (pose_source: pose)"),
        DeclareLaunchArgument('cmd_vel_topic', default_value='cmd_vel',
                              description="the robot's velocity command topic"),
        DeclareLaunchArgument('scan_topic', default_value='scan',
                              description="the robot's LaserScan topic (navigation tasks)"),
    ]
    if name == 'deploy':
        actions += [
            DeclareLaunchArgument('policy_dir', default_value='',
                                  description='exported policy directory (cpo-ros export '
                                  '--out); empty: the policy_dir of params_file'),
        ]
    actions += [SetParameter(name='use_sim_time', value=LaunchConfiguration('use_sim_time')),
                OpaqueFunction(function=_nodes, args=[name])]
    return LaunchDescription(actions)


def _nodes(context, name: str):
    """Return the bring-up's Node actions once the launch arguments are known."""
    from launch_ros.actions import Node

    from cpo_ros.ros.graph import graph

    spec = graph(name)
    arg = context.launch_configurations
    params: list = _parameter_files(context)
    entries = list(spec.nodes)
    if arg.get('stand_in', 'false').lower() in ('true', '1', 'yes') and spec.stand_in:
        entries.insert(0, spec.stand_in)
    actions = []
    record = FailureRecord()
    for entry in entries:
        node_params = list(params)
        if entry.name == 'policy_executor' and arg.get('policy_dir'):
            node_params.append({'policy_dir': arg['policy_dir']})
        if entry is spec.stand_in and arg.get('real_time_factor'):
            node_params.append({'real_time_factor': float(arg['real_time_factor'])})
        actions.append(Node(
            package='cpo_ros', executable=entry.executable, name=entry.name,
            namespace=arg['namespace'], output='screen', parameters=node_params,
            remappings=[('odom', arg['odom_topic']), ('pose', arg['pose_topic']),
                        ('cmd_vel', arg['cmd_vel_topic']), ('scan', arg['scan_topic'])],
            arguments=[*entry.arguments, '--ros-args', '--log-level', arg['log_level']],
            respawn=spec.restarts(entry), respawn_delay=RESPAWN_DELAY_S,
            sigterm_timeout=str(entry.stop_timeout_s),
            on_exit=_on_exit(entry.name, entry.ends_bringup, spec.restarts(entry), record)))
    return actions


def _on_exit(name: str, ends_bringup: bool, respawn: bool, record: FailureRecord):
    """Return launch's on_exit callback, which reads the exit with cpo_ros.ros.exit_policy.

    launch's LaunchService.run returns 1 only when an exception is raised inside the launch
    (a Shutdown action ends it with 0), so a failure is raised as LaunchFailed once the launch
    ends: at once for a node that could not configure or a failed shield, at Ctrl-C for an
    executor that died while the shield kept the robot stopped. `ros2 launch` exits with it.
    """
    from launch.actions import LogInfo, Shutdown

    def on_exit(event, context):
        shutting_down = bool(context.is_shutdown)
        outcome = exit_outcome(name, event.returncode, ends_bringup=ends_bringup,
                               respawn=respawn, shutting_down=shutting_down)
        error = record.record(outcome, shutting_down)
        if error is not None:
            raise LaunchFailed(error)
        if outcome.ends_launch:
            return [LogInfo(msg=f'{outcome.message}: ending the launch'),
                    Shutdown(reason=outcome.message)]
        return [LogInfo(msg=outcome.message)]
    return on_exit


class LaunchFailed(RuntimeError):
    """A node of the launch failed: launch logs this and `ros2 launch` exits with code 1."""


def fleet_launch_description(name: str):
    """Return the LaunchDescription of a fleet bring-up: `workers:=K` workers, one learner.

    Every node is a process of its own; the list, namespaces, remappings and per-worker
    parameters come from cpo_ros.ros.graph.placed_nodes, as for `cpo-ros bringup`. A worker
    node that dies is respawned and joins again like a late executor.
    """
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from cpo_ros.ros.graph import graph, placed_nodes
    from launch import LaunchDescription

    spec = graph(name)

    def nodes(context, *args, **kwargs):
        workers = LaunchConfiguration('workers').perform(context)
        log_level = LaunchConfiguration('log_level').perform(context)
        files = _parameter_files(context)
        try:
            count = int(workers)
        except ValueError:
            raise ValueError(f'workers:={workers!r}: give a number of worker processes, 1 to '
                             f'64') from None
        actions = []
        record = FailureRecord()
        for placed in placed_nodes(name, count):
            entry = placed.entry
            overrides = {'use_sim_time': placed.use_sim_time, **placed.parameters}
            actions.append(Node(
                package='cpo_ros', executable=entry.executable, name=entry.name,
                namespace=placed.namespace, output='screen',
                parameters=[*files, overrides], remappings=list(placed.remappings),
                arguments=[*entry.arguments, '--ros-args', '--log-level', log_level],
                respawn=spec.restarts(entry), respawn_delay=RESPAWN_DELAY_S,
                sigterm_timeout=str(entry.stop_timeout_s),
                on_exit=_on_exit(entry.name, entry.ends_bringup, spec.restarts(entry), record)))
        return actions

    return LaunchDescription([
        DeclareLaunchArgument('workers', default_value='2',
                              description='worker processes: sim bridge, monitor and executor '
                              'in namespace worker_<i> each'),
        *_shared_arguments(name),
        OpaqueFunction(function=nodes),
    ])
