"""Run nodes: `cpo-ros bringup <name>` and every node's own main().

Training bring-ups compose their nodes in this process (manual composition, ros2/examples
rclpy/executors composed.py): the node classes are built with the same config/<name>.yaml the
launch file passes, and one executor spins them; node classes never spin themselves. A node
marked ends_bringup (the learner) ends the run when it sets its `done` event.

A fleet (fleet_sim, `-p workers:=K`) starts each worker's nodes in a process of their own
(`python -m cpo_ros.ros.bringup NAME I ...`) and runs the learner here.

The deploy bring-up runs each node in its own process, as the launch file does, so an error
in the policy cannot take the shield with it. Every node with a stop_robot() method sends a
zero command before it ends: on Ctrl-C, SIGTERM, or an error in a callback.
"""

from collections.abc import Callable
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.experimental import EventsExecutor
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future
import yaml

from cpo_ros.files import CheckpointError
from cpo_ros.paths import config_file
from cpo_ros.ros.exit_policy import CONFIGURE_ERROR, exit_outcome
from cpo_ros.ros.graph import Bringup, graph, placed_nodes, PlacedNode
from cpo_ros.ros.params import ARGS_ATTRIBUTE, refuse_unknown


def ros_arguments(name: str, argv: list[str], use_sim_time: bool,
                  robot: str | None = None) -> list[str]:
    """Return rclpy arguments: the bring-up's parameter file, a robot profile, the user's."""
    params = config_file(name)
    if not params.is_file():
        raise ValueError(f'bring-up {name!r} has no parameter file {params}')
    files = ['--params-file', str(params)]
    if robot:
        from cpo_ros.deploy.profile import load_profile, profile_path
        load_profile(robot)  # a clear error for an unknown or malformed profile
        files += ['--params-file', str(profile_path(robot))]
    user = list(argv)
    if user and user[0] == '--':
        user = user[1:]
    if user and user[0] != '--ros-args':
        user = ['--ros-args', *user]
    # The launch files' use_sim_time default; the user's -p use_sim_time:=... comes later.
    sim_time = 'true' if use_sim_time else 'false'
    return ['cpo-ros', '--ros-args', *files, '-p', f'use_sim_time:={sim_time}', *user]


def wants_help(args: list[str] | None) -> bool:
    """Return whether -h/--help comes before any ROS arguments."""
    argv = list(sys.argv[1:] if args is None else args[1:])
    head = argv[:argv.index('--ros-args')] if '--ros-args' in argv else argv
    return '-h' in head or '--help' in head


def node_help(label: str, classes: list[Callable], modes: tuple[str, ...] = ()) -> str:
    """Return the --help text of a node executable: what it does and its parameters.

    An executable with several modes (policy_executor and --deploy) names each in `modes`,
    one per class, and lists every mode's parameters.
    """
    from cpo_ros.ros.specs import node_parameters

    flags = ''.join(f' [{m.split()[0]}]' for m in modes if m.startswith('--'))
    lines = [f'usage: ros2 run cpo_ros {label} [-h]{flags} [--ros-args ...]', '']
    for i, cls in enumerate(classes):
        doc = (sys.modules[cls.__module__].__doc__ or '').strip()
        if modes:
            lines += [f'== mode: {modes[i]} ==', '']
        lines += [doc, '', 'parameters (set with --ros-args -p name:=value or --params-file):']
        for spec in node_parameters(cls):
            lines.append(f'  {spec.name} (default {spec.default!r}; {spec.allowed()}): '
                         f'{spec.description}')
        lines.append('')
    return '\n'.join(lines).rstrip()


PARENT_PID_ENV = 'CPO_ROS_PARENT_PID'
"""Set by a bring-up in the environment of the node processes it starts: its process id."""

_PR_SET_PDEATHSIG = 1  # linux/prctl.h

STOP_SIGNAL = signal.SIGTERM
"""What a bring-up sends its node processes to stop them: run_nodes handles it as Ctrl-C,
and a process still importing (torch: seconds) ends at once by its default action, where a
SIGINT printed a KeyboardInterrupt traceback from the middle of an import."""


