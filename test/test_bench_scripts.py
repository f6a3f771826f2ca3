"""Every benchmark script in bench/ starts: its imports resolve and --help prints its usage.

The benchmarks are run by hand, not by the suite; a module moved or renamed elsewhere must not
leave one that fails at its first line (bench_circle_algos.py did, after the layout move).
"""

from pathlib import Path
import subprocess
import sys

import pytest

BENCH = sorted((Path(__file__).resolve().parents[1] / 'bench').glob('bench_*.py'))


def test_there_are_benchmarks():
    assert len(BENCH) >= 10


@pytest.mark.parametrize('script', BENCH, ids=lambda p: p.name)
def test_bench_script_prints_its_usage(script):
    done = subprocess.run([sys.executable, str(script), '--help'], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'usage:' in done.stdout
