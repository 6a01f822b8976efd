"""Geometry and shading of the screw rod, its hex nut(s) and the backdrop (vectorised numpy).

The product is rendered at ``SUPERSAMPLE`` times the output size and box-downsampled, so edges
and thread crests are antialiased like a photo. Every surface point gets a normal and is lit by
one key light FIXED in the image frame (upper left) plus a soft dome above the camera: a thread
crest's specular highlight therefore moves with the rod's in-plane angle, and the nut's face that
looks at the camera is bright while its sides are darker (Ishida et al. 2023, Fig. 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cadsd.synth import scene as sc

SUPERSAMPLE = 2
#: Key light direction in the image frame (x right, y down, z towards the camera).
KEY_LIGHT = (-0.22, -0.28, 0.93)
ROD_ALBEDO = (0.055, 0.055, 0.06)  # blackened steel
NUT_ALBEDO = (0.68, 0.68, 0.70)  # zinc-plated steel


@dataclass
class Surface:
    """The product's visible surface on the supersampled grid, one row per covered pixel."""

    index: np.ndarray  # (N,) flat pixel indices into the (S, S) grid
    out_index: np.ndarray  # (N,) flat index of the output pixel each one falls in
    u: np.ndarray  # (N,) position along the rod (d)
    v: np.ndarray  # (N,) position across the rod (d)
    part: np.ndarray  # (N,) 1 = rod, 2 + k = nut k
    normal: np.ndarray  # (N, 3) unit normals in the rod's frame (u, v, z)
    crest: np.ndarray  # (N,) thread height, 0 at the root .. 1 at the crest (nuts: 1)
    color: np.ndarray  # (N, 3) shaded colour in [0, 1]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.einsum("...i,...i->...", x, x))[..., None]


def local_light(angle: float) -> np.ndarray:
    """The fixed key light expressed in the rod's (u, v, z) frame for a rod at ``angle``."""
    lx, ly, lz = _unit(np.array(KEY_LIGHT))
    c, s = math.cos(angle), math.sin(angle)
    return np.array([lx * c + ly * s, -lx * s + ly * c, lz])


def rod_surface(
    u: np.ndarray, v: np.ndarray, phase: float, length: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Threaded rod: (inside, normals (N, 3), crest height) at local positions (d units).

    The thread is a right-hand helix: across the visible half the crest line shifts by half a
    pitch, which tilts the crests as in a photo. Its profile is a triangle with flattened crest and
    root (smoothstep), and the rod's ends are chamfered at 45 degrees.
    """
    radius, pitch, depth = 0.5, sc.PITCH, sc.THREAD_DEPTH
    s = np.clip(v / radius, -1.0, 1.0)
    f = (u - pitch * np.arcsin(s) / (2 * math.pi)) / pitch + phase
    frac = f - np.round(f)  # -0.5..0.5, 0 at a crest
    t = np.abs(frac) * 2.0  # 0 at the crest, 1 at the root
    x = np.clip((0.95 - t) / 0.5, 0.0, 1.0)
    crest = x * x * (3.0 - 2.0 * x)
    dcrest_du = -6.0 * x * (1.0 - x) / 0.5 * (x > 0) * (x < 1) * 2.0 * np.sign(frac) / pitch
    r = radius - depth + depth * crest
    slope = depth * dcrest_du
    to_end = length / 2 - np.abs(u)
    tip = radius - 1.3 * depth + to_end  # 45 degree chamfer at both rod ends
    chamfered = tip < r
    r = np.where(chamfered, tip, r)
    slope = np.where(chamfered, -np.sign(u), slope)
    inside = (np.abs(v) < r) & (to_end > 0)
    rr = np.maximum(r, 1e-6)
    z = np.sqrt(np.clip(rr**2 - v**2, 0.0, None))
    normal = _unit(np.stack([-slope, v / rr, z / rr], axis=-1))
    return inside, normal, crest


def nut_surface(
    u: np.ndarray, v: np.ndarray, nut: sc.Nut, length: float
) -> tuple[np.ndarray, np.ndarray]:
    """Hex nut with its axis along the rod: (inside, normals (N, 3)) at local positions.

    The visible top is the lowest of the camera-facing face planes; both ends carry a conical
    chamfer that cuts the hexagon's corners (the darker arcs at a real nut's ends).
    """
    lo, hi = nut.span(length)
    half_flats = sc.NUT_FLATS / 2
    corner = half_flats / math.cos(math.pi / 6)
    alphas = nut.phi + np.arange(6) * math.pi / 3  # face normal angles from +z towards +v
    front = np.cos(alphas) > 1e-6
    sa, ca = np.sin(alphas[front]), np.cos(alphas[front])
    heights = (half_flats - v[..., None] * sa) / ca  # (N, faces) height of each face plane
    face = np.argmin(heights, axis=-1)
    z = np.take_along_axis(heights, face[..., None], axis=-1)[..., 0]
    width = corner * np.max(np.abs(np.sin(alphas + math.pi / 6)))  # silhouette half-width
    # Rounded edges: within NUT_BEVEL of a face's edge the normal turns (up to half way) towards
    # the neighbouring face, which gives the soft rims of a real nut's flats.
    alpha = alphas[front][face]
    cos_a = np.maximum(np.cos(alpha), 0.05)
    to_lo = (v - corner * np.sin(alpha - math.pi / 6)) / cos_a  # along the face, to each edge
    to_hi = (corner * np.sin(alpha + math.pi / 6) - v) / cos_a
    turn = (math.pi / 6) * (
        np.clip(1 - to_hi / sc.NUT_BEVEL, 0, 1) ** 2 - np.clip(1 - to_lo / sc.NUT_BEVEL, 0, 1) ** 2
    )
    normal = np.stack([np.zeros_like(v), np.sin(alpha + turn), np.cos(alpha + turn)], axis=-1)
    depth_in = np.minimum(u - lo, hi - u)  # distance to the nearer end face
    rho = np.sqrt(v**2 + z**2)
    cone = half_flats * sc.NUT_CHAMFER_START + sc.NUT_CHAMFER_SLOPE * depth_in
    on_cone = rho > cone
    inside = (depth_in > 0) & (np.abs(v) <= width) & (~on_cone | (np.abs(v) < cone))
    zc = np.sqrt(np.clip(cone**2 - v**2, 0.0, None))
    axial = np.where(u - lo < hi - u, -1.0, 1.0) * sc.NUT_CHAMFER_SLOPE
    cone_n = _unit(np.stack([axial, v / cone, zc / cone], axis=-1))
    normal = np.where(on_cone[..., None], cone_n, normal)
    return inside, normal


def shade_rod(normal: np.ndarray, crest: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Blackened steel: little diffuse light and an anisotropic specular band along the rod.

    Machining grooves run around the rod, so the highlight is narrow across the rod and broad
    along it: every crest inside the band lights up as one bright dot (as in the paper's photos).
    """
    half = _unit(light + np.array([0.0, 0.0, 1.0]))
    ndl = np.clip(normal @ light, 0.0, 1.0)
    ndh = np.clip(normal @ half, 0.0, 1.0)
    around = np.arctan2(normal[:, 1], normal[:, 2]) - math.atan2(half[1], half[2])
    along = np.arcsin(np.clip(normal[:, 0], -1, 1)) - math.asin(half[0])
    band = np.exp(-((around / 0.17) ** 2) - (along / 0.9) ** 2)
    occlusion = 0.35 + 0.65 * crest
    spec = 1.3 * band * np.sqrt(crest) + 0.04 * ndh**4
    shade = np.array(ROD_ALBEDO) * (0.25 + 0.75 * ndl)[:, None]
    return (shade + spec[:, None] * np.array([0.97, 0.97, 0.92])) * occlusion[:, None]


