"""The `cpo-ros` command: train, eval, export and bringup."""

import argparse
import os
import signal
import sys
import threading

from cpo_ros.core.checkpoint import CheckpointError
from cpo_ros.core.config import AlgoConfig, ALGOS, TrainConfig


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser('train', help='train directly, without ROS (the fastest path)')
    where = p.add_mutually_exclusive_group()
    where.add_argument('--task', default=None,
                       help="project task: 'circle' (default), 'circle_long', 'gather' or 'goal'")
    where.add_argument('--env-id', default=None,
                       help='any Gymnasium id reporting info["cost"], or a Safety-Gymnasium id')
    p.add_argument('--algo', choices=ALGOS, default='cpo')
    p.add_argument('--iterations', type=int, default=100)
    p.add_argument('--steps-per-iteration', type=int, default=50_000)
    p.add_argument('--num-envs', type=int, default=16)
    p.add_argument('--cost-limit', type=float, nargs='+', default=None,
                   help="limit d per episode, one per constraint (default: the task's, "
                   'circle 5, circle_long 25, gather 0.1, goal 50; with --speed-limit circle 5 '
                   '10, circle_long 25 100; required for --env-id outside the project)')
    p.add_argument('--speed-limit', type=float, default=None,
                   help='circle: add a second constraint, cost 1 per step faster than this '
                   '[m/s]')
    p.add_argument('--cost-shaping', action='store_true',
                   help='paper section 6.3: constrain cost + w P(violation within T steps)')
    p.add_argument('--shaping-horizon', type=int, default=AlgoConfig.shaping_horizon,
                   help='T of --cost-shaping [steps]')
    p.add_argument('--shaping-weight', type=float, default=AlgoConfig.shaping_weight,
                   help='w of --cost-shaping')
    p.add_argument('--target-kl', type=float, default=AlgoConfig.target_kl)
    p.add_argument('--seed', type=int, default=0)
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
    p.add_argument('--torch-threads', type=int, default=2)
    p.add_argument('--quiet', action='store_true', help='no progress bar or per-iteration lines')


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
    p = sub.add_parser('bringup', help='start the nodes of a launch file in one process',
                       description='Start the nodes of launch/<name>.launch.py with '
                       'config/<name>.yaml in one process. Arguments after the name are ROS '
                       'arguments, e.g. --ros-args -p learner:iterations:=5')
    p.add_argument('name', help='circle_sim, gather_sim or deploy')
    p.add_argument('ros_args', nargs=argparse.REMAINDER)
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from cpo_ros.core.trainer import train
    from cpo_ros.envs.make import check_env_id, DEFAULT_COST_LIMITS, default_cost_limits

    task = args.task if args.task or args.env_id else 'circle'
    name = task or args.env_id.replace('/', '_')
    task_kwargs = {}
    if args.speed_limit is not None:
        if task not in ('circle', 'circle_long'):
            raise ValueError('--speed-limit is a constraint of the circle tasks')
        task_kwargs['speed_limit'] = args.speed_limit
    if args.env_id is not None:
        check_env_id(args.env_id)
    defaults = default_cost_limits(task, args.env_id, **task_kwargs)
    if args.cost_limit is None and defaults is None:
        raise ValueError(f'--cost-limit is required for {args.env_id}: the project knows no '
                         f'limit for it (its own tasks: {", ".join(DEFAULT_COST_LIMITS)})')
    limits = tuple(args.cost_limit or defaults)
    source = 'given' if args.cost_limit else f'default of {task or args.env_id}'
    print(f'cost limit{"s" if len(limits) > 1 else ""} in use: '
          f'{", ".join(f"{d:g}" for d in limits)} per episode ({source})')
    config = TrainConfig(
        task=task, env_id=args.env_id, iterations=args.iterations,
        steps_per_iteration=args.steps_per_iteration, num_envs=args.num_envs, seed=args.seed,
        out=args.out or f'runs/{name}_{args.algo}_s{args.seed}', torch_threads=args.torch_threads,
        task_kwargs=task_kwargs,
        algo=AlgoConfig(algo=args.algo, cost_limit=limits[0] if len(limits) == 1 else limits,
                        target_kl=args.target_kl, cost_shaping=args.cost_shaping,
                        shaping_horizon=args.shaping_horizon,
                        shaping_weight=args.shaping_weight))
    mode = 'resume' if args.resume else 'overwrite' if args.overwrite else 'fresh'
    train(config, resume=mode, show_progress=not args.quiet)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.video:
        # MuJoCo picks its OpenGL backend when first imported: headless machines need OSMesa.
        os.environ.setdefault('MUJOCO_GL', 'osmesa')
        if os.environ['MUJOCO_GL'] == 'osmesa':
            os.environ.setdefault('PYOPENGL_PLATFORM', 'osmesa')
    from cpo_ros.core.evaluate import evaluate, record_video

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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f'signal {signum}')


def main(argv: list[str] | None = None) -> int:
    """Run `cpo-ros`; bad input ends with a one-line error and exit code 2."""
    args = build_parser().parse_args(argv)
    if args.command == 'train' and threading.current_thread() is threading.main_thread():
        # SIGTERM (kill, a job scheduler, systemd) ends training like Ctrl-C: plot and summary.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == 'train':
            return _cmd_train(args)
        if args.command == 'eval':
            return _cmd_eval(args)
        if args.command == 'export':
            from cpo_ros.core.export import export_policy
            out = export_policy(resolve_checkpoint(args.checkpoint, args.run), args.out)
            print(f'exported: {out / "policy.pt"} and {out / "policy.json"}')
            return 0
        from cpo_ros.ros.bringup import bringup
        return bringup(args.name, args.ros_args)
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f'cpo-ros {args.command}: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
