"""Locate the package's data (sim/, config/, launch/) from a ROS, pip or source install."""

from functools import cache
import os
from pathlib import Path
import sys

PACKAGE = 'cpo_ros'


@cache
def share_dir() -> Path:
    """Return the directory holding sim/, config/ and launch/.

    Order: a source checkout or editable install (the repository next to this package), the ament
    index of a ROS install, then <prefix>/share/cpo_ros of a plain pip install.
    """
    source = Path(__file__).resolve().parent.parent
    if (source / 'package.xml').is_file() and (source / 'sim').is_dir():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: BLE001 - not a ROS install, or the package is not indexed
        pass
    for prefix in (sys.prefix, os.environ.get('VIRTUAL_ENV', '')):
        candidate = Path(prefix) / 'share' / PACKAGE
        if (candidate / 'sim').is_dir():
            return candidate
    raise FileNotFoundError(
        f'cannot find the {PACKAGE} share directory (sim/, config/): looked in {source}, the '
        f'ament index and {sys.prefix}/share/{PACKAGE}')


def sim_file(name: str) -> Path:
    """Return the path of a model file under sim/."""
    return share_dir() / 'sim' / name


def config_file(name: str) -> Path:
    """Return the path of config/<name>.yaml."""
    return share_dir() / 'config' / f'{name}.yaml'


def launch_file(name: str) -> Path:
    """Return the path of launch/<name>.launch.py."""
    return share_dir() / 'launch' / f'{name}.launch.py'
