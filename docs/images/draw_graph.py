"""Draw docs/images/graph.svg, the training graph: .venv/bin/python docs/images/draw_graph.py.

An optional argument also writes a PNG preview there.
"""

from pathlib import Path
import sys

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

W, H = 2.8, 0.9
SIM, EXE, LRN, MON = (1.5, 3.0), (6.2, 3.0), (10.9, 3.0), (1.5, 0.7)
MONO = dict(family='monospace')


def box(ax, centre, text):
    x, y = centre
    ax.add_patch(FancyBboxPatch((x - W / 2, y - H / 2), W, H, boxstyle='round,pad=0.05',
                                fc='#dbe9f6', ec='#1f5f99', lw=1.5))
    ax.text(x, y, text, ha='center', va='center', fontsize=10, **MONO)


def arrow(ax, start, end, rad=0.0, dashed=False):
    ax.annotate('', xy=end, xytext=start, arrowprops=dict(
        arrowstyle='-|>', color='#777777' if dashed else '#333333', lw=1.0 if dashed else 1.3,
        ls='--' if dashed else '-', connectionstyle=f'arc3,rad={rad}'))


def label(ax, xy, text, ha='center', color='#7a2e00', size=9):
    ax.text(*xy, text, ha=ha, va='center', fontsize=size, color=color, **MONO)


def main() -> None:
    fig = Figure(figsize=(10.5, 4.4))
    ax = fig.subplots()
    ax.set_xlim(-0.1, 12.5)
    ax.set_ylim(-0.5, 4.4)
    ax.axis('off')
    box(ax, SIM, 'sim_bridge\n(MuJoCo, N robots)')
    box(ax, EXE, 'policy_executor')
    box(ax, LRN, 'learner\n(CPO update)')
    box(ax, MON, 'safe_area_monitor')
    for (a, b, top, bottom) in ((SIM, EXE, 'batch/state', 'batch/cmd_vel'),
                                (EXE, LRN, 'cpo/rollout', 'cpo/policy,\ncpo/iteration')):
        right, left = (a[0] + W / 2 + 0.05, a[1]), (b[0] - W / 2 - 0.05, b[1])
        arrow(ax, (right[0], right[1] + 0.15), (left[0], left[1] + 0.15), rad=-0.3)
        arrow(ax, (left[0], left[1] - 0.15), (right[0], right[1] - 0.15), rad=-0.3)
        mid = (right[0] + left[0]) / 2
        label(ax, (mid, a[1] + 0.75), top)
        label(ax, (mid, a[1] - 0.8), bottom)
    arrow(ax, (SIM[0], SIM[1] - H / 2 - 0.07), (MON[0], MON[1] + H / 2 + 0.07))
    label(ax, (SIM[0] + 0.15, (SIM[1] + MON[1]) / 2), 'odom, safety/cost', ha='left')
    arrow(ax, (LRN[0], LRN[1] - H / 2 - 0.07), (LRN[0], 1.55), dashed=True)
    ax.text(LRN[0], 1.45, 'cpo/episode_return, cpo/episode_cost,\ncpo/cost_limit, cpo/kl, ...'
            ' -> rqt_plot\nrun directory: progress.csv,\ncurves.png, checkpoints',
            ha='center', va='top', fontsize=8.5, color='#444444', **MONO)
    arrow(ax, (MON[0] + W / 2 + 0.07, MON[1]), (MON[0] + W / 2 + 0.9, MON[1]), dashed=True)
    ax.text(MON[0] + W / 2 + 1.0, MON[1], 'safety/in_safe_area, /diagnostics,\n'
            'safe_area/markers -> RViz', ha='left', va='center', fontsize=8.5,
            color='#444444', **MONO)
    ax.text(6.2, 4.25, 'one ROS 2 graph: in simulation (lock-step, /clock) or on a robot, '
            'its driver in place of sim_bridge', ha='center', fontsize=9.5, style='italic')
    out = Path(__file__).with_name('graph.svg')
    with matplotlib.rc_context({'svg.fonttype': 'none'}):  # text stays text: small, searchable
        fig.savefig(out, bbox_inches='tight', metadata={'Date': None})
    if len(sys.argv) > 1:
        fig.savefig(sys.argv[1], bbox_inches='tight', dpi=80)
    print(out)


if __name__ == '__main__':
    main()
