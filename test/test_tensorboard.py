"""TensorBoard logs of a real training run, read back with TensorBoard's own reader."""

import csv
import math

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cpo_ros.training.config import AlgoConfig, TrainConfig
from cpo_ros.training.trainer import train


def _train(out, iterations=2, algo='cpo', resume='fresh', **settings):
    train(TrainConfig(task='circle', iterations=iterations, steps_per_iteration=1000, num_envs=4,
                      seed=0, out=str(out), algo=AlgoConfig(algo=algo, value_epochs=1),
                      **settings), resume=resume, show_progress=False)
    with open(out / 'progress.csv') as f:
        return list(csv.DictReader(f))


def _events(path):
    accumulator = EventAccumulator(str(path), size_guidance={'scalars': 0, 'histograms': 0,
                                                             'tensors': 0})
    accumulator.Reload()
    return accumulator


@pytest.mark.parametrize('algo', ['cpo', 'pid_lag'])
def test_every_progress_column_and_the_histograms_are_logged(tmp_path, algo):
    rows = _train(tmp_path / 'run', algo=algo)
    events = _events(tmp_path / 'run' / 'tb')
    tags = events.Tags()
    steps = [int(r['env_steps']) for r in rows]
    numeric = 0
    for column in rows[0]:
        values = [r[column] for r in rows]
        if column == 'case' or values[0] in ('', 'nan'):  # no number: no scalar
            continue
        logged = events.Scalars(column)
        assert [e.step for e in logged] == steps, column
        for event, text in zip(logged, values, strict=True):
            want = {'True': 1.0, 'False': 0.0}.get(text)
            want = float(text) if want is None else want
            if math.isfinite(want):
                assert event.value == pytest.approx(want, rel=1e-5, abs=1e-6), column
        numeric += 1
    assert numeric >= 25 and 'case/text_summary' in tags['tensors']  # the case as text
    for name in ('policy_std', 'advantage_reward', 'advantage_cost'):
        histograms = events.Histograms(f'histogram/{name}')
        assert [h.step for h in histograms] == steps, name
    # A tag is a scalar or a histogram: TensorBoard's data server lists neither when the
    # column policy_std and the histogram of the stds share one.
    assert not set(tags['scalars']) & set(tags['histograms'])
    std = events.Histograms('histogram/policy_std')[-1].histogram_value
    assert std.num == 2 and 0.0 < std.min <= std.max < 2.0  # one std per action dimension
    advantages = events.Histograms('histogram/advantage_reward')[0].histogram_value
    assert advantages.num == 1000 and advantages.min < 0.0 < advantages.max


def test_tensorboard_off_writes_no_logs(tmp_path):
    _train(tmp_path / 'run', tensorboard=False)
    assert (tmp_path / 'run' / 'progress.csv').is_file()
    assert not (tmp_path / 'run' / 'tb').exists()


def test_a_resumed_run_drops_the_events_it_redoes(tmp_path):
    out = tmp_path / 'run'
    _train(out)
    at_two = (out / 'checkpoints' / 'last.pt').read_bytes()
    _train(out, iterations=3, resume='resume')
    # As if stopped after iteration 3's logs but before its checkpoint: 3 is done again.
    (out / 'checkpoints' / 'last.pt').write_bytes(at_two)
    _train(out, iterations=3, resume='resume')
    scalars = _events(out / 'tb').Scalars('iteration')
    assert [(e.step, e.value) for e in scalars] == [(1000, 1.0), (2000, 2.0), (3000, 3.0)]


def test_histograms_are_add_histograms_buckets(tmp_path):
    # The logs' histograms are written from histogram_fields (no BLAS product): the buckets,
    # counts and moments add_histogram itself would write, on spread, one-sided and constant
    # values.
    from torch.utils.tensorboard.summary import histogram
    from torch.utils.tensorboard.writer import SummaryWriter

    from cpo_ros.training.tensorboard import histogram_fields

    writer = SummaryWriter(str(tmp_path))
    edges = writer.default_bins  # what add_histogram's bins='tensorflow' means
    writer.close()
    rng = np.random.default_rng(0)
    for values in (rng.normal(size=50_000), np.abs(rng.normal(size=100)) + 3.0,
                   np.full(7, -0.25), np.array([0.0, 1e-13, -2.0])):
        want = histogram('x', values, edges).value[0].histo
        got = histogram_fields(values, edges)
        assert got['bucket_limits'] == list(want.bucket_limit)
        assert got['bucket_counts'] == list(want.bucket)
        assert (got['min'], got['max'], got['num']) == (want.min, want.max, want.num)
        assert got['sum'] == pytest.approx(want.sum, rel=1e-12, abs=1e-12)
        assert got['sum_squares'] == pytest.approx(want.sum_squares, rel=1e-12)
