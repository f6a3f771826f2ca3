"""progress.csv (one row per iteration) and the curves plot drawn from it."""

import csv
import os
from pathlib import Path
from typing import Any

from cpo_ros.files import atomic_path

# safe: 1 when the batch's measured cost is within every limit; best_iteration: the best safe
# iteration so far (highest return among safe ones; its policy is checkpoints/best.pt), so the
# last row names the run's best.
COLUMNS = ('iteration', 'env_steps', 'episode_return', 'episode_cost', 'cost_limit', 'safe',
           'best_iteration', 'kl', 'case',
           'accepted', 'step_frac', 'lagrange', 'episodes', 'episode_length',
           'value_loss_reward', 'value_loss_cost', 'policy_std', 'policy_version',
           'wall_time_s', 'steps_per_s', 'sample_time_s', 'update_time_s', 'env_time_s',
           'policy_time_s', 'predicted_cost_change', 'cost_bias', 'cost_rise_factor',
           'cost_grad_noise', 'cost_grad_cos', 'cost_estimate', 'cost_se', 'cost_confidence')


def progress_columns(num_costs: int = 1, cost_shaping: bool = False) -> tuple[str, ...]:
    """Return the CSV columns of a run: COLUMNS, then one set per constraint when several.

    episode_cost, cost_limit, lagrange, constrained_cost and predicted_cost_change are the
    first constraint's; with m > 1 constraints the numbered columns follow for each.
    constrained_cost is the J_C that CPO held under the limit (the upper bound of
    AlgoConfig.cost_confidence and cost_bias_rate, plus the shaping term with cost shaping):
    cost_estimate + z cost_se + max(cost_bias, 0), where cost_estimate and cost_se are the
    batch's J_C and standard error, or the CostFilter's with AlgoConfig.cost_filter, and z is
    cost_confidence (AlgoConfig.cost_confidence, or calibrated with cost_confidence_rate).
    """
    columns = list(COLUMNS)
    if num_costs == 1:
        columns.append('constrained_cost')
    else:
        for i in range(num_costs):
            columns += [f'episode_cost_{i}', f'cost_limit_{i}', f'lagrange_{i}',
                        f'constrained_cost_{i}', f'predicted_cost_change_{i}']
    if cost_shaping:
        columns.append('shaping_loss')
    return tuple(columns)


_PER_CONSTRAINT = (('episode_costs', 'episode_cost'), ('cost_limits', 'cost_limit'),
                   ('lagranges', 'lagrange'), ('constrained_costs', 'constrained_cost'),
                   ('predicted_cost_changes', 'predicted_cost_change'))


def flatten_row(row: dict[str, Any]) -> dict[str, Any]:
    """Return row with its per-constraint lists spread into the numbered columns."""
    flat = dict(row)
    for key, column in _PER_CONSTRAINT:
        values = row.get(key)
        if values is None:
            continue
        flat.setdefault(column, values[0])
        for i, value in enumerate(values):
            flat[f'{column}_{i}'] = value
    return flat


class ProgressLog:
    """Append-only CSV of iteration figures that a resume can cut back to its checkpoint."""

    def __init__(self, path: str | os.PathLike, columns: tuple[str, ...] = COLUMNS) -> None:
        self.path = Path(path)
        self.columns = columns

    def rows(self) -> list[dict[str, str]]:
        """Return the rows written so far (empty when there is no file)."""
        if not self.path.is_file():
            return []
        with open(self.path, newline='') as f:
            return list(csv.DictReader(f))

    def truncate(self, last_iteration: int) -> None:
        """Drop rows after last_iteration (work that the resumed run will redo)."""
        keep = [r for r in self.rows() if int(r['iteration']) <= last_iteration]
        with atomic_path(self.path) as tmp, open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction='ignore')
            writer.writeheader()
            writer.writerows(keep)

    def append(self, row: dict[str, Any]) -> None:
        """Append one row; keys outside the columns are ignored, missing ones left empty."""
        new = not self.path.is_file()
        with open(self.path, 'a', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction='ignore')
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k, '')) for k in self.columns})


def _fmt(value: Any) -> Any:
    return f'{value:.6g}' if isinstance(value, float) else value


def plot_curves(csv_path: str | os.PathLike, png_path: str | os.PathLike,
                title: str = '', cost_names: tuple[str, ...] = ()) -> Path:
    """Draw episode return and each cost (with its limit) against environment steps.

    cost_names label the costs in the order of the episode_cost columns (else their indices).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = ProgressLog(csv_path).rows()
    steps = [float(r['env_steps']) for r in rows]
    fig, (ax_r, ax_c) = plt.subplots(1, 2, figsize=(11, 4))
    ax_r.plot(steps, [float(r['episode_return']) for r in rows], color='tab:blue')
    ax_r.set_xlabel('environment steps')
    ax_r.set_ylabel('mean episode return')
    several = bool(rows) and 'episode_cost_1' in rows[0]
    count = sum(k.startswith('cost_limit_') for k in rows[0]) if several else 0
    # A marker on each point, so a run of one iteration still shows its values.
    points = {'marker': 'o'} if len(rows) < 2 else {}
    ax_r.lines[0].set(**points)
    for i, suffix in enumerate([f'_{i}' for i in range(count)] if several else ['']):
        color = f'C{3 + i}'
        name = (cost_names[i] if i < len(cost_names) else
                f'cost {suffix[1:]}' if several else 'cost')
        ax_c.plot(steps, [float(r['episode_cost' + suffix]) for r in rows], color=color,
                  label=name, **points)
        if rows:
            ax_c.plot(steps, [float(r['cost_limit' + suffix]) for r in rows], '--', color=color,
                      alpha=0.7, label=f'{name} limit' if several else 'limit', **points)
    ax_c.set_xlabel('environment steps')
    ax_c.set_ylabel('mean episode cost')
    ax_c.legend()
    for ax in (ax_r, ax_c):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png_path = Path(png_path)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=100, format='png')
    plt.close(fig)
    return png_path
