"""Each update rule pinned: the same progress.csv figures on the same seed before and after a
refactor of the algorithm code.

A small run (3 iterations of 2,000 samples on Circle, seed 0) per algorithm and variant, its
figures after each update compared with those recorded before the refactor of issue 22 item 5.
The tight cases (x_limit 0.3, limit 2) keep the cost above the limit, so CPO's recovery and
PDO's multiplier are exercised. These figures pin the code, not a quality: a deliberate change
of an update rule changes them, and the commit that makes it records the new figures here.
"""

import csv

import pytest

from cpo_ros.training.config import AlgoConfig, TrainConfig
from cpo_ros.training.trainer import train

TIGHT = {'x_limit': 0.3}
CASES = {
    'cpo': ({}, {}),
    'trpo': ({'algo': 'trpo'}, {}),
    'pdo': ({'algo': 'pdo'}, {}),
    'cpo_tight': ({'cost_limit': 2.0}, TIGHT),
    'cpo_near': ({'cost_limit': 30.0}, TIGHT),
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


def figures(case: str, out: str) -> list[dict]:
    """Train the case; return each iteration's pinned progress.csv columns."""
    settings, task_kwargs = CASES[case]
    train(TrainConfig(task='circle', iterations=3, steps_per_iteration=2000, num_envs=4,
                      seed=0, out=out, task_kwargs=task_kwargs, algo=AlgoConfig(**settings)),
          show_progress=False)
    with open(f'{out}/progress.csv') as f:
        rows = list(csv.DictReader(f))
    extra = [k for k in rows[0] if k.startswith(('lagrange_', 'constrained_cost'))]
    return [{k: (r[k] if k in TEXTS else float(r[k])) for k in (*FLOATS, *TEXTS, *extra)}
            for r in rows]


PINNED: dict[str, list[dict]] = {
    'cpo': [
        {'episode_return': 0.0154425, 'episode_cost': 0.0, 'kl': 0.00837538, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.601223, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 0.00377515, 'predicted_cost_change': -0.00173136, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.590278, 'cost_grad_cos': 0.316827,
         'case': 'inactive', 'accepted': 'True', 'constrained_cost': 0.0},
        {'episode_return': -0.00221012, 'episode_cost': 0.0, 'kl': 0.00742459, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.597071, 'value_loss_reward': 0.0111131,
         'value_loss_cost': 0.000269839, 'predicted_cost_change': -0.00846947,
         'cost_bias': 0.000519408, 'cost_rise_factor': 1.0, 'cost_grad_noise': 0.175814,
         'cost_grad_cos': 0.922241, 'case': 'inactive', 'accepted': 'True',
         'constrained_cost': 0.000519408},
        {'episode_return': 0.0817441, 'episode_cost': 0.0, 'kl': 0.00886357, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.594351, 'value_loss_reward': 0.00801724,
         'value_loss_cost': 0.000149468, 'predicted_cost_change': -0.00261427,
         'cost_bias': 0.00290443, 'cost_rise_factor': 1.0, 'cost_grad_noise': 0.252303,
         'cost_grad_cos': 0.88558, 'case': 'inactive', 'accepted': 'True',
         'constrained_cost': 0.00290443},
    ],
    'trpo': [
        {'episode_return': 0.0154425, 'episode_cost': 0.0, 'kl': 0.00837538, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.601223, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 0.00377515, 'predicted_cost_change': -0.00173136, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.590278, 'cost_grad_cos': 0.316827,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 0.0},
        {'episode_return': -0.00221012, 'episode_cost': 0.0, 'kl': 0.00742459, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.597071, 'value_loss_reward': 0.0111131,
         'value_loss_cost': 0.000269839, 'predicted_cost_change': -0.00846947, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.175814, 'cost_grad_cos': 0.922241,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 0.0},
        {'episode_return': 0.0817441, 'episode_cost': 0.0, 'kl': 0.00886357, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.594351, 'value_loss_reward': 0.00801724,
         'value_loss_cost': 0.000149468, 'predicted_cost_change': -0.00261427, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.252303, 'cost_grad_cos': 0.88558,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 0.0},
    ],
    'pdo': [
        {'episode_return': 0.0154425, 'episode_cost': 0.0, 'kl': 0.00837538, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.601223, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 0.00377515, 'predicted_cost_change': -0.00173136, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.590278, 'cost_grad_cos': 0.316827,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 0.0},
        {'episode_return': -0.00221012, 'episode_cost': 0.0, 'kl': 0.00742459, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.597071, 'value_loss_reward': 0.0111131,
         'value_loss_cost': 0.000269839, 'predicted_cost_change': -0.00846947, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.175814, 'cost_grad_cos': 0.922241,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 0.0},
        {'episode_return': 0.0817441, 'episode_cost': 0.0, 'kl': 0.00886357, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.594351, 'value_loss_reward': 0.00801724,
         'value_loss_cost': 0.000149468, 'predicted_cost_change': -0.00261427, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.252303, 'cost_grad_cos': 0.88558,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 0.0},
    ],
    'cpo_tight': [
        {'episode_return': 0.0154425, 'episode_cost': 25.15, 'kl': 0.00648193, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.606297, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 23.0143, 'predicted_cost_change': -2.89605, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 2.05418, 'cost_grad_cos': -0.7284,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 29.3321},
        {'episode_return': -0.0294393, 'episode_cost': 27.225, 'kl': 0.0065994, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.603395, 'value_loss_reward': 0.00861127,
         'value_loss_cost': 48.0133, 'predicted_cost_change': -4.46046, 'cost_bias': 1.49132,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.620134, 'cost_grad_cos': 0.508133,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 32.907},
        {'episode_return': 0.0195694, 'episode_cost': 18.925, 'kl': 0.00686222, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.601865, 'value_loss_reward': 0.00290801,
         'value_loss_cost': 22.0451, 'predicted_cost_change': -4.88053, 'cost_bias': -0.107941,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.74777, 'cost_grad_cos': 0.639193,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 22.7416},
    ],
    'cpo_near': [
        {'episode_return': 0.0154425, 'episode_cost': 25.15, 'kl': 0.00837538, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.601223, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 23.0143, 'predicted_cost_change': 0.389837, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 2.05418, 'cost_grad_cos': -0.7284,
         'case': 'dual_nu0', 'accepted': 'True', 'constrained_cost': 29.3321},
        {'episode_return': -0.00221012, 'episode_cost': 27.85, 'kl': 0.00816046, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.595538, 'value_loss_reward': 0.0111131,
         'value_loss_cost': 48.751, 'predicted_cost_change': -1.98693, 'cost_bias': 0.693049,
         'cost_rise_factor': 6.92597, 'cost_grad_noise': 0.586688, 'cost_grad_cos': 0.493191,
         'case': 'dual', 'accepted': 'True', 'constrained_cost': 32.5492},
        {'episode_return': 0.0542192, 'episode_cost': 22.875, 'kl': 0.00962645, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.59306, 'value_loss_reward': 0.00555899,
         'value_loss_cost': 32.4032, 'predicted_cost_change': 0.145171, 'cost_bias': -0.411288,
         'cost_rise_factor': 6.92597, 'cost_grad_noise': 0.49051, 'cost_grad_cos': 0.4538,
         'case': 'dual', 'accepted': 'True', 'constrained_cost': 27.0935},
    ],
    'pdo_tight': [
        {'episode_return': 0.0154425, 'episode_cost': 25.15, 'kl': 0.00837538, 'step_frac': 1.0,
         'lagrange': 1.1575, 'policy_std': 0.601223, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 23.0143, 'predicted_cost_change': 0.389837, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 2.05418, 'cost_grad_cos': -0.7284,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 25.15},
        {'episode_return': -0.00221012, 'episode_cost': 27.85, 'kl': 0.00772181, 'step_frac': 0.8,
         'lagrange': 2.45, 'policy_std': 0.595321, 'value_loss_reward': 0.0111131,
         'value_loss_cost': 48.751, 'predicted_cost_change': -4.54199, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.586688, 'cost_grad_cos': 0.493191,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 27.85},
        {'episode_return': 0.0144562, 'episode_cost': 20.55, 'kl': 0.00607155, 'step_frac': 0.8,
         'lagrange': 3.3775, 'policy_std': 0.596118, 'value_loss_reward': 0.00345063,
         'value_loss_cost': 27.7171, 'predicted_cost_change': -4.60564, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.55826, 'cost_grad_cos': 0.572705,
         'case': 'trpo', 'accepted': 'True', 'constrained_cost': 20.55},
    ],
    'cpo_shaped': [
        {'episode_return': 0.0154425, 'episode_cost': 0.0, 'kl': 0.00766016, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.597845, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 2.4757, 'predicted_cost_change': -1.02096, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 1.34373, 'cost_grad_cos': -0.319502,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 17.7083},
        {'episode_return': 0.00125917, 'episode_cost': 0.0, 'kl': 0.00803196, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.588816, 'value_loss_reward': 0.00977642,
         'value_loss_cost': 4.21195, 'predicted_cost_change': -1.20049, 'cost_bias': 0.306288,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.549995, 'cost_grad_cos': 0.778674,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 11.7595},
        {'episode_return': 0.0533106, 'episode_cost': 0.025, 'kl': 0.00792332, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.583833, 'value_loss_reward': 0.00639344,
         'value_loss_cost': 0.462045, 'predicted_cost_change': -1.11177, 'cost_bias': 0.582048,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.699025, 'cost_grad_cos': 0.460666,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 7.15653},
    ],
    'cpo_two': [
        {'episode_return': 0.0154425, 'episode_cost': 0.0, 'kl': 0.00644462, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.583862, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 2.31824, 'predicted_cost_change': -0.00430304, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.590278, 'cost_grad_cos': 0.316827,
         'case': 'recovery', 'accepted': 'True', 'lagrange_0': 0.0, 'constrained_cost_0': 0.0,
         'lagrange_1': 0.0, 'constrained_cost_1': 13.0328},
        {'episode_return': 7.47647e-05, 'episode_cost': 0.0, 'kl': 0.00734462, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.570421, 'value_loss_reward': 0.00646498,
         'value_loss_cost': 4.62044, 'predicted_cost_change': -0.0144812, 'cost_bias': 0.00129091,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.100913, 'cost_grad_cos': 0.933999,
         'case': 'dual', 'accepted': 'True', 'lagrange_0': 0.0, 'constrained_cost_0': 0.00129091,
         'lagrange_1': 0.0, 'constrained_cost_1': 11.1762},
        {'episode_return': 0.0285992, 'episode_cost': 0.0, 'kl': 0.00816985, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.557978, 'value_loss_reward': 0.00378021,
         'value_loss_cost': 3.6204, 'predicted_cost_change': -0.00440899, 'cost_bias': 0.005248,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.211371, 'cost_grad_cos': 0.772328,
         'case': 'dual', 'accepted': 'True', 'lagrange_0': 0.0, 'constrained_cost_0': 0.005248,
         'lagrange_1': 0.0, 'constrained_cost_1': 11.2511},
    ],
    'pdo_two': [
        {'episode_return': 0.0154425, 'episode_cost': 25.15, 'kl': 0.00837538, 'step_frac': 1.0,
         'lagrange': 1.1575, 'policy_std': 0.601223, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 25.3287, 'predicted_cost_change': 0.389837, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 2.05291, 'cost_grad_cos': -0.7284,
         'case': 'trpo', 'accepted': 'True', 'lagrange_0': 1.1575, 'constrained_cost_0': 25.15,
         'lagrange_1': 0.45, 'constrained_cost_1': 12.0},
        {'episode_return': -0.00221012, 'episode_cost': 27.85, 'kl': 0.00749066, 'step_frac': 0.8,
         'lagrange': 2.45, 'policy_std': 0.592039, 'value_loss_reward': 0.0111131,
         'value_loss_cost': 54.8146, 'predicted_cost_change': -4.45733, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.58669, 'cost_grad_cos': 0.49319,
         'case': 'trpo', 'accepted': 'True', 'lagrange_0': 2.45, 'constrained_cost_0': 27.85,
         'lagrange_1': 0.885, 'constrained_cost_1': 11.7},
        {'episode_return': 0.013583, 'episode_cost': 20.45, 'kl': 0.00962522, 'step_frac': 1.0,
         'lagrange': 3.3725, 'policy_std': 0.589991, 'value_loss_reward': 0.00334747,
         'value_loss_cost': 32.6023, 'predicted_cost_change': -5.64311, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.57922, 'cost_grad_cos': 0.496707,
         'case': 'trpo', 'accepted': 'True', 'lagrange_0': 3.3725, 'constrained_cost_0': 20.45,
         'lagrange_1': 1.30625, 'constrained_cost_1': 11.425},
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