def child_environment() -> dict[str, str]:
    """Return the environment for a node process started by this bring-up process."""
    return {**os.environ, PARENT_PID_ENV: str(os.getpid())}


def stop_with_parent() -> None:
    """Have this node process sent SIGTERM when the bring-up that started it dies.

    A bring-up killed with SIGKILL (or the OOM killer) cannot stop its node processes: without
    this, a deployed policy would drive on with no bring-up left to stop it. Linux delivers
    the signal (prctl PR_SET_PDEATHSIG); the handlers of run_nodes then stop the nodes as on
    Ctrl-C, each robot-commanding node sending a zero command. Only for processes started by a
    bring-up (PARENT_PID_ENV set), and a no-op elsewhere. Call it after SIGTERM's handler is
    installed.
    """
    parent = os.environ.pop(PARENT_PID_ENV, None)
    if parent is None or not sys.platform.startswith('linux'):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        return
    if os.getppid() != int(parent):  # the bring-up died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run_nodes(label: str, classes: list[Callable], ends: list[bool],
              args: list[str] | None) -> int:
    """Build the node classes in one context, spin them until a stop; return the exit code.

    Ctrl-C and SIGTERM end the spin loop between callbacks (rclpy's own signal handlers would
    shut the context down under a callback); the nodes are then destroyed, which lets the
    learner write its plot and summary. A bad parameter, checkpoint or run directory ends
    with code 2 and a message naming it; a node that gives up (its `exit_code` attribute) ends
    the process with its code; an error in a callback with code 1. Either way, and on a stop,
    every node that commands a robot sends a zero command first. A process started by a
    bring-up also stops when that bring-up dies (stop_with_parent).
    """
    if wants_help(args):
        try:
            print(node_help(label, classes), flush=True)
        except BrokenPipeError:  # `--help | head`
            pass
        return 0
    argv = list(sys.argv if args is None else args)
    extra = argv[1:argv.index('--ros-args')] if '--ros-args' in argv else argv[1:]
    if extra:
        # rclpy ignores words before --ros-args: a misspelt mode flag would run another mode.
        print(f'{label}: error: unknown argument(s) {extra}: see --help for the flags this '
              f'takes; ROS arguments go after --ros-args', flush=True)
        return 2
    if 'torch' in sys.modules:
        # Executors act with numpy; a node process beside the simulator and the learner keeps
        # one torch thread (the learner sets its own count, torch_threads, for the update).
        sys.modules['torch'].set_num_threads(1)
    context = rclpy.Context()
    try:
        rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as exc:  # rclpy's UnknownROSArgsError and RCLError: arguments rcl refused
        print(f'{label}: error: ROS arguments not understood: {exc} (see --help; `cpo-ros '
              f'bringup` takes --robot NAME and --stand-in before them)', flush=True)
        return 2
    # The arguments, for the nodes' check of parameters they do not take (ros/params.py).
    setattr(context, ARGS_ATTRIBUTE, list(sys.argv if args is None else args))
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    stop_with_parent()
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
            refuse_unknown(node)  # a misspelt parameter must not fall back to its default
            executor.add_node(node)
        done_events = [node.done for node, end in zip(nodes, ends, strict=True) if end]

        def ending() -> bool:
            return (not context.ok() or stop.is_set() or any(e.is_set() for e in done_events)
                    or bool(_exit_code(nodes)))

        # Completed from a thread of its own when the spin must end: the EventsExecutor
        # returns at its timeout only once its queue is empty, and the lock-step loop keeps
        # it full, so a Ctrl-C (or the learner's end) waited for the executors to pause at the
        # end of an iteration.
        end = Future()

        def watch() -> None:
            while not ending():
                time.sleep(0.05)
            end.set_result(None)

        threading.Thread(target=watch, name='bring-up end', daemon=True).start()
        while not ending():
            executor.spin_until_future_complete(end, timeout_sec=0.05)
        code = _exit_code(nodes)
        if code:
            print(f'{label}: a node gave up, exit code {code}', flush=True)
        return code
    except (ValueError, CheckpointError) as exc:
        print(f'{label}: error: {exc}', flush=True)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    except Exception:  # noqa: BLE001 - any error: stop the robot, say why, exit non-zero
        print(f'{label}: error in a callback, robot stopped:\n{traceback.format_exc()}',
              flush=True)
        return 1
    finally:
        # Until the end, a further Ctrl-C or SIGTERM only sets stop again: under `ros2 launch`
        # a Ctrl-C reaches each node twice (from the terminal and from launch), and the second
        # must not interrupt the zero command, the destroy or the learner's saving of its run
        # (a KeyboardInterrupt in destroy_node left the process hanging in its exit).
        for node in nodes:
            if hasattr(node, 'stop_robot') and context.ok():
                try:
                    node.stop_robot()
                except Exception as exc:  # noqa: BLE001 - the others must still stop
                    print(f'{label}: could not send the stop command: {exc}', flush=True)
        executor.shutdown(timeout_sec=1.0)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
        for sig, handler in previous.items():
            # Stopped by a signal, the process is ending: a later one is ignored, as Python's
            # exit would restore the default action and die of it (exit code -2, not 0).
            signal.signal(sig, signal.SIG_IGN if stop.is_set() else handler)


