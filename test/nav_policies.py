"""Exported Goal policies with hand-set weights, for deploy tests and the navigation bench.

The deploy machinery (goals, scan, shield) is what these measure, not learning: each starts
from a real Goal training checkpoint (one iteration) and sets the network's weights so that
its mean action is a known controller, then goes through the real `cpo-ros export`.
"""

from pathlib import Path
import subprocess
import sys

import torch

from cpo_ros.tasks.goal import GoalParams, ROBOT_LABELS
from cpo_ros.training.checkpoint import load_checkpoint, save_checkpoint

SCAN0 = len(ROBOT_LABELS)
"""Index of scan_0 in the observation."""


def goal_checkpoint(out: Path) -> Path:
    """Train Goal for one short iteration; return its checkpoint."""
    subprocess.run([sys.executable, '-m', 'cpo_ros.cli', 'train', '--task', 'goal',
                    '--iterations', '1', '--steps-per-iteration', '2000', '--num-envs', '2',
                    '--out', str(out), '--quiet'], check=True, timeout=600)
    return out / 'checkpoints' / 'last.pt'


def export_with(checkpoint: Path, out: Path, kind: str) -> Path:
    """Export the checkpoint with weights set to a controller; return the policy directory.

    kind 'straight': drive straight ahead at 0.5 m/s whatever it sees (the shield's test).
    kind 'pursuit': turn toward the goal and drive at it, slowing and steering away from what
    the front half of the scan sees (a reactive controller written as the policy network).
    """
    payload = load_checkpoint(checkpoint)
    policy = payload['algorithm']['policy']
    obs_dim = policy['norm.mean'].shape[0]
    policy['norm.mean'] = torch.zeros(obs_dim, dtype=torch.float64)
    policy['norm.var'] = torch.ones(obs_dim, dtype=torch.float64)
    w0, w2, w4 = (torch.zeros_like(policy[f'mean_net.{i}.weight']) for i in (0, 2, 4))
    b4 = torch.zeros(2)
    if kind == 'straight':
        b4[0] = 0.5 / 1.5  # action = 1.5 * output for v, 2.0 * output for w
    elif kind == 'pursuit':
        spec = GoalParams().scan_spec
        angles = spec.angle_min + spec.angle_increment * torch.arange(spec.num_rays)
        front = torch.clamp(torch.cos(angles), min=0.0)
        w0[0, 2] = 1.0  # goal_cos
        w0[1, 3] = 1.0  # goal_sin
        w0[2, SCAN0:SCAN0 + spec.num_rays] = 2.0 * torch.sin(angles) * front  # left minus right
        w0[3, SCAN0:SCAN0 + spec.num_rays] = 1.5 * front ** 2  # something ahead
        for i in range(4):
            w2[i, i] = 1.5
        w4[0, 0], w4[0, 3] = 0.9, -0.6   # v: toward the goal, slower when blocked
        # w: toward the goal, away from the nearer side, and left when blocked head-on.
        w4[1, 1], w4[1, 2], w4[1, 3] = 1.5, -2.5, 0.8
    else:
        raise ValueError(f'unknown policy kind {kind!r}')
    policy['mean_net.0.weight'], policy['mean_net.0.bias'] = w0, torch.zeros_like(
        policy['mean_net.0.bias'])
    policy['mean_net.2.weight'], policy['mean_net.2.bias'] = w2, torch.zeros_like(
        policy['mean_net.2.bias'])
    policy['mean_net.4.weight'], policy['mean_net.4.bias'] = w4, b4
    payload.pop('format')
    edited = out / f'{kind}.pt'
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(edited, payload)
    subprocess.run([sys.executable, '-m', 'cpo_ros.cli', 'export', '--checkpoint', str(edited),
                    '--out', str(out / kind)], check=True, timeout=300)
    return out / kind

