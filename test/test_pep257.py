"""Docstrings as ament_pep257 checks them (pydocstyle, ament's ignore list)."""

from pathlib import Path
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parent.parent
# ament_pep257's choice: the pep257 convention, missing docstrings (D100-D107) and D404 allowed.
IGNORE = 'D100,D101,D102,D103,D104,D105,D106,D107,D404'


@pytest.mark.linter
def test_pep257():
    result = subprocess.run([sys.executable, '-m', 'pydocstyle', '--convention=pep257',
                             f'--add-ignore={IGNORE}',
                             'cpo_ros', 'launch', 'bench', 'test', 'setup.py'], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
