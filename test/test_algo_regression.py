"""Each update rule pinned: the same progress.csv figures on the same seed before and after a
refactor of the algorithm code.

A small run (3 iterations of 2,000 samples on Circle, seed 0) per algorithm and variant, its
figures after each update compared with those recorded before the refactor of issue 22 item 5.
The tight cases (x_limit 0.3, limit 2) keep the cost above the limit, so CPO's recovery and
PDO's multiplier are exercised. These figures pin the code, not a quality: a deliberate change
of an update rule changes them, and the commit that makes it records the new figures here.

The numeric libraries pick their kernels by the CPU (MKL, ATen, oneDNN and OpenBLAS use AVX-512
where it exists), and three updates carry a difference in the last bit into the second digit.
So each case trains in a child process whose libraries take their portable code paths
(NUMERIC_ENV), one thread each, meant to give the same figures on any x86-64 machine. Recorded
on an AVX-512 machine (2026-12-06), and the same there with MKL held to AVX2 and NumPy's AVX-512
loops off; the figures before, from the CPU's own kernels, failed on that machine.
"""

import csv
import json
import os
import subprocess
import sys

import pytest

TIGHT = {'x_limit': 0.3}
CASES = {
    'cpo': ({}, {}),
    'trpo': ({'algo': 'trpo'}, {}),
    'pdo': ({'algo': 'pdo'}, {}),
    'cpo_tight': ({'cost_limit': 2.0}, TIGHT),
    'cpo_near': ({'cost_limit': 30.0}, TIGHT),
    'cpo_filter_tight': ({'cost_limit': 2.0, 'cost_filter': True}, TIGHT),
    'pdo_tight': ({'algo': 'pdo', 'cost_limit': 2.0, 'pdo_lambda_lr': 0.05}, TIGHT),
    'cpo_shaped': ({'cost_shaping': True}, {}),
    'cpo_two': ({'cost_limit': (5.0, 10.0)}, {'speed_limit': 1.0}),
    'pdo_two': ({'algo': 'pdo', 'cost_limit': (2.0, 3.0), 'pdo_lambda_lr': 0.05},
                {'speed_limit': 1.0, **TIGHT}),
}
FLOATS = ('episode_return', 'episode_cost', 'kl', 'step_frac', 'lagrange', 'policy_std',
          'value_loss_reward', 'value_loss_cost', 'predicted_cost_change', 'cost_bias',
          'cost_rise_factor', 'cost_grad_noise', 'cost_grad_cos')
TEXTS = ('case', 'accepted')


NUMERIC_ENV = {'ATEN_CPU_CAPABILITY': 'default', 'MKL_CBWR': 'COMPATIBLE',
               'ONEDNN_MAX_CPU_ISA': 'SSE41', 'OPENBLAS_CORETYPE': 'Prescott',
               'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1'}
"""Environment of the child process: the numeric libraries' portable kernels, one thread."""

TRAIN = """
import json, sys
from cpo_ros.training.config import AlgoConfig, TrainConfig
from cpo_ros.training.trainer import train
settings, task_kwargs, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
settings = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
train(TrainConfig(task='circle', iterations=3, steps_per_iteration=2000, num_envs=4, seed=0,
                  out=out, task_kwargs=task_kwargs, algo=AlgoConfig(**settings)),
      show_progress=False)
"""


def figures(case: str, out: str) -> list[dict]:
    """Train the case in a child process (NUMERIC_ENV); return its pinned progress.csv columns."""
    settings, task_kwargs = CASES[case]
    subprocess.run([sys.executable, '-c', TRAIN, json.dumps(settings), json.dumps(task_kwargs),
                    out], check=True, env={**os.environ, **NUMERIC_ENV})
    with open(f'{out}/progress.csv') as f:
        rows = list(csv.DictReader(f))
    extra = [k for k in rows[0] if k.startswith(('lagrange_', 'constrained_cost'))]
    return [{k: (r[k] if k in TEXTS else float(r[k])) for k in (*FLOATS, *TEXTS, *extra)}
            for r in rows]


