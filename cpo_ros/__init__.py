"""cpo_ros: Constrained Policy Optimization for mobile robots on ROS 2 and MuJoCo."""

__version__ = '0.1.0'