def _exit_code(nodes: list) -> int:
    """Return the largest exit_code a node asks for (a node that gave up), else 0."""
    return max((int(getattr(node, 'exit_code', 0)) for node in nodes), default=0)


def run_processes(label: str, spec: Bringup, ros_args: list[str], stand_in: bool) -> int:
    """Start each node of spec as its own process; forward Ctrl-C/SIGTERM; return the exit code.

    A node marked ends_bringup (the deploy's shield) ends the bring-up when it ends; one marked
    ends_on_error ends it when it exits with code 2 (could not configure). Any other end of a
    node is reported and the rest keep running: a dead executor leaves the shield stopping the
    robot, and the bring-up exits 1 when it ends (cpo_ros.ros.exit_policy, as for launch).
    """
    entries = ([spec.stand_in] if stand_in and spec.stand_in is not None else []) + list(
        spec.nodes)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: dict[str, subprocess.Popen] = {}
    code = 0
    try:
        for entry in entries:
            cmd = [sys.executable, '-m', entry.module, *entry.arguments, *ros_args]
            # Own process group: a terminal's Ctrl-C reaches this process, which stops the
            # nodes in order (the shield last), not all at once.
            procs[entry.name] = subprocess.Popen(cmd, start_new_session=True,
                                                 env=child_environment())
            print(f'{label}: started {entry.name} (pid {procs[entry.name].pid})', flush=True)
        running = dict(zip([e.name for e in entries], entries, strict=True))
        failed = False
        while running and not stop.is_set():
            for name, entry in list(running.items()):
                ret = procs[name].poll()
                if ret is None:
                    continue
                del running[name]
                outcome = exit_outcome(name, ret, ends_bringup=entry.ends_bringup,
                                       respawn=False, shutting_down=False)
                failed = failed or outcome.failed
                if ret == CONFIGURE_ERROR and (entry.ends_on_error or entry.ends_bringup):
                    code = CONFIGURE_ERROR
                if outcome.ends_launch or (entry.ends_on_error and ret == CONFIGURE_ERROR):
                    print(f'{label}: {outcome.message}: ending the bring-up', flush=True)
                    stop.set()
                else:
                    print(f'{label}: {outcome.message}', flush=True)
            time.sleep(0.05)
        # A node that failed while the others ran on (a dead executor: the shield kept the
        # robot stopped) still fails the bring-up, as it fails `ros2 launch`.
        code = code or (1 if failed else 0)
        return code
    finally:
        # The policy first, then the shield, which sends the final zero command, then the
        # stand-in robot.
        timeouts = {e.name: e.stop_timeout_s for e in spec.nodes}
        order = [[e.name for e in spec.nodes if not e.ends_bringup],
                 [e.name for e in spec.nodes if e.ends_bringup],
                 [spec.stand_in.name] if stand_in and spec.stand_in else []]
        for names in order:
            alive = [(n, procs[n]) for n in names if n in procs and procs[n].poll() is None]
            for _name, proc in alive:
                proc.send_signal(STOP_SIGNAL)
            for name, proc in alive:
                limit = timeouts.get(name, 10.0)
                try:
                    proc.wait(timeout=limit)
                except subprocess.TimeoutExpired:
                    print(f'{label}: {name} did not stop within {limit:g} s: killed',
                          flush=True)
                    proc.kill()
                    proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def bringup_help(name: str, spec: Bringup) -> str:
    """Return what `cpo-ros bringup <name> --help` prints: its nodes and options."""
    nodes = [*spec.nodes, *spec.worker_nodes]
    lines = [f'cpo-ros bringup {name}: the nodes of launch/{name}.launch.py with '
             f'config/{name}.yaml: {", ".join(e.name for e in nodes)}'
             + (f'; with --stand-in also {spec.stand_in.name} as the robot' if spec.stand_in
                else ''),
             '',
             'options before the ROS arguments:',
             '  --robot NAME|FILE   a robot profile (config/robots/NAME.yaml or a path)']
    if spec.stand_in:
        lines.append('  --stand-in          the simulated robot in place of a real one')
    if spec.worker_nodes:
        lines.append('  -p workers:=K       sampling workers (default 1)')
    lines += ['then ROS arguments: --ros-args -p NAME:=VALUE (every node) or '
              '-p NODE:NAME:=VALUE (one node), --params-file FILE',
              '',
              'each node lists its parameters: '
              + ', '.join(sorted({f'python -m {e.module} --help' for e in nodes}))]
    return '\n'.join(lines)