PINNED: dict[str, list[dict]] = {
    'cpo': [
        {'episode_return': 0.0154425, 'episode_cost': 0.0, 'kl': 0.00837683, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.601203, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 0.00377515, 'predicted_cost_change': -0.00173273, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.590327, 'cost_grad_cos': 0.316827,
         'case': 'inactive', 'accepted': 'True', 'constrained_cost': 0.0},
        {'episode_return': -0.00220904, 'episode_cost': 0.0, 'kl': 0.00740106, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.597047, 'value_loss_reward': 0.0111124,
         'value_loss_cost': 0.000269833, 'predicted_cost_change': -0.00843761,
         'cost_bias': 0.00051982, 'cost_rise_factor': 1.0, 'cost_grad_noise': 0.175983,
         'cost_grad_cos': 0.922239, 'case': 'inactive', 'accepted': 'True',
         'constrained_cost': 0.00051982},
        {'episode_return': 0.0812873, 'episode_cost': 0.0, 'kl': 0.00879582, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.594434, 'value_loss_reward': 0.00803312,
         'value_loss_cost': 0.000149456, 'predicted_cost_change': -0.00272295,
         'cost_bias': 0.00289516, 'cost_rise_factor': 1.0, 'cost_grad_noise': 0.252482,
         'cost_grad_cos': 0.885765, 'case': 'inactive', 'accepted': 'True',
         'constrained_cost': 0.00289516},
    ],
    'trpo': [
        {'episode_return': 0.0154425, 'episode_cost': 0.0, 'kl': 0.00837683, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.601203, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 0.00377515, 'predicted_cost_change': -0.00173273, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.590327, 'cost_grad_cos': 0.316827,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 0.0},
        {'episode_return': -0.00220904, 'episode_cost': 0.0, 'kl': 0.00740106, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.597047, 'value_loss_reward': 0.0111124,
         'value_loss_cost': 0.000269833, 'predicted_cost_change': -0.00843761, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.175983, 'cost_grad_cos': 0.922239,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 0.0},
        {'episode_return': 0.0812873, 'episode_cost': 0.0, 'kl': 0.00879582, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.594434, 'value_loss_reward': 0.00803312,
         'value_loss_cost': 0.000149456, 'predicted_cost_change': -0.00272295, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.252482, 'cost_grad_cos': 0.885765,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 0.0},
    ],
    'pdo': [
        {'episode_return': 0.0154425, 'episode_cost': 0.0, 'kl': 0.00837683, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.601203, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 0.00377515, 'predicted_cost_change': -0.00173273, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.590327, 'cost_grad_cos': 0.316827,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 0.0},
        {'episode_return': -0.00220904, 'episode_cost': 0.0, 'kl': 0.00740106, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.597047, 'value_loss_reward': 0.0111124,
         'value_loss_cost': 0.000269833, 'predicted_cost_change': -0.00843761, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.175983, 'cost_grad_cos': 0.922239,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 0.0},
        {'episode_return': 0.0812873, 'episode_cost': 0.0, 'kl': 0.00879582, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.594434, 'value_loss_reward': 0.00803312,
         'value_loss_cost': 0.000149456, 'predicted_cost_change': -0.00272295, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.252482, 'cost_grad_cos': 0.885765,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 0.0},
    ],
    'cpo_tight': [
        {'episode_return': 0.0154425, 'episode_cost': 25.15, 'kl': 0.00648268, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.606332, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 23.0143, 'predicted_cost_change': -2.8962, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 2.05462, 'cost_grad_cos': -0.7284,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 29.3321},
        {'episode_return': -0.0294449, 'episode_cost': 27.225, 'kl': 0.00659837, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.603428, 'value_loss_reward': 0.00861368,
         'value_loss_cost': 48.0134, 'predicted_cost_change': -4.46105, 'cost_bias': 1.49136,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.619871, 'cost_grad_cos': 0.508121,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 32.907},
        {'episode_return': 0.0195849, 'episode_cost': 18.95, 'kl': 0.00665924, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.60183, 'value_loss_reward': 0.00291239,
         'value_loss_cost': 22.0526, 'predicted_cost_change': -4.83552, 'cost_bias': -0.100232,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.762012, 'cost_grad_cos': 0.639941,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 22.7642},
    ],
    'cpo_near': [
        {'episode_return': 0.0154425, 'episode_cost': 25.15, 'kl': 0.00837683, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.601203, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 23.0143, 'predicted_cost_change': 0.389669, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 2.05462, 'cost_grad_cos': -0.7284,
         'case': 'dual_nu0', 'accepted': 'True', 'constrained_cost': 29.3321},
        {'episode_return': -0.00220904, 'episode_cost': 27.85, 'kl': 0.00812843, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.595532, 'value_loss_reward': 0.0111124,
         'value_loss_cost': 48.7509, 'predicted_cost_change': -1.96871, 'cost_bias': 0.693099,
         'cost_rise_factor': 6.92895, 'cost_grad_noise': 0.586023, 'cost_grad_cos': 0.493181,
         'case': 'dual', 'accepted': 'True', 'constrained_cost': 32.5492},
        {'episode_return': 0.0542039, 'episode_cost': 22.925, 'kl': 0.00943268, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.593172, 'value_loss_reward': 0.00558013,
         'value_loss_cost': 32.5362, 'predicted_cost_change': 0.0242091, 'cost_bias': -0.401717,
         'cost_rise_factor': 6.92895, 'cost_grad_noise': 0.499159, 'cost_grad_cos': 0.451982,
         'case': 'dual', 'accepted': 'True', 'constrained_cost': 27.1497},
    ],
    'cpo_filter_tight': [
        {'episode_return': 0.0154425, 'episode_cost': 25.15, 'kl': 0.00648268, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.606332, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 23.0143, 'predicted_cost_change': -2.8962, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 2.05462, 'cost_grad_cos': -0.7284,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 29.3321},
        {'episode_return': -0.0294449, 'episode_cost': 27.225, 'kl': 0.00659837, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.603428, 'value_loss_reward': 0.00861368,
         'value_loss_cost': 48.0134, 'predicted_cost_change': -4.46105, 'cost_bias': 1.09713,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.619871, 'cost_grad_cos': 0.508121,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 30.6024},
        {'episode_return': 0.0195849, 'episode_cost': 18.95, 'kl': 0.00665924, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.60183, 'value_loss_reward': 0.00291239,
         'value_loss_cost': 22.0526, 'predicted_cost_change': -4.83552, 'cost_bias': 0.238741,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.762012, 'cost_grad_cos': 0.639941,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 23.1286},
    ],
    'pdo_tight': [
        {'episode_return': 0.0154425, 'episode_cost': 25.15, 'kl': 0.00837683, 'step_frac': 1.0,
         'lagrange': 1.1575, 'policy_std': 0.601203, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 23.0143, 'predicted_cost_change': 0.389669, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 2.05462, 'cost_grad_cos': -0.7284,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 25.15},
        {'episode_return': -0.00220904, 'episode_cost': 27.85, 'kl': 0.00772249, 'step_frac': 0.8,
         'lagrange': 2.45, 'policy_std': 0.595302, 'value_loss_reward': 0.0111124,
         'value_loss_cost': 48.7509, 'predicted_cost_change': -4.54187, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.586023, 'cost_grad_cos': 0.493181,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 27.85},
        {'episode_return': 0.0144353, 'episode_cost': 20.55, 'kl': 0.00607127, 'step_frac': 0.8,
         'lagrange': 3.3775, 'policy_std': 0.596098, 'value_loss_reward': 0.00345067,
         'value_loss_cost': 27.717, 'predicted_cost_change': -4.60535, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.565871, 'cost_grad_cos': 0.57268,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 20.55},
    ],
    'cpo_shaped': [
        {'episode_return': 0.0154425, 'episode_cost': 0.0, 'kl': 0.00766168, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.597832, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 2.4757, 'predicted_cost_change': -1.021, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 1.34367, 'cost_grad_cos': -0.319501,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 17.7083},
        {'episode_return': 0.00125754, 'episode_cost': 0.0, 'kl': 0.0080323, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.588802, 'value_loss_reward': 0.00977551,
         'value_loss_cost': 4.21193, 'predicted_cost_change': -1.20039, 'cost_bias': 0.306301,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.550054, 'cost_grad_cos': 0.778677,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 11.7595},
        {'episode_return': 0.0532857, 'episode_cost': 0.025, 'kl': 0.00792579, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.58382, 'value_loss_reward': 0.00638998,
         'value_loss_cost': 0.461998, 'predicted_cost_change': -1.11162, 'cost_bias': 0.582027,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.699486, 'cost_grad_cos': 0.46073,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 7.15648},
    ],
    'cpo_two': [
        {'episode_return': 0.0154425, 'episode_cost': 0.0, 'kl': 0.00644865, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.583851, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 2.31824, 'predicted_cost_change': -0.00430988, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.590327, 'cost_grad_cos': 0.316827,
         'case': 'recovery', 'accepted': 'True', 'lagrange_0': 0.0, 'constrained_cost_0': 0.0,
         'lagrange_1': 0.0, 'constrained_cost_1': 13.0328},
        {'episode_return': 7.47318e-05, 'episode_cost': 0.0, 'kl': 0.00734731, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.570116, 'value_loss_reward': 0.00646466,
         'value_loss_cost': 4.62044, 'predicted_cost_change': -0.0144484, 'cost_bias': 0.00129297,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.101232, 'cost_grad_cos': 0.933996,
         'case': 'dual', 'accepted': 'True', 'lagrange_0': 0.0, 'constrained_cost_0': 0.00129297,
         'lagrange_1': 0.0, 'constrained_cost_1': 11.1764},
        {'episode_return': 0.0259066, 'episode_cost': 0.0, 'kl': 0.0083193, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.558579, 'value_loss_reward': 0.00375772,
         'value_loss_cost': 3.47743, 'predicted_cost_change': -0.00478389, 'cost_bias': 0.00523961,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.204532, 'cost_grad_cos': 0.778319,
         'case': 'dual', 'accepted': 'True', 'lagrange_0': 0.0, 'constrained_cost_0': 0.00523961,
         'lagrange_1': 0.0, 'constrained_cost_1': 11.084},
    ],
    'pdo_two': [
        {'episode_return': 0.0154425, 'episode_cost': 25.15, 'kl': 0.00837683, 'step_frac': 1.0,
         'lagrange': 1.1575, 'policy_std': 0.601203, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 25.3287, 'predicted_cost_change': 0.389669, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 2.05469, 'cost_grad_cos': -0.7284,
         'case': 'trpo', 'accepted': 'True', 'lagrange_0': 1.1575, 'constrained_cost_0': 25.15,
         'lagrange_1': 0.45, 'constrained_cost_1': 12.0},
        {'episode_return': -0.00220904, 'episode_cost': 27.85, 'kl': 0.00747191, 'step_frac': 0.8,
         'lagrange': 2.45, 'policy_std': 0.592048, 'value_loss_reward': 0.0111124,
         'value_loss_cost': 54.8145, 'predicted_cost_change': -4.46004, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.586183, 'cost_grad_cos': 0.493181,
         'case': 'trpo', 'accepted': 'True', 'lagrange_0': 2.45, 'constrained_cost_0': 27.85,
         'lagrange_1': 0.885, 'constrained_cost_1': 11.7},
        {'episode_return': 0.0144491, 'episode_cost': 20.525, 'kl': 0.00965326, 'step_frac': 1.0,
         'lagrange': 3.37625, 'policy_std': 0.589197, 'value_loss_reward': 0.00333467,
         'value_loss_cost': 32.67, 'predicted_cost_change': -5.48193, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.580907, 'cost_grad_cos': 0.497358,
         'case': 'trpo', 'accepted': 'True', 'lagrange_0': 3.37625, 'constrained_cost_0': 20.525,
         'lagrange_1': 1.305, 'constrained_cost_1': 11.4},
    ],
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_update_rule_gives_its_pinned_figures(tmp_path, case):
    got, want = figures(case, str(tmp_path)), PINNED[case]
    assert len(got) == len(want)
    for i, (row, pinned) in enumerate(zip(got, want, strict=True)):
        for key, value in pinned.items():
            if isinstance(value, str):
                assert row[key] == value, (i, key)
            else:
                assert row[key] == pytest.approx(value, rel=1e-4, abs=1e-7), (i, key)
