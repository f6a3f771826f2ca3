"""TensorBoard logs beside progress.csv: what SB3 and OmniSafe users open first.

Every progress.csv column is a scalar under its own name (true/false as 1/0; `case` also as
text), against env_steps as the step; histograms of the policy's standard deviation (one
value per action dimension) and of the batch's advantages (reward, and each cost), before
any standardisation, under `histogram/<name>` (a tag is either a scalar or a histogram: the
column policy_std and the histogram of the stds must not share one). `tensorboard --logdir
runs/` then compares runs side by side.
"""

from collections.abc import Iterable
import math
import os
from pathlib import Path
from typing import Any
import warnings

import numpy as np

TB_DIR = 'tb'
HISTOGRAM_PREFIX = 'histogram/'
"""Histograms' tags: apart from the scalars' (progress.csv columns)."""
"""The log directory inside a run directory."""


class TensorBoardLog:
    """Write a run's iterations as TensorBoard events in out/tb/ (nothing when unavailable)."""

    def __init__(self, out: str | os.PathLike, columns: Iterable[str],
                 purge_step: int | None = None) -> None:
        """Log to out/tb/ from the first write on; purge_step drops events after it (a resume).

        The directory appears with the first iteration's events, so a start that is killed
        before leaves nothing that counts as results.
        """
        self.path = Path(out) / TB_DIR
        self.columns = tuple(columns)
        self.purge_step = purge_step
        self._writer: Any = None
        self._failed = False

    def _open(self) -> bool:
        if self._writer is None and not self._failed:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:  # in requirements.txt; a venv from before lacks it
                warnings.warn(f'no TensorBoard logs in {self.path}: {exc} (pip install '
                              f'tensorboard, or set tensorboard=false)', RuntimeWarning,
                              stacklevel=3)
                self._failed = True
                return False
            # Room for an iteration's events: write() queues them without waiting for the
            # writer thread after every tenth (its default queue), flush() drains them once.
            self._writer = SummaryWriter(str(self.path), purge_step=self.purge_step,
                                         max_queue=256)
        return self._writer is not None

    def write(self, row: dict[str, Any], histograms: dict[str, np.ndarray]) -> None:
        """Write one iteration: each column's value and each histogram, at row['env_steps']."""
        if not self._open():
            return
        step = int(row['env_steps'])
        try:
            for column in self.columns:
                value = _scalar(row.get(column))
                if value is not None:
                    self._writer.add_scalar(column, value, step)
            if isinstance(row.get('case'), str):
                self._writer.add_text('case', row['case'], step)
            for name, values in histograms.items():
                values = np.asarray(values, np.float64).reshape(-1)
                values = values[np.isfinite(values)]
                if values.size:
                    self._writer.add_histogram_raw(
                        f'{HISTOGRAM_PREFIX}{name}',
                        **histogram_fields(values, self._writer.default_bins),
                        global_step=step)
            self._writer.flush()
        except OSError as exc:  # a full disk ends the logs, not the training
            warnings.warn(f'TensorBoard logs in {self.path} stopped: {exc}', RuntimeWarning,
                          stacklevel=2)
            self._failed = True
            self.close()

    def close(self) -> None:
        """Flush and close the event file (a later write opens a new one, purging nothing)."""
        self.purge_step = None
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()


def histogram_fields(values: np.ndarray, edges: list[float]) -> dict[str, Any]:
    """Return add_histogram's histogram of finite values, as add_histogram_raw's arguments.

    The same buckets as add_histogram (TensorBoard's default edges, trimmed to the filled
    range with one empty bucket on the left, each bucket named by its right edge), without
    its `values.dot(values)`: on 50,000 advantages that product runs on OpenBLAS's worker
    thread, which then spins for a while on the core the sampling needs (2-core machine).
    """
    counts, limits = np.histogram(values, bins=edges)
    filled = np.flatnonzero(counts)
    first, last = int(filled[0]), int(filled[-1])
    if first:  # the empty bucket left of the first filled one
        bucket_counts, bucket_limits = counts[first - 1:last + 1], limits[first:last + 2]
    else:  # bucket 0 is filled: an empty one ending at its left edge
        bucket_counts = np.concatenate([[0], counts[:last + 1]])
        bucket_limits = limits[:last + 2]
    return {'min': float(values.min()), 'max': float(values.max()), 'num': int(values.size),
            'sum': float(values.sum()), 'sum_squares': float(np.square(values).sum()),
            'bucket_limits': bucket_limits.tolist(), 'bucket_counts': bucket_counts.tolist()}


def _scalar(value: Any) -> float | None:
    """Return a progress.csv value as a float, or None where it is no number (empty, text)."""
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return None
