"""The two local defects of CAD-SD, drawn on the rendered surface, each with its pixel mask.

- scratch: a bright, irregular mark of exposed metal about one rod diameter across, covering
  2-4 % of the product's area, on the rod (mostly) or on the nut;
- paint: a thin, dark, desaturated red smear that sits in the thread grooves.

Both live in the rod's (u, v) frame, so they follow the product's pose. The co-occurrence
anomalies (over-coupling, lacking) are scene changes (:mod:`cadsd.synth.scene`); their masks are
the nuts' silhouettes (:func:`cadsd.synth.render.nut_silhouettes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cadsd.synth import scene as sc
from cadsd.synth.render import Surface

#: A scratch's mask covers this fraction of the product's area (issue spec: 2-4 %).
SCRATCH_AREA = (0.022, 0.036)
SCRATCH_ON_NUT = 0.3  # probability that the scratch is on the nut


@dataclass(frozen=True)
class Scratch:
    """Exposed metal: a blob of Gaussian bumps, thresholded to cover ``area`` of the product."""

    on_nut: bool
    bumps: tuple[tuple[float, float, float, float, float], ...]  # (u, v, su, sv, weight), d units
    area: float  # target mask area / product area
    streak: tuple[float, float, float]  # direction (radians), frequency (1/d), phase
    brightness: float


@dataclass(frozen=True)
class Paint:
    """A smear elongated along the rod; paint collects in the grooves, crests stay bare."""

    u: float
    v: float
    half_length: float  # d
    half_width: float  # d
    bumps: tuple[tuple[float, float, float, float, float], ...]  # edge irregularity
    density: float
    color: tuple[float, float, float]


def _bumps(rng: np.random.Generator, u0: float, v0: float, count: int, spread: tuple[float, float],
           sizes: tuple[float, float]) -> tuple[tuple[float, float, float, float, float], ...]:
    """``count`` Gaussian bumps scattered around (u0, v0): ``spread`` along/across a random axis."""
    angle = rng.uniform(0.0, math.pi)
    c, s = math.cos(angle), math.sin(angle)
    out = []
    for _ in range(count):
        a, b = rng.normal(0.0, 1.0, size=2) * spread
        du, dv = a * c - b * s, a * s + b * c
        su, sv = rng.uniform(*sizes, size=2)
        out.append((u0 + float(du), v0 + float(dv), float(su), float(sv), float(rng.uniform(0.5, 1.0))))
    return tuple(out)


def _free_rod(scene: sc.Scene, margin: float) -> tuple[float, float]:
    """The (low, high) stretch of rod centres not under a nut, ``margin`` away from nuts/ends."""
    lo, hi = -scene.length / 2 + margin, scene.length / 2 - margin
    for nut in scene.nuts:
        a, b = nut.span(scene.length)
        if nut.end > 0:
            hi = min(hi, a - margin)
        else:
            lo = max(lo, b + margin)
    return lo, hi


def sample_defect(rng: np.random.Generator, category: str, scene: sc.Scene) -> Scratch | Paint | None:
    """The defect of one ``category`` image (None for good and co-occurrence images)."""
    if category == "scratch":
        on_nut = bool(rng.uniform() < SCRATCH_ON_NUT) and bool(scene.nuts)
        if on_nut:
            a, b = scene.nuts[0].span(scene.length)
            u0 = float(rng.uniform(a + 0.35, b - 0.35))
            v0 = float(rng.uniform(-0.6, 0.6))
        else:
            lo, hi = _free_rod(scene, 0.7)
            u0, v0 = float(rng.uniform(lo, hi)), float(rng.uniform(-0.2, 0.2))
        bumps = _bumps(rng, u0, v0, 14, (0.32, 0.14), (0.05, 0.2))
        streak = (float(rng.uniform(0, math.pi)), float(rng.uniform(5.0, 9.0)),
                  float(rng.uniform(0, 2 * math.pi)))
        return Scratch(on_nut, bumps, float(rng.uniform(*SCRATCH_AREA)), streak,
                       float(rng.uniform(0.85, 1.1)))
    if category == "paint":
        half_length = float(rng.uniform(0.8, 1.5))
        lo, hi = _free_rod(scene, half_length + 0.3)
        u0, v0 = float(rng.uniform(lo, hi)), float(rng.uniform(-0.15, 0.15))
        bumps = _bumps(rng, 0.0, 0.0, 6, (0.5, 0.5), (0.15, 0.35))
        red = float(rng.uniform(0.36, 0.48))
        color = (red, red * float(rng.uniform(0.2, 0.3)), red * float(rng.uniform(0.22, 0.32)))
        return Paint(u0, v0, half_length, float(rng.uniform(0.22, 0.38)), bumps,
                     float(rng.uniform(0.75, 1.0)), color)
    return None


def _field(u: np.ndarray, v: np.ndarray, bumps: tuple[tuple[float, ...], ...]) -> np.ndarray:
    """Sum of anisotropic Gaussian bumps (u, v, su, sv, weight) at positions (u, v)."""
    total = np.zeros_like(u)
    for bu, bv, su, sv, w in bumps:
        total += w * np.exp(-0.5 * (((u - bu) / su) ** 2 + ((v - bv) / sv) ** 2))
    return total


def apply_scratch(surf: Surface, scratch: Scratch) -> np.ndarray:
    """Paint the scratch into ``surf.color``; returns its mask over the surface pixels."""
    site = surf.part == 2 if scratch.on_nut else surf.part == 1
    field = np.where(site, _field(surf.u, surf.v, scratch.bumps), 0.0)
    # Threshold so the mask covers the drawn fraction of the product (bisection, monotone).
    target = scratch.area * surf.index.size
    low, high = 0.0, float(field.max())
    for _ in range(30):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if np.count_nonzero(field > mid) > target else (low, mid)
    level = 0.5 * (low + high)
    mask = field > level
    angle, freq, phase = scratch.streak
    along = surf.u * math.cos(angle) + surf.v * math.sin(angle)
    streaks = 0.5 + 0.5 * np.sin(2 * math.pi * freq * along + phase + 6.0 * field)
    alpha = np.clip((field - level) / (0.06 * level + 1e-9), 0.0, 1.0)[:, None] * mask[:, None]
    facing = 0.55 + 0.45 * np.clip(surf.normal[:, 2], 0.0, 1.0)
    if scratch.on_nut:  # a gouge in the plating: dark grooves with bright burrs
        metal = (0.15 + 0.75 * streaks**2) * facing * scratch.brightness
    else:  # blackening scraped off: bright, rough steel
        metal = (0.7 + 0.45 * streaks) * facing * scratch.brightness
    color = metal[:, None] * np.array([1.0, 0.99, 0.95])
    surf.color = surf.color * (1 - alpha) + color * alpha
    return mask


def apply_paint(surf: Surface, paint: Paint) -> np.ndarray:
    """Paint the smear into ``surf.color``; returns its mask over the surface pixels."""
    du = (surf.u - paint.u) / paint.half_length
    dv = (surf.v - paint.v) / paint.half_width
    rough = _field(du * paint.half_length, dv * paint.half_width, paint.bumps)
    shape = 1.0 - du**2 - dv**2 + 0.35 * (rough - 0.5)
    mask = (shape > 0) & (surf.part == 1)
    groove = np.clip((0.97 - surf.crest) / 0.4, 0.0, 1.0)  # grooves and flanks; crests stay bare
    amount = np.clip(shape / 0.3, 0.0, 1.0) * (0.2 + 0.8 * groove) * paint.density * mask
    lit = 0.55 + 0.45 * np.clip(surf.normal[:, 2], 0.0, 1.0)
    color = np.array(paint.color)[None, :] * lit[:, None]
    surf.color = surf.color * (1 - amount[:, None]) + color * amount[:, None]
    return mask


def apply_defect(surf: Surface, defect: Scratch | Paint | None) -> np.ndarray:
    """Draw ``defect`` (if any) and return its mask over the surface pixels."""
    if isinstance(defect, Scratch):
        return apply_scratch(surf, defect)
    if isinstance(defect, Paint):
        return apply_paint(surf, defect)
    return np.zeros(surf.index.size, dtype=bool)
