"""Every conversion between ROS messages and numpy arrays.

Batched lock-step transport (std_msgs/Float32MultiArray, row-major):

    layout.dim[0]: label 'env',  size N, stride N * F
    layout.dim[1]: label the comma-joined field names, size F, stride F

`batch/state` (sim_bridge -> policy_executor) has the fields wire.STATE_FIELDS: the pose and twist
after the step (of the new episode where one ended), the step's reward and cost, the episode
flags, the last pose and twist of an episode that ended at this step (final_*), and 'seq'.
The task declares the rest (wire.StateLayout, the one definition both nodes use): its sensor
readings (Task.sensor_labels) after the flags and their final_* readings after final_w
(`wire.state_fields`); one cost column per named cost, 'cost_<name>' (cost_safe_area, cost_speed),
where a single-constraint task has 'cost'.
`batch/cmd_vel` (policy_executor -> sim_bridge) has wire.CMD_FIELDS: linear_x, angular_z and the
'seq' of the state it answers. seq counts steps modulo 2**24, where float32 is still exact; it
is compared for equality only.

Rollouts and policies travel as std_msgs/UInt8MultiArray holding .npz bytes, read here member
by member with a cap on the uncompressed size and no pickle (msg_to_arrays).
"""

from array import array as typed_array
import functools
import io
import math
import zipfile
import zlib

from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry
import numpy as np
from std_msgs.msg import Float32MultiArray, MultiArrayDimension, UInt8MultiArray

from cpo_ros.validation import InvalidField
from cpo_ros.wire import BatchRows, check_seq, SEQ_MODULO

# .npz messages: a policy is tens of kB, a rollout of 50,000 samples about 5 MB. The learner
# passes a cap from its own sizes (buffer.rollout_size_cap); this is the cap of everything else.
MAX_NPZ_BYTES = 64 * 2 ** 20
MAX_NPZ_MEMBERS = 64


class BatchCodec:
    """Encode and check one batch layout's Float32MultiArray messages, its constants computed once.

    The lock-step loop passes two of these messages per step: the layout label, the column
    count and the episode-flag columns (wire.BatchRows) are worked out once per layout, and
    every check of `decode` runs on the whole array in one vectorised pass, without a Python
    loop over rows or fields. encode_batch, decode_batch and wire.check_batch_rows give the
    same results one call at a time.
    """

    def __init__(self, fields: tuple[str, ...], num_envs: int | None = None) -> None:
        self.fields = tuple(fields)
        self.num_envs = num_envs
        self.width = len(self.fields)
        self.label = ','.join(self.fields)
        self.rows = BatchRows(self.fields, num_envs)

    def encode(self, array: np.ndarray, seq: int) -> Float32MultiArray:
        """Return a Float32MultiArray of array (N, F - 1) plus the trailing 'seq' column."""
        array = np.asarray(array, dtype=np.float32)
        n, f = array.shape[0], self.width
        if self.fields[-1] != 'seq' or array.shape != (n, f - 1):
            raise ValueError(f'array of shape {array.shape} does not fit fields {self.fields}')
        full = np.empty((n, f), np.float32)
        full[:, :-1] = array
        full[:, -1] = seq % SEQ_MODULO
        msg = Float32MultiArray()
        msg.layout.dim = [MultiArrayDimension(label='env', size=n, stride=n * f),
                          MultiArrayDimension(label=self.label, size=f, stride=f)]
        data = typed_array('f')
        data.frombytes(full.tobytes())  # 50x faster than assigning the numpy array
        msg.data = data
        return msg

    def decode(self, msg: Float32MultiArray, check_rows: bool = True
               ) -> tuple[np.ndarray, int]:
        """Return (array (N, F - 1) without 'seq', seq); InvalidField on any mismatch.

        Checks the layout (labels, sizes, no offset), that every value is finite, that every
        row carries the same integer seq in [0, 2**24), and with check_rows the rows against
        the schema (wire.BatchRows: N the node's num_envs, flags 0 or 1).
        """
        layout = msg.layout
        dims = layout.dim
        if len(dims) != 2 or dims[0].label != 'env' or dims[1].label != self.label:
            labels = [d.label for d in dims]
            raise InvalidField('layout', f'labels {labels} are not [env, {self.label}]')
        n, f = dims[0].size, dims[1].size
        data = np.asarray(msg.data, dtype=np.float32)
        if f != self.width or n < 1 or data.size != n * f or layout.data_offset != 0:
            raise InvalidField('data', f'{data.size} values do not fit {n} x {self.width}')
        if not np.isfinite(data).all():
            raise InvalidField('data', 'holds non-finite values')
        full = data.reshape(n, f)
        seqs = full[:, -1]
        first = seqs[0]
        if (seqs != first).any():
            raise InvalidField('seq', 'rows carry different seq values')
        seq = check_seq(float(first))
        array = full[:, :-1]
        if check_rows:
            self.rows.check(array)
        return array, seq


