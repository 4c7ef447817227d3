"""Display-case backgrounds and camera effects for the synthetic generator.

Trays (velvet, leather, linen, mirror) are cut from texture banks computed once per process with a
fixed seed, so rendering an image costs a crop, a resize and a few vectorised multiplies; the
per-image random choices all come from the caller's generator, which keeps output deterministic.
"""
from __future__ import annotations

import functools
import logging

import cv2
import numpy as np

logger = logging.getLogger(__name__)

BANK_SIZE = 256
TRAY_KINDS = ("velvet", "leather", "linen", "mirror")

# Tray colours as RGB (converted to BGR when used); what jewellers actually line cases with.
_TRAY_COLOURS = {
    "velvet": [(18, 18, 22), (20, 28, 62), (92, 16, 30), (16, 52, 38), (70, 70, 76), (214, 200, 178),
               (40, 20, 48), (150, 150, 156)],
    "leather": [(24, 22, 22), (92, 58, 36), (170, 128, 88), (226, 222, 214), (120, 26, 28), (60, 62, 70)],
    "linen": [(222, 212, 190), (196, 186, 166), (236, 232, 224), (150, 146, 138), (180, 168, 150)],
    "mirror": [(170, 176, 184), (120, 126, 134), (200, 204, 210)],
}


def _blurred_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Zero-mean unit-variance noise smoothed at ``sigma`` pixels (a building block of textures)."""
    n = rng.standard_normal((BANK_SIZE, BANK_SIZE)).astype(np.float32)
    if sigma > 0:
        n = cv2.GaussianBlur(n, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    n -= n.mean()
    return n / (n.std() + 1e-6)


@functools.lru_cache(maxsize=1)
def texture_bank() -> dict[str, list[np.ndarray]]:
    """Per-process texture banks: a few float32 ``BANK_SIZE``² fields per tray kind, values about ±1.

    Seeded with a constant, so every process (and every worker) holds the same bank.
    """
    rng = np.random.default_rng(20240601)
    yy, xx = np.mgrid[0:BANK_SIZE, 0:BANK_SIZE].astype(np.float32)
    bank: dict[str, list[np.ndarray]] = {k: [] for k in TRAY_KINDS}
    for _ in range(3):
        # velvet: soft nap (low-frequency sheen) plus a fine pile grain.
        v = 0.8 * _blurred_noise(rng, 10) + 0.35 * _blurred_noise(rng, 0.7)
        bank["velvet"].append(v)
        # leather: pebbled grain = ridges of band-passed noise, plus a few creases.
        p = _blurred_noise(rng, 1.6) - 0.6 * _blurred_noise(rng, 4)
        grain = 1.0 - 2.0 * np.abs(np.tanh(p))
        bank["leather"].append(0.7 * grain + 0.4 * _blurred_noise(rng, 12))
        # linen: a weave of warp and weft threads whose thickness wanders.
        f = rng.uniform(0.9, 1.3)
        warp = np.sin(xx * f + 2.0 * _blurred_noise(rng, 6)) * (0.6 + 0.4 * rng.standard_normal((1, BANK_SIZE)))
        weft = np.sin(yy * f + 2.0 * _blurred_noise(rng, 6)) * (0.6 + 0.4 * rng.standard_normal((BANK_SIZE, 1)))
        lin = 0.5 * (warp + weft) + 0.3 * _blurred_noise(rng, 20)
        bank["linen"].append(lin.astype(np.float32))
        # mirror: a smooth sweep of reflected room light with long streaks along one direction.
        streak = rng.standard_normal((BANK_SIZE, BANK_SIZE)).astype(np.float32)
        streak = cv2.GaussianBlur(streak, (0, 0), sigmaX=40, sigmaY=1.5, borderType=cv2.BORDER_REFLECT)
        streak /= streak.std() + 1e-6
        sweep = (xx + 0.6 * yy) / BANK_SIZE * 2.0 - 1.3
        bank["mirror"].append(1.1 * sweep + 0.5 * streak + 0.25 * _blurred_noise(rng, 30))
    for kind, fields in bank.items():
        bank[kind] = [np.ascontiguousarray(f, np.float32) for f in fields]
    return bank


@functools.lru_cache(maxsize=8)
def coord_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates normalised to -1..1 (``x``, ``y``) for vectorised light fields."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    return c[None, :].repeat(size, 0), c[:, None].repeat(size, 1)


NOISE_LEVELS = (2.0, 3.5, 5.0, 7.0)


@functools.lru_cache(maxsize=8)
def noise_bank(size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed sensor-noise fields twice the image size, one per level in :data:`NOISE_LEVELS`.

    Each is split into its positive and negative parts as ``uint8`` so adding noise is two
    saturating OpenCV operations on the final image (crop them at a random offset).
    """
    rng = np.random.default_rng(7 + size)
    n = rng.standard_normal((2 * size, 2 * size, 3)).astype(np.float32)
    out = []
    for level in NOISE_LEVELS:
        q = np.clip(np.round(n * level), -255, 255)
        out.append((np.maximum(q, 0).astype(np.uint8), np.maximum(-q, 0).astype(np.uint8)))
    return out


