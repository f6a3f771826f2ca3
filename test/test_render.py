"""Videos of evaluated policies: MuJoCo off-screen rendering through `cpo-ros eval --video`."""

import ctypes.util
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(ctypes.util.find_library('OSMesa') is None,
                                reason='libosmesa6 is not installed (make setup installs it as '
                                'root)')


def run(*args, env=None):
    result = subprocess.run([sys.executable, '-m', 'cpo_ros.cli', *args], capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize('task, steps', [('circle', 50), ('gather', 15)])
def test_eval_renders_an_episode_from_above(tmp_path, task, steps):
    from PIL import Image

    out = tmp_path / task
    run('train', '--task', task, '--iterations', '1', '--steps-per-iteration', '800',
        '--num-envs', '8', '--out', str(out), '--quiet')
    env = {k: v for k, v in os.environ.items() if k not in ('MUJOCO_GL', 'PYOPENGL_PLATFORM')}
    result = run('eval', '--checkpoint', str(out / 'checkpoints' / 'last.pt'), '--episodes', '1',
                 '--video', str(out / 'episode.gif'), env=env)
    assert 'video:' in result.stdout
    gif = Image.open(out / 'episode.gif')
    assert gif.n_frames == steps and gif.size == (480, 480)
    frames = []
    for i in (0, gif.n_frames - 1):
        gif.seek(i)
        frames.append(np.asarray(gif.convert('RGB'), dtype=np.int16))
    assert np.abs(frames[0] - frames[1]).sum() > 0  # the robot moved and left a trail
    green = (frames[0][..., 1] > 120) & (frames[0][..., 0] < 100) & (frames[0][..., 2] < 100)
    blue = (frames[0][..., 2] > 150) & (frames[0][..., 0] < 120)
    assert green.any() and blue.any()  # the strip or apples, and the robot
