"""Evaluate a checkpoint: mean episode return and cost, optionally a top-down trajectory plot."""

import os
from pathlib import Path
from typing import Any

import numpy as np

from cpo_ros.algo.networks import GaussianPolicy, NumpyActor
from cpo_ros.training.checkpoint import checkpoint_config, CheckpointError, load_checkpoint
from cpo_ros.training.config import TrainConfig
from cpo_ros.validation import check_range


def load_policy(path: str | os.PathLike) -> tuple[GaussianPolicy, TrainConfig]:
    """Return the policy and the training configuration stored in a checkpoint."""
    payload = load_checkpoint(path, ('config', 'dims', 'algorithm'))
    config = checkpoint_config(payload, path)
    dims = payload['dims']
    policy = GaussianPolicy(dims['obs_dim'], dims['act_dim'], config.algo.hidden_sizes,
                            config.algo.init_log_std, obs_clip=config.algo.obs_clip)
    try:
        policy.load_state_dict(payload['algorithm']['policy'])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f'checkpoint {path}: policy does not load ({exc})') from exc
    return policy, config


def evaluate(path: str | os.PathLike, episodes: int = 10, deterministic: bool = True,
             seed: int = 12345, plot: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run whole episodes with the checkpoint's policy; return the means (and plot path)."""
    from cpo_ros.sim.make import make_vec_env

    check_range('episodes', episodes, 1, 100_000, integer=True)
    policy, config = load_policy(path)
    num_envs = max(1, min(episodes, 16))
    env = make_vec_env(task=config.task, env_id=config.env_id, num_envs=num_envs, seed=seed,
                       **config.task_kwargs)
    obs = env.reset(seed=seed)
    actor, rng = NumpyActor(policy), np.random.default_rng(seed)
    returns, costs = [], []
    m = getattr(env, 'num_costs', 1)
    ret, cst = np.zeros(num_envs), np.zeros((num_envs, m))
    tracks: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
    finished_tracks: list[np.ndarray] = []
    has_pose = hasattr(env, 'poses')
    # Each episode draws its own layout (obstacles, objects): keep it to draw beside its track.
    task = getattr(env, 'task', None)
    layouts = [task.markers(i) for i in range(num_envs)] if task is not None else None
    finished_layouts: list[list] = []
    while len(returns) < episodes:
        if has_pose:
            for i, p in enumerate(env.poses()):
                tracks[i].append(p[:2].copy())
        _, _, action = actor.act(obs, deterministic, rng)
        obs, reward, cost, terminated, truncated, _info = env.step(action)
        ret += reward
        cst += np.asarray(cost).reshape(num_envs, m)
        for i in np.flatnonzero(terminated | truncated):
            if len(returns) < episodes:
                returns.append(float(ret[i]))
                costs.append(cst[i].copy())
                if has_pose:
                    finished_tracks.append(np.asarray(tracks[i]))
                if layouts is not None:
                    finished_layouts.append(layouts[i])
            ret[i] = cst[i] = 0.0
            tracks[i] = []
            if layouts is not None:
                layouts[i] = task.markers(i)
    mean_costs = [float(v) for v in np.mean(costs, axis=0)]
    result: dict[str, Any] = {'episodes': episodes, 'mean_return': float(np.mean(returns)),
                              'mean_cost': mean_costs[0], 'mean_costs': mean_costs,
                              'cost_limit': config.algo.limits[0],
                              'cost_limits': list(config.algo.limits)}
    if plot is not None and finished_tracks:
        result['plot'] = str(plot_tracks(finished_tracks, task, plot, finished_layouts or None))
    return result


def record_video(path: str | os.PathLike, video: str | os.PathLike, deterministic: bool = True,
                 seed: int = 12345, size: int = 480) -> Path:
    """Render one episode of the checkpoint's policy from above and write it as a GIF."""
    from cpo_ros.sim.make import make_vec_env
    from cpo_ros.sim.render import save_gif, TopDownRenderer

    policy, config = load_policy(path)
    if config.task is None:
        raise ValueError(f'--video renders the project tasks; {config.env_id} is a Gymnasium id')
    env = make_vec_env(task=config.task, num_envs=1, seed=seed, **config.task_kwargs)
    obs = env.reset(seed=seed)
    actor, rng = NumpyActor(policy), np.random.default_rng(seed)
    renderer = TopDownRenderer(env, size)
    try:
        frames = [renderer.render()]
        done = False
        while not done:
            _, _, action = actor.act(obs, deterministic, rng)
            obs, _, _, terminated, truncated, _ = env.step(action)
            done = bool(terminated[0] or truncated[0])
            if not done:  # at the end the env has already reset to a new episode
                frames.append(renderer.render())
    finally:
        renderer.close()
    fps = 1.0 / env.robots.config.control_dt
    return save_gif(frames, video, fps)


def plot_tracks(tracks: list[np.ndarray], task: Any, path: str | os.PathLike,
                layouts: list[list[Any]] | None = None) -> Path:
    """Draw trajectories from above with the task drawn in.

    The task's safe area, and each episode's markers (its layout at the start: obstacles, objects,
    the target circle) in the colour of its track.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    extent = max(5.0, max(float(np.abs(t).max()) for t in tracks) * 1.1)
    labelled: set[str] = set()
    for i, track in enumerate(tracks):
        line, = ax.plot(track[:, 0], track[:, 1], lw=1, alpha=0.7)
        for marker in (layouts[i] if layouts is not None else []):
            label = None if marker.ns in labelled else marker.ns
            labelled.add(marker.ns)
            points = np.asarray(marker.points).reshape(-1, 2)
            if marker.kind == 'line_strip':
                ax.plot(points[:, 0], points[:, 1], 'k:', lw=1, label=label)
            elif marker.kind == 'discs':
                for j, (x, y) in enumerate(points):
                    ax.add_patch(plt.Circle((x, y), marker.scale / 2, color=line.get_color(),
                                            alpha=0.25, label=label if j == 0 else None))
            else:
                ax.scatter(points[:, 0], points[:, 1], s=12, color=marker.rgba[:3],
                           label=label)
            if len(points):
                extent = max(extent, float(np.abs(points).max()) + marker.scale)
    area = task.safe_area() if task is not None else None
    if area is not None:
        outline = np.clip(np.asarray(area.vertices), -1e3, 1e3)
        ax.fill(outline[:, 0], outline[:, 1], color='tab:green', alpha=0.15, label='safe area')
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect('equal')
    ax.set_xlabel('x [m]')
    ax.set_ylabel('y [m]')
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc='upper right')
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
