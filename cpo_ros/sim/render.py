"""Top-down pictures of a task's MuJoCo scene, for videos of evaluated policies.

MuJoCo renders the robots; the task's geometry, which the physics does not need, is drawn as
visual-only geoms into the scene: Circle's safe strip and target circle, Gather's live apples
(green) and bombs (red), Goal's hazards (red discs) and goal (green), and robot 0's recent
path. Off-screen rendering needs an OpenGL backend chosen before mujoco is imported:
`MUJOCO_GL=osmesa` (Debian's libosmesa6, installed by `make setup` as root) on a headless
machine; `cpo-ros eval --video` sets it when unset.
"""

from collections import deque
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

_IDENTITY = np.eye(3).ravel()


class TopDownRenderer:
    """Render robot 0 of a vectorised Circle, Gather or Goal env from above, task drawn in."""

    def __init__(self, env: Any, size: int = 480, trail: int = 80) -> None:
        self.env = env
        self.task = env.task
        model = env.robots.model
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, size)
        self.renderer = mujoco.Renderer(model, size, size)
        radius = getattr(self.task, 'target_radius', None)
        extent = getattr(self.task, 'activity_range', None) or getattr(
            self.task, 'placement_extent', 5.0)
        self.half_extent = (radius + 3.0) if radius is not None else extent + 1.0
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.camera.lookat[:] = (0.0, 0.0, 0.0)
        self.camera.elevation, self.camera.azimuth = -90.0, 90.0
        # The default vertical field of view is 45 degrees.
        self.camera.distance = self.half_extent / np.tan(np.radians(22.5))
        self.trail: deque[np.ndarray] = deque(maxlen=trail)
        self.marker = self.half_extent / 40.0

    def close(self) -> None:
        """Free the OpenGL context."""
        self.renderer.close()

    def _add(self, geom_type: int, size: tuple[float, float, float], pos: tuple[float, float],
             rgba: tuple[float, float, float, float], height: float = 0.05) -> None:
        scene = self.renderer.scene
        if scene.ngeom >= scene.maxgeom:
            return
        mujoco.mjv_initGeom(scene.geoms[scene.ngeom], geom_type, np.asarray(size, np.float64),
                            np.array([pos[0], pos[1], height]), _IDENTITY,
                            np.asarray(rgba, np.float32))
        scene.ngeom += 1

    def render(self) -> np.ndarray:
        """Return the current frame as (size, size, 3) uint8."""
        pose = self.env.poses()[0]
        self.trail.append(pose[:2].copy())
        self.renderer.update_scene(self.env.robots.data, self.camera)
        sphere, box = mujoco.mjtGeom.mjGEOM_SPHERE, mujoco.mjtGeom.mjGEOM_BOX
        m, h = self.marker, self.half_extent
        x_limit = getattr(self.task, 'x_limit', None)
        if x_limit is not None:
            for side in (-1.0, 1.0):
                self._add(box, (m / 4, h, 0.01), (side * x_limit, 0.0), (0.1, 0.6, 0.1, 1.0))
            for angle in np.linspace(0.0, 2.0 * np.pi, 120, endpoint=False):
                r = self.task.target_radius
                self._add(sphere, (m / 4,) * 3, (r * np.cos(angle), r * np.sin(angle)),
                          (0.4, 0.4, 0.4, 1.0))
        if hasattr(self.env, 'apples'):
            for objects, alive, rgba in ((self.env.apples[0], self.env.apples_alive[0],
                                          (0.1, 0.8, 0.1, 1.0)),
                                         (self.env.bombs[0], self.env.bombs_alive[0],
                                          (0.9, 0.1, 0.1, 1.0))):
                for (x, y), live in zip(objects, alive, strict=True):
                    if live:
                        self._add(sphere, (m,) * 3, (x, y), rgba)
        if hasattr(self.env, 'hazards'):  # Goal: hazard discs (red) and the goal (green)
            cylinder, r = mujoco.mjtGeom.mjGEOM_CYLINDER, self.task.hazard_radius
            for x, y in self.env.hazards[0]:
                self._add(cylinder, (r, r, 0.01), (x, y), (0.9, 0.2, 0.2, 0.5), height=0.01)
            r = self.task.goal_radius
            self._add(cylinder, (r, r, 0.01), tuple(self.env.goal[0]), (0.1, 0.8, 0.1, 0.8),
                      height=0.02)
        for point in self.trail:
            self._add(sphere, (m / 3,) * 3, point, (0.2, 0.4, 0.9, 0.6))
        heading = pose[:2] + 1.5 * m * np.array([np.cos(pose[2]), np.sin(pose[2])])
        self._add(sphere, (m,) * 3, pose[:2], (0.2, 0.4, 0.9, 1.0), height=0.2)
        self._add(sphere, (m / 2,) * 3, heading, (0.9, 0.2, 0.2, 1.0), height=0.25)
        return self.renderer.render().copy()


def save_gif(frames: list[np.ndarray], path: str | Path, fps: float = 10.0) -> Path:
    """Write frames as an animated GIF (Pillow, a matplotlib dependency)."""
    from PIL import Image

    if not frames:
        raise ValueError('no frames to write')
    path = Path(path)
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:],
                   duration=int(round(1000.0 / fps)), loop=0)
    return path
