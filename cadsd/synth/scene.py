"""What one synthetic CAD-SD photo shows: the product's pose, its nuts, its defect, the camera.

A scene is sampled from one RNG and holds only numbers; :mod:`cadsd.synth.render` turns it into
pixels. Lengths are in rod diameters (``d``) unless a name says otherwise; the rod's diameter is
a fraction of the frame (about 9 %, as in the paper's photos, Ishida et al. 2023, Fig. 3).
The rod runs along the local ``u`` axis (``-length/2 .. +length/2``), ``v`` is across it and ``z``
points at the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Rod diameter as a fraction of the frame, and its per-image jitter (camera height).
DIAMETER = 0.09
DIAMETER_JITTER = 0.035
#: Rod length: the product spans about 86 % of the frame.
LENGTH = 9.6
#: Thread pitch and depth (ISO metric profile: depth ~0.54 pitch).
PITCH = 0.2
THREAD_DEPTH = 0.11
#: Hex nut: across flats, thickness (along the rod), chamfer start (fraction of flats/2) and the
#: chamfer cone's radius growth per unit of depth (a 30 degree chamfer is tan(60) ~ 1.7).
NUT_FLATS = 2.2
NUT_THICKNESS = 1.6
NUT_CHAMFER_START = 0.9
NUT_CHAMFER_SLOPE = 1.3
NUT_BEVEL = 0.16  # width of the rounded edges between flats
#: Where along the rod a nut sits: distance from the rod's end to the nut's outer face.
NUT_INSET = (0.0, 0.8)
#: Rotation of a nut about the rod axis: the product lies on the backdrop with the nut resting on
#: one of its flats, so a flat faces the camera up to a small roll (radians, Gaussian sigma).
#: Measured with the embedded MobileNetV2: a uniform roll over 60 degrees (with insets up to 1 d)
#: spreads normal nuts so thin that SA-PatchCore's lacking AUROC falls from ~0.8 to ~0.67.
NUT_ROLL = 0.15
#: Small translation of the product's centre, as a fraction of the frame.
SHIFT = 0.025


@dataclass(frozen=True)
class Nut:
    """One hex nut on the rod."""

    end: int  # +1: at the +u end of the rod, -1: at the -u end
    inset: float  # rod end to the nut's outer face (d); negative: the nut overhangs the rod
    phi: float  # rotation about the rod axis (radians; the hexagon repeats every pi/3)

    def span(self, length: float) -> tuple[float, float]:
        """The nut's (low, high) extent along ``u`` (d)."""
        outer = self.end * (length / 2 - self.inset)
        inner = outer - self.end * NUT_THICKNESS
        return (min(inner, outer), max(inner, outer))


@dataclass(frozen=True)
class Camera:
    """Per-image nuisance: lighting level, white balance, vignetting, optics, sensor noise."""

    exposure: float  # global gain
    tint: tuple[float, float, float]  # white balance gains, R G B
    background: float  # grey level of the backdrop before vignetting (0..1)
    vignette: float  # brightness lost at the frame corners (fraction)
    vignette_center: tuple[float, float]  # optical centre offset (fraction of the frame)
    shadow: float  # darkness of the soft shadow halo
    blur: float  # defocus, Gaussian sigma in output pixels
    noise: float  # sensor noise sigma (0..1 scale)


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one image (see the module docstring for the frame)."""

    angle: float  # in-plane rotation of the rod axis (radians, any of 360 degrees)
    center: tuple[float, float]  # product centre (x, y) as fractions of the frame
    diameter: float  # rod diameter as a fraction of the frame
    thread_phase: float  # where the first thread crest sits (fraction of a pitch)
    nuts: tuple[Nut, ...]
    camera: Camera
    defect: object | None = None  # a Scratch or Paint of cadsd.synth.anomalies, or None
    #: Nuts that would make the scene normal (drawn for the `lacking` mask, never rendered).
    missing: tuple[Nut, ...] = ()

    @property
    def length(self) -> float:
        return LENGTH


def sample_nut(rng: np.random.Generator, end: int) -> Nut:
    """A nut at ``end`` with its own screw-in depth and rotation (roll) about the axis."""
    inset = float(rng.uniform(*NUT_INSET))
    phi = float(rng.normal(0.0, NUT_ROLL)) % (math.pi / 3)
    return Nut(end=end, inset=inset, phi=phi)


def sample_camera(rng: np.random.Generator) -> Camera:
    """Nuisance drawn so that global statistics (brightness, saturation) vary across images."""
    tint = np.exp(rng.normal(0.0, 0.009, size=3) + np.array([-0.01, 0.0, 0.015]))
    tint = tint / tint.mean()
    return Camera(
        exposure=float(np.exp(rng.normal(0.0, 0.03))),
        tint=(float(tint[0]), float(tint[1]), float(tint[2])),
        background=float(rng.uniform(0.72, 0.78)),
        vignette=float(rng.uniform(0.2, 0.3)),
        vignette_center=(float(rng.uniform(-0.06, 0.06)), float(rng.uniform(-0.06, 0.06))),
        shadow=float(rng.uniform(0.65, 0.75)),
        blur=float(rng.uniform(0.4, 0.6)),
        noise=float(rng.uniform(0.008, 0.012)),
    )


def sample_scene(rng: np.random.Generator, category: str) -> Scene:
    """Pose, nuts and camera of one image of ``category`` (a name of cadsd.format.layout.CATEGORIES).

    Normal, scratch and paint images carry one nut; over-coupling a second nut on the other end
    (own depth and rotation); lacking none. The defect itself is drawn by
    :func:`cadsd.synth.anomalies.sample_defect`; the draws here are identical in number for every
    category so the pose distribution does not depend on the category.
    """
    angle = float(rng.uniform(0.0, 2 * math.pi))
    center = (0.5 + float(rng.uniform(-SHIFT, SHIFT)), 0.5 + float(rng.uniform(-SHIFT, SHIFT)))
    diameter = DIAMETER * float(np.exp(rng.uniform(-DIAMETER_JITTER, DIAMETER_JITTER)))
    phase = float(rng.uniform(0.0, 1.0))
    first, second = sample_nut(rng, +1), sample_nut(rng, -1)
    camera = sample_camera(rng)
    nuts: tuple[Nut, ...] = (first,)
    missing: tuple[Nut, ...] = ()
    if category == "over_coupling":
        nuts = (first, second)
    elif category == "lacking":
        nuts, missing = (), (first, second)
    return Scene(angle, center, diameter, phase, nuts, camera, missing=missing)