def split_bringup_options(argv: list[str]) -> tuple[str | None, bool, list[str]]:
    """Return (--robot value, --stand-in given, the remaining ROS arguments)."""
    argv = list(argv)
    robot, stand_in, rest = None, False, []
    head_end = argv.index('--ros-args') if '--ros-args' in argv else len(argv)
    i = 0
    while i < head_end:
        if argv[i] == '--robot':
            if i + 1 >= head_end or argv[i + 1].startswith('-'):
                raise ValueError('--robot needs a robot profile: --robot NAME (a file in '
                                 'config/robots/ or a path)')
            robot, i = argv[i + 1], i + 2
            continue
        if argv[i].startswith('--robot='):
            robot = argv[i].split('=', 1)[1]
        elif argv[i] == '--stand-in':
            stand_in = True
        else:
            rest.append(argv[i])
        i += 1
    return robot, stand_in, rest + argv[head_end:]


def bringup(name: str, argv: list[str]) -> int:
    """Start the nodes of bring-up `name`; return the process exit code."""
    spec = graph(name)
    head = argv[:argv.index('--ros-args')] if '--ros-args' in argv else argv
    if '-h' in head or '--help' in head:
        print(bringup_help(name, spec), flush=True)
        return 0
    robot, stand_in, argv = split_bringup_options(argv)
    if stand_in and spec.stand_in is None:
        raise ValueError(f'bring-up {name!r} has no stand-in robot (--stand-in: deploy and '
                         f'learn_on_robot)')
    workers, argv = _take_workers(argv)
    if spec.worker_nodes:
        return _run_fleet(name, 1 if workers is None else workers, argv, robot)
    if workers is not None:
        raise ValueError(f'bring-up {name!r} has no workers: -p workers:=K is for fleet_sim')
    sim_time = spec.use_sim_time or (stand_in and spec.stand_in_sim_time)
    args = ros_arguments(name, argv, sim_time, robot)
    if spec.separate_processes:
        return run_processes(f'cpo-ros bringup {name}', spec, args[1:], stand_in)
    return run_nodes(f'cpo-ros bringup {name}', [entry.load() for entry in spec.nodes],
                     [entry.ends_bringup for entry in spec.nodes], args)