def shade_nut(normal: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Zinc-plated steel: the face towards the camera mirrors the bright dome, sides stay grey."""
    half = _unit(light + np.array([0.0, 0.0, 1.0]))
    ndl = np.clip(normal @ light, 0.0, 1.0)
    ndh = np.clip(normal @ half, 0.0, 1.0)
    nz = np.clip(normal[:, 2], 0.0, 1.0)
    light_term = 0.10 + 0.22 * ndl + 0.45 * nz**3 + 0.3 * ndh**20
    # The rounded rims between flats catch the bright surroundings: a thin bright outline.
    rim = 0.4 * np.exp(-(((np.arccos(nz) - 0.4) / 0.16) ** 2))
    return np.array(NUT_ALBEDO) * light_term[:, None] + (0.12 * nz**40 + rim)[:, None]


@dataclass
class Frame:
    """The supersampled pixels near the product (its oriented bounding box) in the rod's frame."""

    size: int  # output size; the grid is size * SUPERSAMPLE square
    index: np.ndarray  # (M,) flat indices on the supersampled grid
    out_index: np.ndarray  # (M,) flat indices of the output pixel each one falls in
    u: np.ndarray  # (M,) along the rod (d)
    v: np.ndarray  # (M,) across the rod (d)


def frame(scene: sc.Scene, size: int) -> Frame:
    """Pixels within reach of the product (about 20 % of the frame are shaded, not all)."""
    n = size * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / n
    c, s = math.cos(scene.angle), math.sin(scene.angle)
    x = (coords[None, :] - scene.center[0]) / scene.diameter
    y = (coords[:, None] - scene.center[1]) / scene.diameter
    u, v = x * c + y * s, -x * s + y * c
    reach = scene.length / 2 - sc.NUT_INSET[0] + 0.1
    band = (np.abs(u) < reach) & (np.abs(v) < sc.NUT_FLATS / math.sqrt(3) + 0.05)
    index = np.flatnonzero(band)
    rows, cols = np.divmod(index, n)
    out_index = (rows // SUPERSAMPLE) * size + cols // SUPERSAMPLE
    return Frame(size, index, out_index, u.ravel()[index], v.ravel()[index])


def _nut_cover(fr: Frame, nut: sc.Nut, length: float) -> tuple[np.ndarray, np.ndarray]:
    """(pixel positions in ``fr`` covered by ``nut``, their normals)."""
    lo, hi = nut.span(length)
    near = np.flatnonzero((fr.u > lo) & (fr.u < hi))
    inside, normal = nut_surface(fr.u[near], fr.v[near], nut, length)
    return near[inside], normal[inside]


def surface(scene: sc.Scene, size: int) -> Surface:
    """Visible product surface of ``scene`` on the ``size * SUPERSAMPLE`` grid, shaded."""
    fr = frame(scene, size)
    u, v, count = fr.u, fr.v, fr.index.size
    light = local_light(scene.angle)
    part = np.zeros(count, dtype=np.int8)
    normal = np.zeros((count, 3))
    crest = np.ones(count)
    inside, rod_n, rod_crest = rod_surface(u, v, scene.thread_phase, scene.length)
    part[inside] = 1
    normal[inside], crest[inside] = rod_n[inside], rod_crest[inside]
    for k, nut in enumerate(scene.nuts):  # nuts hide the rod inside them
        at, nut_n = _nut_cover(fr, nut, scene.length)
        part[at], normal[at], crest[at] = 2 + k, nut_n, 1.0
    color = np.zeros((count, 3))
    rod, nut = part == 1, part >= 2
    color[rod] = shade_rod(normal[rod], crest[rod], light)
    color[nut] = shade_nut(normal[nut], light)
    keep = part > 0
    return Surface(
        fr.index[keep], fr.out_index[keep], u[keep], v[keep], part[keep], normal[keep],
        crest[keep], color[keep],
    )


def nut_silhouettes(scene: sc.Scene, nuts: tuple[sc.Nut, ...], size: int) -> np.ndarray:
    """Boolean (size, size): where ``nuts`` cover the frame (drawn or not) in the output grid."""
    fr = frame(scene, size)
    cover = np.zeros(fr.index.size, dtype=bool)
    for nut in nuts:
        cover[_nut_cover(fr, nut, scene.length)[0]] = True
    return _accumulate(fr.out_index[cover], None, size) >= 0.5


def _accumulate(out_index: np.ndarray, weights: np.ndarray | None, size: int) -> np.ndarray:
    """Box-downsample sparse supersampled values onto the (size, size) output grid."""
    total = np.bincount(out_index, weights=weights, minlength=size * size)
    return total.reshape(size, size) / SUPERSAMPLE**2


def scatter(surf: Surface, values: np.ndarray, size: int) -> np.ndarray:
    """Per-surface-pixel ``values`` ((N,) or (N, c)) box-downsampled onto the output grid."""
    if values.ndim == 1:
        return _accumulate(surf.out_index, values, size)
    return np.stack([_accumulate(surf.out_index, values[:, c], size) for c in range(values.shape[1])], -1)


def compose(scene: sc.Scene, surf: Surface, size: int, rng: np.random.Generator) -> np.ndarray:
    """Backdrop, shadow halo, product and camera nuisance -> uint8 (size, size, 3) RGB."""
    cam = scene.camera
    alpha = scatter(surf, np.ones(surf.index.size), size)
    premult = scatter(surf, surf.color, size)
    if cam.blur > 0:  # slight defocus of the product (the backdrop is smooth anyway)
        alpha = ndimage.gaussian_filter(alpha, cam.blur)
        premult = ndimage.gaussian_filter(premult, (cam.blur, cam.blur, 0))
    coords = (np.arange(size) + 0.5) / size
    dx = coords[None, :] - 0.5 - cam.vignette_center[0]
    dy = coords[:, None] - 0.5 - cam.vignette_center[1]
    backdrop = cam.background * (1.0 - cam.vignette * (dx**2 + dy**2) / 0.5)
    # Soft shadow halo: the silhouette blurred wide and narrow, pushed away from the key light.
    d_px = scene.diameter * size
    away = -np.array(KEY_LIGHT[1::-1]) / math.hypot(*KEY_LIGHT[:2]) * 0.12 * d_px
    cast = ndimage.shift(alpha, away, order=1, mode="constant")
    small = ndimage.zoom(cast, 0.25, order=1)  # the wide blur is smooth: compute it at 1/4 size
    wide = ndimage.zoom(ndimage.gaussian_filter(small, 0.125 * d_px), size / small.shape[0], order=1)
    halo = 0.5 * wide[:size, :size] + 0.5 * ndimage.gaussian_filter(cast, 0.2 * d_px)
    backdrop = backdrop * (1.0 - cam.shadow * np.clip(halo * 2.0, 0.0, 1.0))
    img = backdrop[..., None] * (1.0 - alpha[..., None]) + premult
    img = img * cam.exposure * np.array(cam.tint)
    img = img + rng.normal(0.0, 1.0, img.shape) * cam.noise * np.sqrt(0.25 + img)
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