def gray3(x: np.ndarray) -> np.ndarray:
    """A one-channel float32 field as three equal channels.

    Broadcasting ``x[..., None]`` against an ``H x W x 3`` array runs numpy's inner loop over 3
    elements and costs ten times more than this copy plus a same-shape operation.
    """
    return cv2.cvtColor(x, cv2.COLOR_GRAY2BGR)


def scale_channels(img: np.ndarray, k: np.ndarray) -> None:
    """Multiply each channel of a contiguous ``H x W x 3`` float32 image by ``k[c]``, in place."""
    h, w = img.shape[:2]
    img.reshape(h, w * 3)[...] *= np.tile(np.asarray(k, np.float32), w)


def _rgb(c: tuple[int, int, int]) -> np.ndarray:
    return np.array(c[::-1], np.float32)


def render_tray(rng: np.random.Generator, size: int, kind: str | None = None) -> tuple[np.ndarray, str]:
    """A tray lining as float32 BGR ``size x size`` (0..255) with its lighting; returns (image, kind)."""
    kind = kind or TRAY_KINDS[int(rng.choice(len(TRAY_KINDS), p=[0.35, 0.25, 0.25, 0.15]))]
    fields = texture_bank()[kind]
    field = fields[int(rng.integers(len(fields)))]
    # Crop a window whose size sets the texture's apparent scale, then bring it to the output size.
    win = int(rng.integers(BANK_SIZE // 2, BANK_SIZE + 1))
    y0, x0 = (int(v) for v in rng.integers(0, BANK_SIZE - win + 1, size=2))
    tex = field[y0:y0 + win, x0:x0 + win]
    if rng.random() < 0.5:
        tex = tex.T
    tex = cv2.resize(tex, (size, size), interpolation=cv2.INTER_LINEAR)
    palette = _TRAY_COLOURS[kind]
    base = _rgb(palette[int(rng.integers(len(palette)))]) * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    amp = {"velvet": 0.10, "leather": 0.12, "linen": 0.10, "mirror": 0.18}[kind] * rng.uniform(0.6, 1.4)
    # Dark linings need an additive term too, or their texture vanishes in the multiply.
    tex *= np.float32(amp)
    tray = gray3(tex)
    scale_channels(tray, base + np.float32(40.0))
    tray.reshape(size, size * 3)[...] += np.tile(base, size)
    return tray, kind


_LOW = 32


def lighting_field(rng: np.random.Generator, size: int, strength: float = 1.0) -> np.ndarray:
    """A multiplicative light map (``size x size x 3``): a linear gradient, vignette and a soft hot spot.

    Light varies slowly, so it is computed on a coarse grid and interpolated up.
    """
    x, y = coord_grid(_LOW)
    gx, gy = rng.uniform(-0.25, 0.25, 2) * strength
    light = 1.0 + gx * x + gy * y - rng.uniform(0.0, 0.25) * strength * (x * x + y * y)
    if rng.random() < 0.5:
        cx, cy = rng.uniform(-0.9, 0.9, 2)
        r2 = (x - cx) ** 2 + (y - cy) ** 2
        light += rng.uniform(0.1, 0.35) * strength * np.exp(-r2 / rng.uniform(0.1, 0.5))
    light = (light * rng.uniform(0.8, 1.15)).astype(np.float32)
    return gray3(cv2.resize(light, (size, size), interpolation=cv2.INTER_LINEAR))


def glass_reflection(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> None:
    """Add (in place) the case glass's reflections: pale diagonal streaks and a blurred ceiling light."""
    size = img.shape[0]
    low = min(size, 64)
    x, y = coord_grid(low)
    a = rng.uniform(0, np.pi)
    d = np.cos(a) * x + np.sin(a) * y - rng.uniform(-0.9, 0.9)
    width = rng.uniform(0.05, 0.35)
    band = np.clip(1.0 - np.abs(d) / width, 0.0, 1.0)
    level = rng.uniform(20, 70) * strength
    tint = np.array([1.0, 1.0, 1.0], np.float32) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    add = band * level
    if rng.random() < 0.3:
        cx, cy = rng.uniform(-1, 1, 2)
        add += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / rng.uniform(0.01, 0.04)) * (rng.uniform(60, 160) * strength)
    # Reflections are soft: a coarse field interpolated up is indistinguishable and much cheaper.
    add = gray3(cv2.resize(add.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR))
    scale_channels(add, tint)
    img += add


def camera_effects(img: np.ndarray, rng: np.random.Generator, noise: bool = True) -> np.ndarray:
    """White balance, optical blur and sensor noise; float32 in (modified), ``uint8`` BGR out."""
    size = img.shape[0]
    scale_channels(img, rng.uniform(0.92, 1.08, 3))
    out = cv2.convertScaleAbs(img)  # saturating float -> uint8
    r = rng.random()
    if r < 0.6:
        k = 3 if size < 96 or r < 0.3 else 5
        out = cv2.GaussianBlur(out, (k, k), 0.4 * k * size / 160.0)
    if noise:
        pos, neg = noise_bank(size)[int(rng.integers(len(NOISE_LEVELS)))]
        oy, ox = (int(v) for v in rng.integers(0, size, 2))
        cv2.add(out, pos[oy:oy + size, ox:ox + size], dst=out)
        cv2.subtract(out, neg[oy:oy + size, ox:ox + size], dst=out)
    return out


def tray_details(img: np.ndarray, rng: np.random.Generator, kind: str) -> None:
    """Draw (in place) what makes a lining busy: an insert's wall at the edge, a seam, dust and lint."""
    size = img.shape[0]
    mean = img.reshape(-1, 3)[:: 97].mean(axis=0)
    if rng.random() < 0.35:  # the wall of the insert next door, in shadow, with a lit top edge
        side = int(rng.integers(4))
        w = max(2, int(size * rng.uniform(0.03, 0.07)))
        wall = tuple(float(v) for v in mean * rng.uniform(0.35, 0.6))
        lip = tuple(float(min(255.0, v * 1.4 + 25)) for v in mean)
        if side == 0:
            img[:w] = wall
            img[w:w + 1] = lip
        elif side == 1:
            img[-w:] = wall
            img[-w - 1:-w] = lip
        elif side == 2:
            img[:, :w] = wall
            img[:, w:w + 1] = lip
        else:
            img[:, -w:] = wall
            img[:, -w - 1:-w] = lip
    if kind in ("leather", "linen", "velvet") and rng.random() < 0.2:  # a stitched seam
        a = rng.uniform(0, np.pi)
        c = size * rng.uniform(0.15, 0.85, 2)
        d = np.array([np.cos(a), np.sin(a)]) * size * 1.5
        p0, p1 = (c - d).astype(int), (c + d).astype(int)
        groove = tuple(float(v) for v in mean * 0.6)
        cv2.line(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), groove, max(1, size // 96), cv2.LINE_AA)
        n = np.array([-np.sin(a), np.cos(a)]) * max(2.0, size * 0.025)
        t = np.linspace(-1.0, 1.0, 60)[:, None]
        starts = c + n + d * t
        stitches = list(np.stack([starts, starts + d * 0.013], axis=1).astype(np.int32))
        thread = tuple(float(min(255.0, v * 1.3 + 40)) for v in mean)
        cv2.polylines(img, stitches, False, thread, 1, cv2.LINE_AA)
    if kind in ("velvet", "mirror") and rng.random() < 0.4:  # dust and lint show on dark pile and glass
        n = int(rng.integers(3, 12))
        pts = rng.uniform(0, size, (n, 2))
        for x, y in pts:
            cv2.circle(img, (int(x), int(y)), int(rng.integers(0, 2)), (200.0, 200.0, 200.0), -1, cv2.LINE_AA)
