"""Code style as ament_flake8 checks it (ruff with the repository's ament settings)."""

from pathlib import Path
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.linter
def test_flake8():
    result = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--no-cache', '.'], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
