"""Walls and obstacles as MuJoCo geoms, one arena per robot in one model.

Every robot of a PointRobots model gets its own arena: four walls around the square
|x|, |y| <= half_size and `max_obstacles` cylinders that are mocap bodies, so an episode's layout
is set by writing `data.mocap_pos` (no recompilation). The arenas sit on a grid far enough apart
that no robot touches or sees another's arena; each robot's body is offset to its arena's
origin, so its joint positions (PointRobots.pose) stay in arena coordinates.

Contacts: each chassis collides with its own arena's walls and obstacles (explicit contact
pairs), and nothing else collides. The range sensor casts its rays in a one-arena scene per
robot (Arenas.scenes) that mirrors the arena's layout, so a robot never sees its own body.
"""

from dataclasses import dataclass
import math
import xml.etree.ElementTree as ET

import mujoco
import numpy as np

from cpo_ros.validation import check_range

ARENA_GROUP = 1
"""Geom group of walls and obstacles (the range sensor sees this group only)."""
HIDDEN_Z = -50.0
"""Height of an unused obstacle slot: far below the rays and the robots' plane."""
ROBOT_HEIGHT = 0.1
"""Height of the robot's centre above the floor (point_robot.xml): the rays' plane [m]."""


@dataclass(frozen=True)
class ArenaSpec:
    """The walls and obstacle slots of each robot's arena."""

    half_size: float = 6.0
    """Walls' inner faces at |x| = half_size and |y| = half_size [m]; 0: no walls."""
    max_obstacles: int = 8
    """Cylinder slots per arena; an episode places up to this many, the rest are hidden."""
    obstacle_radius: float = 0.5
    """Radius of every obstacle cylinder [m]."""
    obstacle_height: float = 0.5
    """Height of obstacles and walls [m] (the rays run at ROBOT_HEIGHT)."""
    wall_thickness: float = 0.1
    """Thickness of the walls [m]."""
    sensor_range: float = 10.0
    """Farthest range any sensor reads [m]: neighbouring arenas are placed beyond it."""

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        check_range('half_size', self.half_size, 0.0, 1e3)
        check_range('max_obstacles', self.max_obstacles, 0, 256, integer=True)
        check_range('obstacle_radius', self.obstacle_radius, 0.0, 1e2, low_open=True)
        check_range('obstacle_height', self.obstacle_height, 0.0, 1e2, low_open=True)
        check_range('wall_thickness', self.wall_thickness, 0.0, 10.0, low_open=True)
        check_range('sensor_range', self.sensor_range, 0.0, 1e4, low_open=True)

    @property
    def spacing(self) -> float:
        """Return the distance between neighbouring arenas' origins [m]."""
        reach = max(self.half_size + self.wall_thickness, 1.0) + self.sensor_range
        return 2.0 * reach + 1.0


