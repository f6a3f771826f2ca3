"""Each update rule pinned: the same progress.csv figures on the same seed before and after a
refactor of the algorithm code.

A small run (3 iterations of 2,000 samples on Circle, seed 0) per algorithm and variant, its
figures after each update compared with those recorded before the refactor of issue 22 item 5
(the CPO cases re-recorded when issue 21 made cost_step_share 0.85 and cost_confidence 1 the
defaults).
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
        {'episode_return': 0.0154425, 'episode_cost': 25.15, 'kl': 0.0072293, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.603501, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 23.0143, 'predicted_cost_change': -2.46245, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 2.05418, 'cost_grad_cos': -0.7284,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 27.2411},
        {'episode_return': -0.024066, 'episode_cost': 27.325, 'kl': 0.00941519, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.596654, 'value_loss_reward': 0.00956148,
         'value_loss_cost': 48.195, 'predicted_cost_change': -5.3434, 'cost_bias': 1.39124,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.429735, 'cost_grad_cos': 0.589319,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 30.7801},
        {'episode_return': 0.055877, 'episode_cost': 18.725, 'kl': 0.00641033, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.596162, 'value_loss_reward': 0.00563111,
         'value_loss_cost': 22.443, 'predicted_cost_change': -3.90107, 'cost_bias': -0.00311353,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.501525, 'cost_grad_cos': 0.660808,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 20.6658},
    ],
    'cpo_near': [
        {'episode_return': 0.0154425, 'episode_cost': 25.15, 'kl': 0.00837538, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.601223, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 23.0143, 'predicted_cost_change': 0.389837, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 2.05418, 'cost_grad_cos': -0.7284,
         'case': 'dual_nu0', 'accepted': 'True', 'constrained_cost': 27.2411},
        {'episode_return': -0.00221012, 'episode_cost': 27.85, 'kl': 0.00747844, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.596878, 'value_loss_reward': 0.0111131,
         'value_loss_cost': 48.751, 'predicted_cost_change': -0.378943, 'cost_bias': 0.693049,
         'cost_rise_factor': 6.92597, 'cost_grad_noise': 0.586688, 'cost_grad_cos': 0.493191,
         'case': 'dual', 'accepted': 'True', 'constrained_cost': 30.5461},
        {'episode_return': 0.0790635, 'episode_cost': 25.25, 'kl': 0.00501049, 'step_frac': 0.64,
         'lagrange': 0.0, 'policy_std': 0.594754, 'value_loss_reward': 0.00770518,
         'value_loss_cost': 37.2396, 'predicted_cost_change': 0.118401, 'cost_bias': -0.181183,
         'cost_rise_factor': 6.92597, 'cost_grad_noise': 0.421234, 'cost_grad_cos': 0.625572,
         'case': 'dual', 'accepted': 'True', 'constrained_cost': 27.4577},
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
        {'episode_return': 0.0154425, 'episode_cost': 0.0, 'kl': 0.00781727, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.596003, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 2.4757, 'predicted_cost_change': -0.868858, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 1.34373, 'cost_grad_cos': -0.319502,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 17.7083},
        {'episode_return': 0.0199169, 'episode_cost': 0.0, 'kl': 0.00601541, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.588372, 'value_loss_reward': 0.0104812,
         'value_loss_cost': 4.09926, 'predicted_cost_change': -0.833014, 'cost_bias': 0.260657,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.506519, 'cost_grad_cos': 0.778963,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 11.6308},
        {'episode_return': 0.0521863, 'episode_cost': 0.025, 'kl': 0.00956058, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.581118, 'value_loss_reward': 0.00592839,
         'value_loss_cost': 0.579413, 'predicted_cost_change': -0.96022, 'cost_bias': 0.439864,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.655514, 'cost_grad_cos': 0.541247,
         'case': 'recovery', 'accepted': 'True', 'constrained_cost': 7.02656},
    ],
    'cpo_two': [
        {'episode_return': 0.0154425, 'episode_cost': 0.0, 'kl': 0.00989863, 'step_frac': 1.0,
         'lagrange': 0.0, 'policy_std': 0.580092, 'value_loss_reward': 0.00883172,
         'value_loss_cost': 2.31824, 'predicted_cost_change': -0.00541535, 'cost_bias': 0.0,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.590278, 'cost_grad_cos': 0.316827,
         'case': 'dual', 'accepted': 'True', 'lagrange_0': 0.0, 'constrained_cost_0': 0.0,
         'lagrange_1': 0.0, 'constrained_cost_1': 12.5164},
        {'episode_return': 0.00703548, 'episode_cost': 0.0, 'kl': 0.00792611, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.576074, 'value_loss_reward': 0.00768969,
         'value_loss_cost': 4.14969, 'predicted_cost_change': -0.0110717, 'cost_bias': 0.0016246,
         'cost_rise_factor': 1.0, 'cost_grad_noise': 0.128877, 'cost_grad_cos': 0.932073,
         'case': 'dual_nu0', 'accepted': 'True', 'lagrange_0': 0.0,
         'constrained_cost_0': 0.0016246, 'lagrange_1': 0.0, 'constrained_cost_1': 10.3285},
        {'episode_return': 0.0457094, 'episode_cost': 0.0, 'kl': 0.00802546, 'step_frac': 0.8,
         'lagrange': 0.0, 'policy_std': 0.564689, 'value_loss_reward': 0.00536208,
         'value_loss_cost': 3.90718, 'predicted_cost_change': -0.00332412,
         'cost_bias': 0.00445874, 'cost_rise_factor': 1.0, 'cost_grad_noise': 0.210066,
         'cost_grad_cos': 0.854216, 'case': 'dual', 'accepted': 'True', 'lagrange_0': 0.0,
         'constrained_cost_0': 0.00445874, 'lagrange_1': 0.0, 'constrained_cost_1': 11.0254},
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
