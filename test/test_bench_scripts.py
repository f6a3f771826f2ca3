"""Every benchmark script in bench/ starts: its imports resolve and --help prints its usage.

The benchmarks are run by hand, not by the suite; a module moved or renamed elsewhere must not
leave one that fails at its first line (bench_circle_algos.py did, after the layout move).
"""

from pathlib import Path
import subprocess
import sys

import pytest
import yaml

BENCH = sorted((Path(__file__).resolve().parents[1] / 'bench').glob('bench_*.py'))


def test_there_are_benchmarks():
    assert len(BENCH) >= 10


@pytest.mark.parametrize('script', BENCH, ids=lambda p: p.name)
def test_bench_script_prints_its_usage(script):
    done = subprocess.run([sys.executable, str(script), '--help'], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'usage:' in done.stdout


def test_the_algorithm_bench_trains_with_a_set_and_refuses_a_run_trained_otherwise(tmp_path):
    script = next(p for p in BENCH if p.name == 'bench_circle_algos.py')
    base = [sys.executable, str(script), '--task', 'circle', '--steps', '1600', '--iterations',
            '1', '--seeds', '0', '--algos', 'cpo', '--out', str(tmp_path)]
    done = subprocess.run(base + ['--set', 'value_minibatch=256'], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'every variant with value_minibatch = 256' in done.stdout
    saved = yaml.safe_load((tmp_path / 'cpo_s0' / 'config.yaml').read_text())
    assert saved['config']['algo']['value_minibatch'] == 256
    # The finished run is reported again as trained, and refused when asked otherwise.
    again = subprocess.run(base + ['--set', 'value_minibatch=256', '--report-only'],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    other = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert other.returncode == 2
    assert 'value_minibatch: 256 -> 4096' in other.stderr
    wrong = subprocess.run(base + ['--set', 'seed=1'], capture_output=True, text=True,
                           timeout=120)
    assert wrong.returncode == 2 and '--set seed: not an update setting' in wrong.stderr
