"""The `cpo-ros` command: train, eval, export and bringup."""

import argparse
import os
import signal
import sys
import threading

from cpo_ros.files import CheckpointError
from cpo_ros.training.config import ALGOS, TrainConfig


class _HelpWithSettings(argparse.Action):
    """-h/--help of `cpo-ros train`: the options, then every setting with its default."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help=None):
        super().__init__(option_strings, dest, 0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        # Listed only when asked: the task options import MuJoCo, which must not be loaded
        # before `eval --video` picks its OpenGL backend.
        from cpo_ros.training.settings import help_text

        # A task by dotted path is listed too (--task before or after --help).
        task = getattr(namespace, 'task', None)
        argv = sys.argv[1:]
        for i, arg in enumerate(argv[:-1]):
            if arg == '--task':
                task = argv[i + 1]
        task = task or next((a.split('=', 1)[1] for a in argv if a.startswith('--task=')),
                            None)
        parser.epilog = help_text(task)
        parser.print_help()
        parser.exit()


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'train', help='train directly, without ROS (the fastest path)', add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Train directly, without ROS. Every setting below can be given with '
        "--set KEY=VALUE (repeatable) or in a YAML file (--config; a run's config.yaml "
        'works too); the flags are shorthands for the most common ones. Later sources win: '
        '--config, then the flags, then each --set in order. Unless set, out is '
        "runs/<task>_<algo>_s<seed> and cost_limit the task's default.")
    p.add_argument('-h', '--help', action=_HelpWithSettings,
                   help='show this help and every setting with its default, and exit')
    p.add_argument('--config', default=None, metavar='FILE.yaml',
                   help="settings from a YAML file: KEY: VALUE per line, or a run's "
                   'config.yaml')
    p.add_argument('--set', dest='assignments', action='append', default=[],
                   metavar='KEY=VALUE', help='one setting (repeatable), e.g. --set gamma=0.99 '
                   '--set hidden_sizes=64,32 --set max_episode_steps=500')
    where = p.add_mutually_exclusive_group()
    where.add_argument('--task', default=None,
                       help="task: a registered name (`cpo-ros tasks` lists them; default "
                       "circle) or a dotted path 'my_pkg.tasks:Corridor'")
    where.add_argument('--env-id', default=None,
                       help='any Gymnasium id reporting info["cost"], or a Safety-Gymnasium id')
    p.add_argument('--algo', choices=ALGOS, default=None, help="update rule (default 'cpo')")
    p.add_argument('--iterations', type=int, default=None)
    p.add_argument('--steps-per-iteration', type=int, default=None)
    p.add_argument('--num-envs', type=int, default=None)
    p.add_argument('--env-workers', type=int, default=None,
                   help='processes stepping the --env-id envs (default 1: in this process; '
                   'N >= 2 splits the envs over N workers, same results)')
    p.add_argument('--cost-limit', type=float, nargs='+', default=None,
                   help="limit d per episode, one per constraint (default: the task's, see "
                   '`cpo-ros tasks`; required for --env-id outside the project)')
    p.add_argument('--speed-limit', type=float, default=None,
                   help='shorthand for --set speed_limit=V, a parameter of the tasks that have '
                   'it (circle: a second constraint, cost 1 per step faster than V [m/s])')
    p.add_argument('--cost-shaping', action='store_const', const=True, default=None,
                   help='paper section 6.3: constrain cost + w P(violation within T steps)')
    p.add_argument('--shaping-horizon', type=int, default=None, help='T of --cost-shaping [steps]')
    p.add_argument('--shaping-weight', type=float, default=None, help='w of --cost-shaping')
    p.add_argument('--robot', default=None,
                   help='robot profile (config/robots/<name>.yaml, e.g. point, '
                   'turtlebot3_burger): limits, control period, task scale (where the task has '
                   'those parameters), domain randomisation; flags and --set override it')
    p.add_argument('--target-kl', type=float, default=None)
    p.add_argument('--seed', type=int, default=None)
    p.add_argument('--out', default=None,
                   help='run directory (default runs/<task>_<algo>_s<seed>)')
    mode = p.add_mutually_exclusive_group()
    mode.add_argument('--resume', action='store_true',
                      help='continue the run in OUT from checkpoints/last.pt (refused when there '
                      'is none, or when the task or algorithm settings differ)')
    mode.add_argument('--overwrite', action='store_true',
                      help='move a previous run in OUT aside (OUT.old-<time>), then start anew; '
                      'without --resume or --overwrite a run directory that holds results is '
                      'refused')
    p.add_argument('--torch-threads', type=int, default=None)
    p.add_argument('--quiet', action='store_true', help='no progress bar or per-iteration lines')


SHORTHANDS = ('task', 'env_id', 'algo', 'iterations', 'steps_per_iteration', 'num_envs',
              'env_workers',
              'cost_limit', 'speed_limit', 'cost_shaping', 'shaping_horizon', 'shaping_weight',
              'target_kl', 'seed', 'out', 'torch_threads')
"""The flags of `cpo-ros train` that set the setting of the same name (as --set would)."""


def _checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('--checkpoint', default='best',
                   help="'best' (default: checkpoints/best.pt, the best safe policy), 'last' "
                   '(checkpoints/last.pt) of the run directory --run, or the path of a .pt file')
    p.add_argument('--run', default='runs/circle_sim',
                   help="run directory where 'best' and 'last' are looked up (default: "
                   'runs/circle_sim, where `make demo` trains)')


def resolve_checkpoint(checkpoint: str, run: str) -> str:
    """Return the checkpoint file meant by --checkpoint best|last|PATH and --run DIR."""
    if checkpoint not in ('best', 'last'):
        return checkpoint
    path = os.path.join(run, 'checkpoints', f'{checkpoint}.pt')
    if checkpoint == 'best' and not os.path.isfile(path) and os.path.isfile(
            os.path.join(run, 'checkpoints', 'last.pt')):
        raise FileNotFoundError(f'{path} does not exist: no iteration of the run in {run} met '
                                f'every cost limit (progress.csv, column safe); '
                                f'--checkpoint last takes the last policy')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path} does not exist (is {run} a run directory? set --run)')
    return path


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser('eval', help='evaluate a checkpoint')
    _checkpoint_arguments(p)
    p.add_argument('--episodes', type=int, default=10)
    p.add_argument('--stochastic', action='store_true', help='sample actions (default: mean)')
    p.add_argument('--seed', type=int, default=12345)
    p.add_argument('--plot', default=None, help='write a top-down trajectory plot (PNG) here')
    p.add_argument('--video', default=None,
                   help='render one more episode from above into this GIF (MuJoCo off-screen; '
                   'MUJOCO_GL=osmesa unless set)')


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `cpo-ros`."""
    parser = argparse.ArgumentParser(prog='cpo-ros', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    _train_parser(sub)
    _eval_parser(sub)
    p = sub.add_parser('export', help='export a checkpoint for a robot (TorchScript + JSON)')
    _checkpoint_arguments(p)
    p.add_argument('--out', required=True, help='directory for policy.pt and policy.json')
    p = sub.add_parser('tasks', help='list the built-in and installed tasks with their costs '
                       'and default limits')
    p.add_argument('--json', action='store_true', help='machine-readable output')
    p = sub.add_parser('bringup', help='start the nodes of a launch file in one process',
                       description='Start the nodes of launch/<name>.launch.py with '
                       'config/<name>.yaml in one process. Arguments after the name are ROS '
                       'arguments, e.g. --ros-args -p learner:iterations:=5')
    from cpo_ros.ros.graph import GRAPHS  # plain data (no rclpy): the one list of bring-ups
    p.add_argument('name', help=f'one of {", ".join(sorted(GRAPHS))}')
    p.add_argument('ros_args', nargs=argparse.REMAINDER)
    return parser


def train_config(args: argparse.Namespace) -> tuple[TrainConfig, str]:
    """Return the run's configuration from --config, the shorthand flags and --set, in order.

    Also returns where its cost limit came from ('given' or the task's default).
    """
    from cpo_ros.sim.make import check_env_id, default_cost_limits
    from cpo_ros.training import settings

    values: dict = {}
    for key, value in (settings.load_file(args.config) if args.config else {}).items():
        settings.merge(values, key, value)
    for key in SHORTHANDS:
        value = getattr(args, key)
        if value is not None:
            settings.merge(values, key, value)
    for text in args.assignments:
        settings.merge(values, *settings.parse_assignment(text))
    profile = {}
    if args.robot is not None:
        from cpo_ros.deploy.profile import env_overrides, load_profile, task_scale
        profile = load_profile(args.robot)
        task, _ = settings.resolve_task(values)
        if task is None:
            raise ValueError('--robot profiles set up the simulated robot of a task, not of a '
                             'Gymnasium id')
        # The profile's section of this task (its scale) applies; flags and --set still win.
        values = {**env_overrides(profile), **task_scale(profile, task), **values}
    config, given = settings.build_config(values)
    if profile:
        config.robot = profile
    name = (config.task or config.env_id).replace('/', '_').replace(':', '_')
    if 'out' not in given:
        config.out = f'runs/{name}_{config.algo.algo}_s{config.seed}'
    if config.env_id is not None:
        check_env_id(config.env_id)
    if 'cost_limit' in given:
        return config, 'given'
    defaults = default_cost_limits(config.task, config.env_id, **config.task_kwargs)
    if defaults is None:
        raise ValueError(f'--cost-limit is required for {config.env_id}: the project knows no '
                         f'limit for it (its tasks know theirs: cpo-ros tasks)')
    return settings.with_cost_limit(config, defaults), f'default of {name}'


def _cmd_train(args: argparse.Namespace) -> int:
    from cpo_ros.training.trainer import train

    config, source = train_config(args)
    limits = config.algo.limits
    print(f'cost limit{"s" if len(limits) > 1 else ""} in use: '
          f'{", ".join(f"{d:g}" for d in limits)} per episode ({source})', flush=True)
    for idle in config.algo.idle_settings():
        print(f'cpo-ros train: warning: {idle}: no effect with --algo {config.algo.algo}',
              file=sys.stderr, flush=True)
    mode = 'resume' if args.resume else 'overwrite' if args.overwrite else 'fresh'
    train(config, resume=mode, show_progress=not args.quiet)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.video:
        # MuJoCo picks its OpenGL backend when first imported: headless machines need OSMesa.
        os.environ.setdefault('MUJOCO_GL', 'osmesa')
        if os.environ['MUJOCO_GL'] == 'osmesa':
            os.environ.setdefault('PYOPENGL_PLATFORM', 'osmesa')
    from cpo_ros.training.evaluate import evaluate, record_video

    args.checkpoint = resolve_checkpoint(args.checkpoint, args.run)
    print(f'checkpoint: {args.checkpoint}')
    result = evaluate(args.checkpoint, args.episodes, deterministic=not args.stochastic,
                      seed=args.seed, plot=args.plot)
    costs = ', '.join(f'{c:.3f} (limit {d:.3f})' for c, d in zip(
        result['mean_costs'], result['cost_limits'], strict=True))
    print(f"episodes {result['episodes']} | mean return {result['mean_return']:.3f} | "
          f"mean cost {costs}")
    if 'plot' in result:
        print(f"plot: {result['plot']}")
    if args.video:
        video = record_video(args.checkpoint, args.video, not args.stochastic, args.seed)
        print(f'video: {video}')
    return 0


def _cmd_tasks(args: argparse.Namespace) -> int:
    from cpo_ros.tasks.registry import describe_tasks

    rows = describe_tasks()
    broken = 1 if any('error' in r for r in rows) else 0
    if args.json:
        import json
        print(json.dumps(rows, indent=2))
        return broken
    width = max(len(r['name']) for r in rows)
    for r in rows:
        if 'error' in r:
            print(f"{r['name']:<{width}}  {r['origin']:<9}  {r['path']}\n{'':<{width}}  "
                  f"BROKEN: {r['error']}")
            continue
        costs = ', '.join(f'{c} <= {d:g}' for c, d in zip(r['costs'], r['limits'], strict=True))
        print(f"{r['name']:<{width}}  {r['origin']:<9}  {r['path']}\n{'':<{width}}  "
              f"costs: {costs} | episode {r['episode']} steps | obs {r['obs_dim']} | "
              f"sensors {r['sensors']}\n{'':<{width}}  {r['doc']}")
    return broken


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f'signal {signum}')


