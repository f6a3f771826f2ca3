"""Top-down pictures of a task's MuJoCo scene, for videos of evaluated policies.

MuJoCo renders the robots; the task's geometry, which the physics does not need, is drawn as
visual-only geoms into the scene: the task's safe area and markers (Task.markers: objects,
hazards, goals, the target circle) and robot 0's recent path. Off-screen rendering needs an
OpenGL backend chosen before mujoco is imported:
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
    """Render robot 0 of a VecTaskEnv from above, its task drawn in."""

    def __init__(self, env: Any, size: int = 480, trail: int = 80) -> None:
        self.env = env
        self.task = env.task
        model = env.robots.model
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, size)
        self.renderer = mujoco.Renderer(model, size, size)
        extent = 5.0
        for marker in self.task.markers(0):
            points = np.asarray(marker.points).reshape(-1, 2)
            if len(points):
                extent = max(extent, float(np.abs(points).max()) + marker.scale)
        self.half_extent = extent + 1.0
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
        sphere = mujoco.mjtGeom.mjGEOM_SPHERE
        cylinder = mujoco.mjtGeom.mjGEOM_CYLINDER
        m, h = self.marker, self.half_extent
        area = self.task.safe_area()
        if area is not None:  # the boundary as a dotted line, inside the picture
            corners = np.clip(np.asarray(area.vertices), -h, h)
            for a, b in zip(corners, np.roll(corners, -1, axis=0), strict=True):
                for t in np.linspace(0.0, 1.0, 40, endpoint=False):
                    self._add(sphere, (m / 4,) * 3, tuple(a + t * (b - a)),
                              (0.1, 0.6, 0.1, 1.0))
        for marker in self.task.markers(0):
            points = np.asarray(marker.points).reshape(-1, 2)
            if marker.kind == 'discs':
                r = marker.scale / 2
                for x, y in points:
                    self._add(cylinder, (r, r, 0.01), (x, y), marker.rgba, height=0.01)
            else:
                size = m / 4 if marker.kind == 'line_strip' else m
                for x, y in points:
                    self._add(sphere, (size,) * 3, (x, y), marker.rgba)
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