def _take_workers(argv: list[str]) -> tuple[int | None, list[str]]:
    """Split `-p workers:=K` (a bring-up argument, not a node parameter) off the ROS arguments."""
    rest, workers, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ''
        if arg in ('-p', '--param') and nxt.startswith('workers:='):
            value, i = nxt.split(':=', 1)[1], i + 2
        elif arg.startswith('workers:='):
            value, i = arg.split(':=', 1)[1], i + 1
        else:
            rest.append(arg)
            i += 1
            continue
        try:
            workers = int(value)
        except ValueError:
            raise ValueError(f'workers = {value!r}: give a number of worker processes, '
                             f'1 to 64') from None
    return workers, rest


def _placed_arguments(placed: list[PlacedNode], directory: str) -> list[str]:
    """Return the ROS arguments of a process running these nodes (one namespace).

    Per-node overrides go into a parameter file keyed by each node's full name, as launch_ros
    does with a Node's parameter dict: a plain `-p` loses to the file's /**/<node> keys.
    """
    args = []
    first = placed[0]
    if first.namespace:
        args += ['-r', f'__ns:={first.namespace}']
    for src, dst in first.remappings:
        args += ['-r', f'{src}:={dst}']
    overrides = {f'{p.namespace}/{p.entry.name}': {'ros__parameters': dict(p.parameters)}
                 for p in placed if p.parameters}
    if overrides:
        path = os.path.join(directory, f'{first.namespace.strip("/") or "root"}.yaml')
        with open(path, 'w') as f:
            yaml.safe_dump(overrides, f)
        args += ['--params-file', path]
    return args


def _user_arguments(argv: list[str]) -> list[str]:
    user = list(argv)
    if user and user[0] == '--':
        user = user[1:]
    if user and user[0] == '--ros-args':
        user = user[1:]
    return user


def _run_fleet(name: str, workers: int, argv: list[str], robot: str | None) -> int:
    """Start the workers of a fleet as child processes, run the learner here; stop them after."""
    placed = placed_nodes(name, workers)
    user = _user_arguments(argv)
    procs = []
    tmp = tempfile.TemporaryDirectory(prefix='cpo_ros_fleet_')
    try:
        for i in range(workers):
            # Own session: a terminal's Ctrl-C reaches this process alone, which stops the
            # workers with STOP_SIGNAL (a SIGINT during their import printed tracebacks).
            procs.append(subprocess.Popen(worker_command(name, i, workers, user, tmp.name,
                                                         placed, robot),
                                          start_new_session=True, env=child_environment()))
        own = [p for p in placed if p.worker is None]
        args = ros_arguments(name, ['--ros-args', *_placed_arguments(own, tmp.name),
                                    *_user_arguments(argv)], own[0].use_sim_time, robot)
        return run_nodes(f'cpo-ros bringup {name}', [p.entry.load() for p in own],
                         [p.entry.ends_bringup for p in own], args)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(STOP_SIGNAL)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        tmp.cleanup()


def worker_command(name: str, index: int, workers: int, user: list[str], directory: str,
                   placed: list[PlacedNode] | None = None,
                   robot: str | None = None) -> list[str]:
    """Return the command line of worker `index` of a fleet of `workers` (user: ROS args)."""
    placed = placed_nodes(name, workers) if placed is None else placed
    group = [p for p in placed if p.worker == index]
    return [sys.executable, '-m', 'cpo_ros.ros.bringup', name, str(index),
            *(['--robot', robot] if robot else []), '--ros-args',
            *_placed_arguments(group, directory), *user]


def worker_main(argv: list[str] | None = None) -> int:
    """Run worker I of a fleet: `python -m cpo_ros.ros.bringup NAME I [--robot R] ...`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name, index, ros = argv[0], int(argv[1]), argv[2:]
    robot = None
    if ros[:1] == ['--robot']:
        robot, ros = ros[1], ros[2:]
    group = [p for p in placed_nodes(name, index + 1) if p.worker == index]
    args = ros_arguments(name, ros, group[0].use_sim_time, robot)
    return run_nodes(f'cpo-ros bringup {name} worker {index}', [p.entry.load() for p in group],
                     [False] * len(group), args)


if __name__ == '__main__':
    raise SystemExit(worker_main())