def main(argv: list[str] | None = None) -> int:
    """Run `cpo-ros`; bad input ends with a one-line error and exit code 2."""
    args = build_parser().parse_args(argv)
    if args.command == 'train' and threading.current_thread() is threading.main_thread():
        # SIGTERM (kill, a job scheduler, systemd) ends training like Ctrl-C: plot and summary.
        signal.signal(signal.SIGTERM, _interrupt)
        # SIGINT too, even when started with it ignored (a background job of a script, or a
        # parent that ignores it): Python then installs no handler of its own.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if args.command == 'train':
            return _cmd_train(args)
        if args.command == 'eval':
            return _cmd_eval(args)
        if args.command == 'export':
            from cpo_ros.deploy.export import export_policy
            out = export_policy(resolve_checkpoint(args.checkpoint, args.run), args.out)
            print(f'exported: {out / "policy.pt"} and {out / "policy.json"}')
            return 0
        if args.command == 'tasks':
            return _cmd_tasks(args)
        from cpo_ros.ros.bringup import bringup
        return bringup(args.name, args.ros_args)
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f'cpo-ros {args.command}: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the output's reader has gone (`cpo-ros tasks --json | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        # A listing may end early; anything else stopped before it was done.
        return 0 if args.command == 'tasks' else 141


if __name__ == '__main__':
    sys.exit(main())
