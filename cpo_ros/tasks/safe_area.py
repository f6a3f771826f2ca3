"""Safe areas in the odometry frame: a strip, a rectangle or a convex/concave polygon.

The Circle task's safe area is the strip |x| <= x_limit; on a robot the deployment names its
own area (config/deploy.yaml). The monitor, the shield and the cost all use this one geometry.
"""

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class SafeArea:
    """A closed polygon (vertices counter-clockwise or clockwise) in the odom frame."""

    vertices: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        pts = np.asarray(self.vertices, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3 or not np.all(np.isfinite(pts)):
            raise ValueError(f'safe area needs 3 or more finite (x, y) vertices, got '
                             f'{self.vertices!r}')
        x, y = pts[:, 0], pts[:, 1]
        if abs(0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)) <= 0.0:
            raise ValueError('safe area polygon has zero area')

    @classmethod
    def strip(cls, x_limit: float, y_extent: float = 1e6) -> 'SafeArea':
        """Return the strip |x| <= x_limit (the Circle task's area)."""
        return cls.rectangle(-x_limit, x_limit, -y_extent, y_extent)

    @classmethod
    def rectangle(cls, x_min: float, x_max: float, y_min: float, y_max: float) -> 'SafeArea':
        """Return an axis-aligned rectangle."""
        if not (x_min < x_max and y_min < y_max):
            raise ValueError(f'rectangle needs x_min < x_max and y_min < y_max, got '
                             f'{(x_min, x_max, y_min, y_max)}')
        return cls(((x_min, y_min), (x_max, y_min), (x_max, y_max), (x_min, y_max)))

    @classmethod
    def from_flat(cls, flat: list[float]) -> 'SafeArea':
        """Return a polygon from [x0, y0, x1, y1, ...] (a ROS double-array parameter)."""
        if len(flat) % 2:
            raise ValueError(f'polygon needs pairs of numbers, got {len(flat)} values')
        return cls(tuple((float(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)))

    @cached_property
    def _box(self) -> tuple[float, float, float, float] | None:
        """(x_min, x_max, y_min, y_max) when the area is an axis-aligned rectangle, else None.

        Worked out once per area: contains() runs at every simulation step.
        """
        pts = np.asarray(self.vertices)
        xs, ys = np.unique(pts[:, 0]), np.unique(pts[:, 1])
        if len(pts) == 4 and len(xs) == 2 and len(ys) == 2:
            return float(xs[0]), float(xs[1]), float(ys[0]), float(ys[1])
        return None

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """Return bool (N,): points (N, 2) inside or on the boundary (even-odd rule)."""
        pts = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        box = self._box
        if box is not None:  # the common case (strips, rectangles): a bounds check
            x, y = pts[:, 0], pts[:, 1]
            return (x >= box[0]) & (x <= box[1]) & (y >= box[2]) & (y <= box[3])
        poly = np.asarray(self.vertices)
        x, y = pts[:, 0:1], pts[:, 1:2]
        x1, y1 = poly[:, 0], poly[:, 1]
        x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
        crosses = ((y1 > y) != (y2 > y)) & (
            x < (x2 - x1) * (y - y1) / np.where(y2 == y1, 1e-300, y2 - y1) + x1)
        inside = np.count_nonzero(crosses, axis=1) % 2 == 1
        return inside | self._on_boundary(pts)

    def _on_boundary(self, pts: np.ndarray, tol: float = 1e-9) -> np.ndarray:
        poly = np.asarray(self.vertices)
        a, b = poly, np.roll(poly, -1, axis=0)
        ab = b - a
        t = np.clip(((pts[:, None, :] - a) * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
        closest = a + t[..., None] * ab
        return (np.linalg.norm(pts[:, None, :] - closest, axis=-1) <= tol).any(axis=1)

    def boundary_distance(self, xy: np.ndarray) -> np.ndarray:
        """Return float (N,): the distance of points (N, 2) to the nearest edge."""
        pts = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        poly = np.asarray(self.vertices)
        a, b = poly, np.roll(poly, -1, axis=0)
        ab = b - a
        t = np.clip(((pts[:, None, :] - a) * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
        closest = a + t[..., None] * ab
        return np.linalg.norm(pts[:, None, :] - closest, axis=-1).min(axis=1)

    def centre(self) -> np.ndarray:
        """Return the mean of the vertices."""
        return np.asarray(self.vertices).mean(axis=0)

    def cost(self, xy: np.ndarray) -> np.ndarray:
        """Return float32 (N,): 1 outside the area, 0 inside."""
        return (~self.contains(xy)).astype(np.float32)