@functools.lru_cache(maxsize=64)
def _codec(fields: tuple[str, ...]) -> BatchCodec:
    return BatchCodec(fields)


def encode_batch(array: np.ndarray, fields: tuple[str, ...], seq: int) -> Float32MultiArray:
    """Return a Float32MultiArray of array (N, F - 1) plus the trailing 'seq' column."""
    return _codec(tuple(fields)).encode(array, seq)


def decode_batch(msg: Float32MultiArray, fields: tuple[str, ...]) -> tuple[np.ndarray, int]:
    """Return (array (N, F - 1) without 'seq', seq); InvalidField on any layout mismatch."""
    return _codec(tuple(fields)).decode(msg, check_rows=False)


def arrays_to_msg(arrays: dict[str, np.ndarray]) -> UInt8MultiArray:
    """Return a UInt8MultiArray holding arrays as uncompressed .npz bytes."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    msg = UInt8MultiArray()
    msg.layout.dim = [MultiArrayDimension(label='npz', size=buffer.tell(), stride=1)]
    msg.data = buffer.getvalue()
    return msg


def msg_to_arrays(msg: UInt8MultiArray, max_bytes: int = MAX_NPZ_BYTES
                  ) -> dict[str, np.ndarray]:
    """Return the arrays of an .npz message; InvalidField when it is not a clean, small .npz.

    The archive's directory is read first: more than MAX_NPZ_MEMBERS members, or uncompressed
    sizes above max_bytes in total, are refused before anything is inflated. Each member's
    .npy header is then checked (no object dtype, data no larger than the member) before its
    bytes are read, so a forged header cannot make numpy allocate more than the cap either.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(msg.data))) as archive:
            members = archive.infolist()
            if len(members) > MAX_NPZ_MEMBERS:
                raise InvalidField('npz', f'{len(members)} members, at most {MAX_NPZ_MEMBERS}')
            total = sum(m.file_size for m in members)
            if total > max_bytes:
                raise InvalidField('npz', f'uncompressed size {total} bytes exceeds the cap of '
                                   f'{max_bytes} bytes')
            return dict(_read_npy(archive, m) for m in members)
    except InvalidField:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError,
            NotImplementedError, RuntimeError) as exc:
        raise InvalidField('npz', f'not a readable .npz payload ({type(exc).__name__}: {exc})'
                           ) from exc


def _read_npy(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> tuple[str, np.ndarray]:
    """Return (key, array) of one .npy member after checking its header against its size."""
    if not member.filename.endswith('.npy'):
        raise InvalidField('npz', f'member {member.filename!r} is not a .npy array')
    key = member.filename[:-4]
    with archive.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        if dtype.hasobject:
            raise InvalidField(key, f'object dtype {dtype} (no pickle on the wire)')
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > member.file_size:
            raise InvalidField(key, f'header claims shape {shape} ({nbytes} bytes), the member '
                               f'holds {member.file_size} bytes')
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise InvalidField(key, f'truncated: {len(data)} of {nbytes} bytes')
    array = np.frombuffer(bytearray(data), dtype=dtype)
    return key, array.reshape(shape, order='F' if fortran else 'C')


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """Return (x, y, z, w) of a rotation by yaw about z."""
    return 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)


QUATERNION_NORM_TOLERANCE = 0.05
"""A pose's orientation is refused unless its quaternion's norm is within 1 of this."""


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """Return the yaw of a unit quaternion (roll and pitch ignored: planar robots).

    ValueError when it is no unit quaternion (all zero, scaled, non-finite): its yaw would be
    a guess, and a wrong heading misleads the shield.
    """
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if not abs(norm - 1.0) <= QUATERNION_NORM_TOLERANCE:
        raise ValueError(f'orientation ({x:g}, {y:g}, {z:g}, {w:g}) is no unit quaternion '
                         f'(norm {norm:.3g})')
    # The form that holds for any scale: a near-unit quaternion gives the exact yaw of its
    # normalised self.
    return math.atan2(2.0 * (w * z + x * y), w * w + x * x - y * y - z * z)


