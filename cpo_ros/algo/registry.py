"""Update rules by name: `algo` in the settings picks one; a new baseline adds a line here.

Only names and import paths live here (no torch), so the settings can list the choices
without importing the algorithms.
"""

from importlib import import_module
from typing import Any

RULES = {
    'cpo': 'cpo_ros.algo.cpo:CPO',
    'trpo': 'cpo_ros.algo.trpo:TRPO',
    'pdo': 'cpo_ros.algo.pdo:PDO',
    'ppo_lag': 'cpo_ros.algo.ppo_lag:PPOLagrangian',
    'pid_lag': 'cpo_ros.algo.pid_lag:PIDLagrangian',
}
"""name -> 'module:class' of its UpdateRule subclass."""

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    'cpo_shaped': ('cpo', {'cost_shaping': True}),
    'cpo_z1': ('cpo', {'cost_confidence': 1.0}),
    'cpo_share085': ('cpo', {'cost_step_share': 0.85}),
    'cpo_share085_z1': ('cpo', {'cost_step_share': 0.85, 'cost_confidence': 1.0}),
    'cpo_gated': ('cpo', {'cost_step_share': 0.85, 'cost_noise_gate': 0.5,
                          'cost_confidence_reliable': 1.0}),
    'cpo_aim': ('cpo', {'cost_bias_aim': 'limit'}),
    'cpo_aim_z1': ('cpo', {'cost_bias_aim': 'limit', 'cost_confidence': 1.0}),
    'cpo_aim_below': ('cpo', {'cost_bias_aim': 'below'}),
    'cpo_paper': ('cpo', {'cost_lam': 1.0, 'value_normalization': 'off', 'cost_confidence': 0.0,
                          'cost_bias_rate': 0.0, 'cost_rise_max': 1.0, 'cost_step_share': 1.0}),
}
"""Named variants for the benchmarks: a rule and the settings that make it the variant.
cpo_shaped is CPO with cost shaping (paper section 6.3); cpo_z1 holds J_C + 1 SE;
cpo_share085 asks a step for at most 0.85 of the largest cost decrease (cost_step_share);
cpo_share085_z1 is both; cpo_gated is both in steps whose cost gradient is less than half
noise (cost_noise_gate), the defaults in the others; cpo_aim compares only the decrease the
limit asked for with the measured change in the bias term (cost_bias_aim 'limit'), cpo_aim_z1
with z = 1 as well, cpo_aim_below none of a decrease from below the limit and all of one from
above ('below'); cpo_paper is CPO with the paper's constraint estimate and step (lambda_C 1,
critics fit to raw targets, the point estimate of J_C, no model-bias term, a recovery that
only lowers the cost)."""


def variant(name: str) -> tuple[str, dict[str, Any]]:
    """Return (rule name, settings) of a rule or a preset."""
    if name in RULES:
        return name, {}
    if name in PRESETS:
        return PRESETS[name]
    raise ValueError(f'unknown algorithm {name!r}: one of {sorted([*RULES, *PRESETS])}')


def rule_class(name: str) -> type:
    """Return the UpdateRule subclass registered under name."""
    if name not in RULES:
        raise ValueError(f'algo = {name!r} is not one of {tuple(RULES)}')
    module, _, cls = RULES[name].partition(':')
    return getattr(import_module(module), cls)
