"""cpo_ros: Constrained Policy Optimization for mobile robots on ROS 2 and MuJoCo."""

import os

# OpenMP threads that spin-wait between parallel regions collapse when another process holds a
# core (the update took 34-63 s instead of 2 s with one busy process beside it on 2 cores):
# the spinning thread burns the slice its partner needs. Passive waiting sleeps at once. These
# take effect only before torch (libgomp, or Intel's libiomp with KMP_BLOCKTIME) first loads,
# which every entry point of this package guarantees; a value set by the user wins.
# bench/bench_train.py --busy 1 measures it.
for _name, _value in (('OMP_WAIT_POLICY', 'PASSIVE'), ('KMP_BLOCKTIME', '0')):
    os.environ.setdefault(_name, _value)
del _name, _value

__version__ = '0.1.0'