def pose_twist_to_odometry(pose: np.ndarray, twist: np.ndarray, stamp, frame_id: str,
                           child_frame_id: str) -> Odometry:
    """Return an Odometry of a planar pose (x, y, yaw) and body twist (v, yaw rate)."""
    msg = Odometry()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.child_frame_id = child_frame_id
    msg.pose.pose.position.x, msg.pose.pose.position.y = float(pose[0]), float(pose[1])
    q = yaw_to_quaternion(float(pose[2]))
    o = msg.pose.pose.orientation
    o.x, o.y, o.z, o.w = q
    msg.twist.twist.linear.x = float(twist[0])
    msg.twist.twist.angular.z = float(twist[1])
    return msg


def odometry_to_pose_twist(msg: Odometry) -> tuple[np.ndarray, np.ndarray]:
    """Return (pose (3,), twist (2,)) of an Odometry; ValueError on non-finite values."""
    p, o = msg.pose.pose.position, msg.pose.pose.orientation
    pose = np.array([p.x, p.y, quaternion_to_yaw(o.x, o.y, o.z, o.w)])
    twist = np.array([msg.twist.twist.linear.x, msg.twist.twist.angular.z])
    if not (np.all(np.isfinite(pose)) and np.all(np.isfinite(twist))):
        raise ValueError('odometry holds non-finite values')
    return pose, twist


def twist_to_array(msg: Twist) -> np.ndarray:
    """Return [linear.x, angular.z]; ValueError on non-finite values."""
    cmd = np.array([msg.linear.x, msg.angular.z])
    if not np.all(np.isfinite(cmd)):
        raise ValueError('velocity command holds non-finite values')
    return cmd


def array_to_twist(cmd: np.ndarray) -> Twist:
    """Return a Twist with linear.x = cmd[0] and angular.z = cmd[1]."""
    msg = Twist()
    msg.linear.x, msg.angular.z = float(cmd[0]), float(cmd[1])
    return msg


def twist_stamped_to_array(msg: TwistStamped) -> np.ndarray:
    """Return [twist.linear.x, twist.angular.z]; ValueError on non-finite values."""
    return twist_to_array(msg.twist)


def array_to_twist_stamped(cmd: np.ndarray, stamp, frame_id: str) -> TwistStamped:
    """Return a TwistStamped (Jazzy's diff_drive_controller input) in frame_id at stamp."""
    msg = TwistStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.twist.linear.x, msg.twist.angular.z = float(cmd[0]), float(cmd[1])
    return msg


class CommandPublisher:
    """Publish velocity commands as TwistStamped (stamped now, in base_frame) or plain Twist."""

    def __init__(self, node, topic: str, stamped: bool, base_frame: str, qos_profile) -> None:
        self.node, self.stamped, self.base_frame = node, stamped, base_frame
        self.publisher = node.create_publisher(TwistStamped if stamped else Twist, topic,
                                               qos_profile)

    def publish(self, cmd: np.ndarray) -> None:
        """Send cmd = [linear.x, angular.z]."""
        if self.stamped:
            self.publisher.publish(array_to_twist_stamped(
                cmd, self.node.get_clock().now().to_msg(), self.base_frame))
        else:
            self.publisher.publish(array_to_twist(cmd))


def command_subscription(node, topic: str, stamped: bool, callback, qos_profile,
                         event_callbacks=None):
    """Subscribe to velocity commands of either type; callback gets [linear.x, angular.z].

    A command that cannot be read (non-finite) reaches callback as None, to be taken as stop.
    """
    def on_msg(msg) -> None:
        try:
            cmd = twist_to_array(msg.twist if stamped else msg)
        except ValueError as exc:
            node.get_logger().warn(f'dropped {topic}: {exc}', throttle_duration_sec=5.0)
            cmd = None
        callback(cmd)
    return node.create_subscription(TwistStamped if stamped else Twist, topic, on_msg,
                                    qos_profile, event_callbacks=event_callbacks)