def arena_origins(num_robots: int, spec: ArenaSpec) -> np.ndarray:
    """Return (N, 2) world positions of the arenas' origins on a square grid."""
    side = int(math.ceil(math.sqrt(num_robots)))
    index = np.arange(num_robots)
    return np.stack([index % side, index // side], axis=1) * spec.spacing


def _add_arena(world: ET.Element, prefix: str, origin: tuple[float, float], spec: ArenaSpec,
               mocap: bool) -> None:
    """Add one arena: a static body holding the walls and the obstacle slots.

    mocap False (the physics model): the obstacles are geoms of the static body, moved by
    writing model.geom_pos (contacts are explicit pairs, which read the geoms' current places
    and skip the broadphase and its trees built at compile time). mocap True
    (a sensor scene, one per robot): each obstacle is a mocap body, moved in its own data.
    """
    ox, oy = origin
    h, t, z = spec.half_size, spec.wall_thickness, spec.obstacle_height / 2
    common = {'group': str(ARENA_GROUP), 'contype': '0', 'conaffinity': '0'}
    # One static body per arena: the broadphase then keeps far arenas apart.
    holder = ET.SubElement(world, 'body', name=f'{prefix}arena', pos=f'{ox!r} {oy!r} 0')
    if h > 0.0:
        walls = (('e', h + t / 2, 0.0, t / 2, h + t), ('w', -h - t / 2, 0.0, t / 2, h + t),
                 ('n', 0.0, h + t / 2, h + t, t / 2), ('s', 0.0, -h - t / 2, h + t, t / 2))
        for name, x, y, sx, sy in walls:
            ET.SubElement(holder, 'geom', name=f'{prefix}wall_{name}', type='box',
                          pos=f'{x!r} {y!r} {z!r}', size=f'{sx!r} {sy!r} {z!r}',
                          rgba='0.5 0.5 0.5 1', **common)
    for k in range(spec.max_obstacles):
        parent = holder
        pos = f'0 0 {HIDDEN_Z + z!r}'
        if mocap:
            parent = ET.SubElement(world, 'body', name=f'{prefix}obstacle_{k}', mocap='true',
                                   pos=f'{ox!r} {oy!r} {HIDDEN_Z!r}')
            pos = f'0 0 {z!r}'
        ET.SubElement(parent, 'geom', name=f'{prefix}obstacle_{k}', type='cylinder',
                      size=f'{spec.obstacle_radius!r} {z!r}', pos=pos, rgba='0.9 0.4 0.1 1',
                      **common)


def add_arenas(root: ET.Element, num_robots: int, spec: ArenaSpec) -> None:
    """Add each robot's walls and obstacle slots to a model built by build_model_xml.

    Robot i's body (named r<i>_robot) moves to its arena's origin and its chassis collides.
    """
    spec.validate()
    world = root.find('worldbody')
    contact = ET.SubElement(root, 'contact')
    for i, (ox, oy) in enumerate(arena_origins(num_robots, spec).tolist()):
        body = world.find(f"body[@name='r{i}_robot']")
        body.set('pos', f'{ox!r} {oy!r} {ROBOT_HEIGHT!r}')
        _add_arena(world, f'r{i}_', (ox, oy), spec, mocap=False)
        # Contacts as explicit pairs, each robot's chassis with its own arena's geoms only:
        # MuJoCo then runs no broadphase over every robot's arena, which tripled the cost of
        # a step with 16 robots, and the obstacles may move inside their static body.
        for name in [f'wall_{w}' for w in 'ewns' if spec.half_size > 0.0] + [
                f'obstacle_{k}' for k in range(spec.max_obstacles)]:
            ET.SubElement(contact, 'pair', geom1=f'r{i}_robot_chassis', geom2=f'r{i}_{name}')


def scene_model(spec: ArenaSpec) -> mujoco.MjModel:
    """Return a model of one arena alone at the origin: what a robot's range sensor sees."""
    root = ET.Element('mujoco', model='arena')
    _add_arena(ET.SubElement(root, 'worldbody'), '', (0.0, 0.0), spec, mocap=True)
    return mujoco.MjModel.from_xml_string(ET.tostring(root, encoding='unicode'))


class Arenas:
    """The arenas of a compiled model: place obstacles per episode, report collisions."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, num_robots: int,
                 spec: ArenaSpec) -> None:
        self.model, self.data, self.spec = model, data, spec
        self.num_robots = num_robots
        self.origins = arena_origins(num_robots, spec)
        self._geoms = np.array([[model.geom(f'r{i}_obstacle_{k}').id
                                 for k in range(spec.max_obstacles)]
                                for i in range(num_robots)], dtype=np.int64).reshape(
            num_robots, spec.max_obstacles)
        # Which robot (or -1) each geom is the chassis of: contacts are mapped through it.
        self._chassis_robot = np.full(model.ngeom, -1, np.int64)
        for i in range(num_robots):
            self._chassis_robot[model.geom(f'r{i}_robot_chassis').id] = i
        self.obstacles = np.zeros((num_robots, spec.max_obstacles, 2))
        self.active = np.zeros((num_robots, spec.max_obstacles), bool)
        # Each robot's arena again, alone, for ray casting: mj_multiRay's cost grows with the
        # geoms of the model, and a scene holds one arena's instead of every robot's. Its
        # layout is written together with the physics model's (place), so both hold the same
        # geoms at the same places.
        self.scene = scene_model(spec)
        self.scenes = [mujoco.MjData(self.scene) for _ in range(num_robots)]
        self._scene_mocap = self.scene.body_mocapid[
            [self.scene.body(f'obstacle_{k}').id for k in range(spec.max_obstacles)]]
        for scene in self.scenes:
            mujoco.mj_kinematics(self.scene, scene)
        self._dirty: set[int] = set()

    def place(self, index: int, centres: np.ndarray) -> None:
        """Put robot index's obstacles at centres (K, 2) in arena coordinates, K <= slots."""
        centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
        k = len(centres)
        if k > self.spec.max_obstacles:
            raise ValueError(f'{k} obstacles for {self.spec.max_obstacles} slots (max_obstacles)')
        z = self.spec.obstacle_height / 2
        slots = self._geoms[index]
        self.model.geom_pos[slots[:k], :2] = centres
        self.model.geom_pos[slots[:k], 2] = z
        self.model.geom_pos[slots[k:]] = [0.0, 0.0, HIDDEN_Z + z]
        scene = self.scenes[index]
        scene.mocap_pos[self._scene_mocap[:k], :2] = centres
        scene.mocap_pos[self._scene_mocap[:k], 2] = 0.0
        scene.mocap_pos[self._scene_mocap[k:]] = [0.0, 0.0, HIDDEN_Z]
        self._dirty.add(int(index))
        self.obstacles[index] = 0.0
        self.obstacles[index, :k] = centres
        self.active[index] = np.arange(self.spec.max_obstacles) < k

    def refresh(self) -> None:
        """Move the scenes' geoms to the obstacles placed since.

        The physics model's geoms move at its next step.
        """
        for index in self._dirty:
            mujoco.mj_kinematics(self.scene, self.scenes[index])
        self._dirty.clear()

    def collisions(self) -> np.ndarray:
        """Return (N,) bool: robot i's chassis touches a wall or an obstacle now."""
        hit = np.zeros(self.num_robots, bool)
        ncon = self.data.ncon
        if ncon:
            geoms = self.data.contact.geom[:ncon]
            touching = self.data.contact.dist[:ncon] <= 0.0  # inside the margin is no contact
            robots = self._chassis_robot[geoms[touching]].ravel()
            hit[robots[robots >= 0]] = True
        return hit
