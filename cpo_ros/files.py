"""Files written atomically: a reader, or a restart after a kill, sees the old or the new file.

One way for every result file (checkpoints, config.yaml, progress.csv rewrites, curves.png,
exported policies): write a temporary file beside the target, flush it to disk, give it the
permissions a plain new file gets (umask), then rename it over the target.
"""

from collections.abc import Iterator
import contextlib
import os
from pathlib import Path
import tempfile


class CheckpointError(RuntimeError):
    """A checkpoint or policy file that cannot be used: the message names the path and the reason.

    Here, not beside torch's reader, so that what only catches it (the command line, the
    bring-up, the nodes that run no policy) starts without importing torch.
    """


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
"""Read once, at import: setting it to read it races with threads that create files."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces path, on an error it is gone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.', suffix='.tmp')
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        # mkstemp's file is private (0600): readers of a run may be other users (a node).
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself, to disk
        finally:
            os.close(directory)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
