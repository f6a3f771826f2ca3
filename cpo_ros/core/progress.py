"""progress.csv (one row per iteration) and the curves plot drawn from it."""

import csv
import os
from pathlib import Path
from typing import Any

COLUMNS = ('iteration', 'env_steps', 'episode_return', 'episode_cost', 'cost_limit', 'kl', 'case',
           'accepted', 'step_frac', 'lagrange', 'episodes', 'episode_length',
           'value_loss_reward', 'value_loss_cost', 'policy_std', 'policy_version',
           'wall_time_s', 'steps_per_s', 'sample_time_s', 'update_time_s', 'env_time_s',
           'policy_time_s')


class ProgressLog:
    """Append-only CSV of iteration figures that a resume can cut back to its checkpoint."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def rows(self) -> list[dict[str, str]]:
        """Return the rows written so far (empty when there is no file)."""
        if not self.path.is_file():
            return []
        with open(self.path, newline='') as f:
            return list(csv.DictReader(f))

    def truncate(self, last_iteration: int) -> None:
        """Drop rows after last_iteration (work that the resumed run will redo)."""
        keep = [r for r in self.rows() if int(r['iteration']) <= last_iteration]
        tmp = self.path.with_suffix('.csv.tmp')
        with open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction='ignore')
            writer.writeheader()
            writer.writerows(keep)
        os.replace(tmp, self.path)

    def append(self, row: dict[str, Any]) -> None:
        """Append one row; columns not in COLUMNS are ignored, missing ones left empty."""
        new = not self.path.is_file()
        with open(self.path, 'a', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction='ignore')
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k, '')) for k in COLUMNS})


def _fmt(value: Any) -> Any:
    return f'{value:.6g}' if isinstance(value, float) else value


def plot_curves(csv_path: str | os.PathLike, png_path: str | os.PathLike,
                title: str = '') -> Path:
    """Draw episode return and cost (with the limit) against environment steps."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = ProgressLog(csv_path).rows()
    steps = [float(r['env_steps']) for r in rows]
    fig, (ax_r, ax_c) = plt.subplots(1, 2, figsize=(11, 4))
    ax_r.plot(steps, [float(r['episode_return']) for r in rows], color='tab:blue')
    ax_r.set_xlabel('environment steps')
    ax_r.set_ylabel('mean episode return')
    ax_c.plot(steps, [float(r['episode_cost']) for r in rows], color='tab:red', label='cost')
    if rows:
        ax_c.plot(steps, [float(r['cost_limit']) for r in rows], 'k--', label='limit')
    ax_c.set_xlabel('environment steps')
    ax_c.set_ylabel('mean episode cost')
    ax_c.legend()
    for ax in (ax_r, ax_c):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
