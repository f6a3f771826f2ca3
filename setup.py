"""Packaging for cpo_ros: ament_python for colcon, plain setuptools for pip."""

from glob import glob
import os

from setuptools import find_packages, setup

package_name = 'cpo_ros'


def _tree(directory):
    """Map every file under directory to its place under share/cpo_ros."""
    entries = []
    for root, _dirs, files in os.walk(directory):
        paths = [os.path.join(root, f) for f in files]
        if paths:
            entries.append((os.path.join('share', package_name, root), paths))
    return entries


setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*', 'bench']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        *_tree('config'),  # parameter files, robots/ profiles, the rqt perspective
        *_tree('sim'),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='cpo_ros developers',
    maintainer_email='dev@cpo-ros.invalid',
    description='Constrained Policy Optimization for mobile robots on ROS 2 and MuJoCo.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'cpo-ros = cpo_ros.cli:main',
            'sim_bridge = cpo_ros.nodes.sim_bridge:main',
            'policy_executor = cpo_ros.nodes.policy_executor:main',
            'learner = cpo_ros.nodes.learner:main',
            'safe_area_monitor = cpo_ros.nodes.safe_area_monitor:main',
        ],
    },
)
