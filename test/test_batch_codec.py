"""The nodes' lock-step codec (BatchCodec) refuses and accepts exactly what the one-call checks do.

The sim bridge and the policy executor decode each batch message with a BatchCodec built once
per layout; decode_batch followed by wire.check_batch_rows is the reference, one call at a
time. Every malformed message must be refused under the same field, every good one give the
same array and seq.
"""

import numpy as np
import pytest
from std_msgs.msg import Float32MultiArray, MultiArrayDimension

from cpo_ros.ros.conversions import BatchCodec, decode_batch, encode_batch
from cpo_ros.validation import InvalidField
from cpo_ros.wire import BatchRows, check_batch_rows, CMD_FIELDS, state_fields

LAYOUTS = (state_fields(), state_fields(('apple_0', 'bomb_0'), ('cost_a', 'cost_b')),
           CMD_FIELDS)


def reference(msg: Float32MultiArray, fields: tuple[str, ...], num_envs: int
              ) -> tuple[np.ndarray, int] | str:
    """Return decode_batch + check_batch_rows's result, or the field it refuses."""
    try:
        array, seq = decode_batch(msg, fields)
        check_batch_rows(array, fields, num_envs)
    except InvalidField as exc:
        return exc.field
    return array, seq


def messages(fields: tuple[str, ...], rng: np.random.Generator) -> list[Float32MultiArray]:
    """Return good and malformed messages of a layout (three rows)."""
    width = len(fields) - 1
    good = rng.normal(size=(3, width)).astype(np.float32)
    for flag in ('terminated', 'truncated'):
        if flag in fields:
            good[:, fields.index(flag)] = rng.integers(0, 2, 3)
    out = [encode_batch(good, fields, 7), encode_batch(good[:2], fields, 7),
           encode_batch(good, fields, 2 ** 24 - 1), Float32MultiArray(data=[1.0, 2.0])]
    for row, column, value in ((0, 0, np.nan), (2, width - 1, -np.inf)):
        bad = good.copy()
        bad[row, column] = value
        out.append(encode_batch(bad, fields, 7))
    for flag, value in (('terminated', 0.5), ('truncated', 2.0), ('terminated', -1.0)):
        if flag in fields:
            bad = good.copy()
            bad[1, fields.index(flag)] = value
            out.append(encode_batch(bad, fields, 7))
    if 'terminated' in fields:  # both flags bad: the first in field order is named
        bad = good.copy()
        bad[0, fields.index('terminated')] = bad[0, fields.index('truncated')] = 0.25
        out.append(encode_batch(bad, fields, 7))
    label = encode_batch(good, fields, 7)
    label.layout.dim[1].label = 'x,y'
    offset = encode_batch(good, fields, 7)
    offset.layout.data_offset = 1
    short = encode_batch(good, fields, 7)
    short.data = short.data[:-1]
    seqs = encode_batch(good, fields, 7)
    data = np.array(seqs.data, np.float32)
    data[len(fields) - 1] = 8.0  # the first row's seq differs
    seqs.data = data.tolist()
    fractional = encode_batch(good, fields, 7)
    data = np.array(fractional.data, np.float32)
    data[len(fields) - 1::len(fields)] = 7.5
    fractional.data = data.tolist()
    huge = Float32MultiArray(data=[0.0] * len(fields))
    huge.layout.dim = [MultiArrayDimension(label='env', size=2 ** 31, stride=0),
                       MultiArrayDimension(label=','.join(fields), size=len(fields))]
    return out + [label, offset, short, seqs, fractional, huge]


@pytest.mark.parametrize('fields', LAYOUTS)
def test_codec_decides_as_the_reference(fields):
    rng = np.random.default_rng(0)
    codec = BatchCodec(fields, 3)
    refused = set()
    for msg in messages(fields, rng):
        expected = reference(msg, fields, 3)
        try:
            got = codec.decode(msg)
        except InvalidField as exc:
            got = exc.field
        if isinstance(expected, str):
            assert got == expected
            refused.add(expected)
        else:
            assert not isinstance(got, str), f'refused {got}, the reference accepts'
            np.testing.assert_array_equal(got[0], expected[0])
            assert got[1] == expected[1]
    # The mutations reach every check.
    assert {'layout', 'data', 'seq', 'env'} <= refused
    if 'terminated' in fields:
        assert {'terminated', 'truncated'} <= refused


@pytest.mark.parametrize('fields', LAYOUTS)
def test_codec_encodes_as_encode_batch(fields):
    array = np.random.default_rng(1).normal(size=(4, len(fields) - 1))
    codec = BatchCodec(fields)
    for seq in (0, 5, 2 ** 24 + 3):
        a, b = codec.encode(array, seq), encode_batch(array, fields, seq)
        assert a == b
        assert codec.decode(a, check_rows=False)[1] == seq % 2 ** 24
    with pytest.raises(ValueError):
        codec.encode(np.zeros((4, len(fields))), 0)


def test_rows_without_flags_or_count():
    # batch/cmd_vel has no flags; num_envs None accepts any row count.
    BatchRows(CMD_FIELDS).check(np.full((5, 2), 3.0, np.float32))
    with pytest.raises(InvalidField, match='this node runs 4 robots') as info:
        BatchRows(CMD_FIELDS, 4).check(np.zeros((5, 2), np.float32))
    assert info.value.field == 'env'
