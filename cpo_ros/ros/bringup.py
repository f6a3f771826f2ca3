"""Run nodes in this process: `cpo-ros bringup <name>` and every node's own main().

Manual composition (ros2/examples rclpy/executors composed.py): the node classes of a bring-up
are built here with the same config/<name>.yaml the launch file passes, and one executor spins
them; node classes never spin themselves. A node marked ends_bringup (the learner) ends the
run when it sets its `done` event.
"""

from collections.abc import Callable
import os
import signal
import sys
import threading

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.experimental import EventsExecutor
from rclpy.signals import SignalHandlerOptions

from cpo_ros.core.checkpoint import CheckpointError
from cpo_ros.paths import config_file
from cpo_ros.ros.graph import graph


def ros_arguments(name: str, argv: list[str], use_sim_time: bool) -> list[str]:
    """Return rclpy arguments: the bring-up's parameter file, then the user's ROS arguments."""
    params = config_file(name)
    if not params.is_file():
        raise ValueError(f'bring-up {name!r} has no parameter file {params}')
    user = list(argv)
    if user and user[0] == '--':
        user = user[1:]
    if user and user[0] != '--ros-args':
        user = ['--ros-args', *user]
    # The launch files' use_sim_time default; the user's -p use_sim_time:=... comes later.
    sim_time = 'true' if use_sim_time else 'false'
    return ['cpo-ros', '--ros-args', '--params-file', str(params), '-p',
            f'use_sim_time:={sim_time}', *user]


def run_nodes(label: str, classes: list[Callable], ends: list[bool],
              args: list[str] | None) -> int:
    """Build the node classes in one context, spin them until a stop; return the exit code.

    Ctrl-C and SIGTERM end the spin loop between callbacks (rclpy's own signal handlers would
    shut the context down under a callback); the nodes are then destroyed, which lets the
    learner write its plot and summary. A bad parameter, checkpoint or run directory ends
    with code 2 and a message naming it; a node that gives up (its `exit_code` attribute) ends
    the process with its code.
    """
    if 'torch' in sys.modules:
        # Executors act with numpy; a node process beside the simulator and the learner keeps
        # one torch thread (the learner sets its own count, torch_threads, for the update).
        sys.modules['torch'].set_num_threads(1)
    context = rclpy.Context()
    rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    # rclpy's EventsExecutor (C++ event queue, one thread) dispatches the lock-step loop about
    # three times faster than the SingleThreadedExecutor, which rebuilds its wait set for every
    # callback (bench/bench_ros.py); CPO_ROS_EXECUTOR=single selects the latter. The learner's
    # update runs on its own worker thread, so no callback waits for it.
    if os.environ.get('CPO_ROS_EXECUTOR', 'events') == 'single':
        executor = SingleThreadedExecutor(context=context)
    else:
        executor = EventsExecutor(context=context)
    nodes = []
    try:
        for cls in classes:
            node = cls(context=context)
            nodes.append(node)
            executor.add_node(node)
        done_events = [node.done for node, end in zip(nodes, ends, strict=True) if end]
        while (context.ok() and not stop.is_set() and not any(e.is_set() for e in done_events)
               and not _exit_code(nodes)):
            executor.spin_once(timeout_sec=0.1)
        code = _exit_code(nodes)
        if code:
            print(f'{label}: a node gave up, exit code {code}', flush=True)
        return code
    except (ValueError, CheckpointError) as exc:
        print(f'{label}: error: {exc}', flush=True)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        executor.shutdown(timeout_sec=1.0)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def _exit_code(nodes: list) -> int:
    """Return the largest exit_code a node asks for (a node that gave up), else 0."""
    return max((int(getattr(node, 'exit_code', 0)) for node in nodes), default=0)


def bringup(name: str, argv: list[str]) -> int:
    """Start the nodes of bring-up `name`; return the process exit code."""
    spec = graph(name)
    args = ros_arguments(name, argv, spec.use_sim_time)
    return run_nodes(f'cpo-ros bringup {name}', [entry.load() for entry in spec.nodes],
                     [entry.ends_bringup for entry in spec.nodes], args)
