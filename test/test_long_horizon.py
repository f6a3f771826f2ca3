"""CPO on a task it was not tuned on: 500-step Point-Circle, through the real `cpo-ros train`.

The default estimate of the constraint holds the cost near its limit here. How far the paper's
estimate (lambda_C 1, raw critics, the point estimate of J_C, no calibration) lets it run is a
benchmark figure (bench/bench_circle_algos.py --task circle_long --algos cpo cpo_paper), not a
test: a test must not fail when the baseline improves.
"""

import csv
import subprocess
import sys

import numpy as np

LIMIT = 25.0


def _train(out, extra):
    args = [sys.executable, '-m', 'cpo_ros.cli', 'train', '--task', 'circle_long', '--iterations',
            '10', '--steps-per-iteration', '25000', '--num-envs', '16', '--seed', '0',
            '--torch-threads', '1', '--out', str(out), '--quiet', *extra]
    result = subprocess.run(args, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out / 'progress.csv') as f:
        return np.array([float(r['episode_cost']) for r in csv.DictReader(f)])


def test_long_episodes_keep_the_cost_near_its_limit(tmp_path):
    costs = _train(tmp_path / 'default', [])
    late = costs[4:].mean()  # the first iterations bring the random policy's cost down
    assert late <= 1.2 * LIMIT, costs
