"""Evaluate a checkpoint: mean episode return and cost, optionally a top-down trajectory plot."""

import os
from pathlib import Path
from typing import Any

import numpy as np

from cpo_ros.algo.networks import GaussianPolicy, NumpyActor
from cpo_ros.training.checkpoint import CheckpointError, load_checkpoint
from cpo_ros.training.config import TrainConfig


def load_policy(path: str | os.PathLike) -> tuple[GaussianPolicy, TrainConfig]:
    """Return the policy and the training configuration stored in a checkpoint."""
    payload = load_checkpoint(path, ('config', 'dims', 'algorithm'))
    config = TrainConfig.from_dict(payload['config'])
    dims = payload['dims']
    policy = GaussianPolicy(dims['obs_dim'], dims['act_dim'], config.algo.hidden_sizes,
                            config.algo.init_log_std, obs_clip=config.algo.obs_clip)
    try:
        policy.load_state_dict(payload['algorithm']['policy'])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f'checkpoint {path}: policy does not load ({exc})') from exc
    return policy, config


def evaluate(path: str | os.PathLike, episodes: int = 10, deterministic: bool = True,
             seed: int = 12345, plot: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run whole episodes with the checkpoint's policy; return the means (and plot path)."""
    from cpo_ros.sim.make import make_vec_env

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
    # Goal: each episode draws its own hazards; keep them to draw beside its track.
    has_hazards = hasattr(env, 'hazards')
    layouts = [env.hazards[i].copy() for i in range(num_envs)] if has_hazards else None
    finished_hazards: list[np.ndarray] = []
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
                if has_hazards:
                    finished_hazards.append(layouts[i])
            ret[i] = cst[i] = 0.0
            tracks[i] = []
            if has_hazards:
                layouts[i] = env.hazards[i].copy()
    mean_costs = [float(v) for v in np.mean(costs, axis=0)]
    result: dict[str, Any] = {'episodes': episodes, 'mean_return': float(np.mean(returns)),
                              'mean_cost': mean_costs[0], 'mean_costs': mean_costs,
                              'cost_limit': config.algo.limits[0],
                              'cost_limits': list(config.algo.limits)}
    if plot is not None and finished_tracks:
        result['plot'] = str(plot_tracks(finished_tracks, getattr(env, 'task', None), plot,
                                         finished_hazards or None))
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
                hazards: list[np.ndarray] | None = None) -> Path:
    """Draw trajectories from above with the task drawn in.

    Circle: the safe strip and the target circle; Goal: each episode's hazard discs (K, 2) in
    the colour of its track.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    for i, track in enumerate(tracks):
        line, = ax.plot(track[:, 0], track[:, 1], lw=1, alpha=0.7)
        if hazards is not None:
            for j, (x, y) in enumerate(hazards[i]):
                ax.add_patch(plt.Circle((x, y), task.hazard_radius, color=line.get_color(),
                                        alpha=0.25, label='hazards' if i == j == 0 else None))
    extent = max(5.0, max(float(np.abs(t).max()) for t in tracks) * 1.1)
    if hazards is not None:
        extent = max(extent, (task.placement_extent + task.hazard_radius) * 1.05)
    x_limit = getattr(task, 'x_limit', None)
    if x_limit is not None:
        ax.axvspan(-x_limit, x_limit, color='tab:green', alpha=0.15, label='safe area')
    radius = getattr(task, 'target_radius', None)
    if radius is not None:
        angle = np.linspace(0, 2 * np.pi, 200)
        ax.plot(radius * np.cos(angle), radius * np.sin(angle), 'k:', lw=1, label='target circle')
        extent = max(extent, radius * 1.1)
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
