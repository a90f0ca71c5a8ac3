"""The 43 GTSRB sign classes: readable names and procedural drawings of each sign.

Every class is drawn with PIL from its real design: shape (circle, triangle, inverted triangle,
octagon, diamond), colours (red rim, blue disc, yellow core, grey derestriction stripes) and the
symbol or numeral it carries. The drawings are deliberately plain; realism (perspective, blur,
lighting, occlusion) is added when a sign is pasted into a scene (see scenes.py).

Example:
    >>> template(14).size          # (TEMPLATE_SIZE, TEMPLATE_SIZE), RGBA, transparent outside the sign
    >>> CLASS_NAMES[14]            # 'stop'
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CLASS_NAMES = [
    "speed limit 20", "speed limit 30", "speed limit 50", "speed limit 60", "speed limit 70",
    "speed limit 80", "end of speed limit 80", "speed limit 100", "speed limit 120", "no passing",
    "no passing for vehicles over 3.5 t", "right-of-way at the next intersection", "priority road",
    "yield", "stop", "no vehicles", "vehicles over 3.5 t prohibited", "no entry", "general caution",
    "dangerous curve to the left", "dangerous curve to the right", "double curve", "bumpy road",
    "slippery road", "road narrows on the right", "road work", "traffic signals", "pedestrians",
    "children crossing", "bicycles crossing", "beware of ice/snow", "wild animals crossing",
    "end of all speed and passing limits", "turn right ahead", "turn left ahead", "ahead only",
    "go straight or right", "go straight or left", "keep right", "keep left", "roundabout mandatory",
    "end of no passing", "end of no passing by vehicles over 3.5 t",
]
NUM_CLASSES = len(CLASS_NAMES)

TEMPLATE_SIZE = 96  # final template side; drawn at 4x and downsampled for clean anti-aliased edges
_SS = 4
_D = TEMPLATE_SIZE * _SS

RED = (200, 25, 35)
BLUE = (25, 80, 175)
YELLOW = (250, 195, 20)
WHITE = (245, 245, 240)
BLACK = (20, 20, 20)
GREY = (120, 120, 120)

SPEED_LIMITS = {0: "20", 1: "30", 2: "50", 3: "60", 4: "70", 5: "80", 7: "100", 8: "120"}
_PROHIBITORY = {0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 15, 16}
_DERESTRICTION = {6, 32, 41, 42}
_WARNING = {11, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31}
_MANDATORY = {33, 34, 35, 36, 37, 38, 39, 40}


def check_class_id(class_id: int) -> int:
    if not 0 <= int(class_id) < NUM_CLASSES:
        raise ValueError(f"class_id must be a GTSRB ClassId in [0, {NUM_CLASSES - 1}]. Received: {class_id}")
    return int(class_id)


def shape_of(class_id: int) -> str:
    """circle | triangle | inverted_triangle | octagon | diamond: the sign's outline."""
    class_id = check_class_id(class_id)
    if class_id in _WARNING:
        return "triangle"
    return {13: "inverted_triangle", 14: "octagon", 12: "diamond"}.get(class_id, "circle")


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    # DejaVu ships inside matplotlib's wheel: a real TrueType font on every machine, no download.
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    return ImageFont.truetype(str(path), size)


# ----------------------------------------------------------------------------------------------
# Drawing helpers on the 4x canvas. Coordinates are fractions of the canvas side.

def _p(*xy: float) -> list[tuple[float, float]]:
    return [(xy[i] * _D, xy[i + 1] * _D) for i in range(0, len(xy), 2)]


def _line(draw, points, width: float, fill=BLACK):
    pts = _p(*points)
    w = max(1, int(width * _D))
    draw.line(pts, fill=fill, width=w, joint="curve")
    r = w / 2
    for x, y in (pts[0], pts[-1]):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)


def _arrow(draw, points, width: float, fill=WHITE, head: float = 0.13):
    """Thick polyline ending in a triangular arrowhead pointing along its last segment."""
    (x0, y0), (x1, y1) = points[-4:-2], points[-2:]
    angle = math.atan2(y1 - y0, x1 - x0)
    back = (x1 - head * math.cos(angle) * 0.9, y1 - head * math.sin(angle) * 0.9)
    _line(draw, [*points[:-2], *back], width, fill)
    left = (x1 - head * math.cos(angle) + head * 0.6 * math.sin(angle),
            y1 - head * math.sin(angle) - head * 0.6 * math.cos(angle))
    right = (x1 - head * math.cos(angle) - head * 0.6 * math.sin(angle),
             y1 - head * math.sin(angle) + head * 0.6 * math.cos(angle))
    draw.polygon(_p(x1, y1, *left, *right), fill=fill)


def _arc_points(cx, cy, r, start_deg, end_deg, n=12):
    out = []
    for i in range(n + 1):
        a = math.radians(start_deg + (end_deg - start_deg) * i / n)
        out += [cx + r * math.cos(a), cy + r * math.sin(a)]
    return out


def _text(draw, text: str, cx: float, cy: float, height: float, fill=BLACK, max_width: float = 0.62):
    size = int(height * _D)
    font = _font(size)
    width = draw.textlength(text, font=font)
    if width > max_width * _D:  # three digits: shrink to fit inside the ring
        size = int(size * max_width * _D / width)
        font = _font(size)
    draw.text((cx * _D, cy * _D), text, font=font, fill=fill, anchor="mm")


def _car(draw, cx, cy, s, fill):
    """A car seen from behind: body, roof and two wheels."""
    draw.rounded_rectangle(_p(cx - 0.5 * s, cy - 0.1 * s, cx + 0.5 * s, cy + 0.35 * s), radius=0.1 * s * _D,
                           fill=fill)
    draw.polygon(_p(cx - 0.35 * s, cy - 0.1 * s, cx - 0.25 * s, cy - 0.45 * s, cx + 0.25 * s, cy - 0.45 * s,
                    cx + 0.35 * s, cy - 0.1 * s), fill=fill)
    for dx in (-0.33, 0.33):
        draw.rectangle(_p(cx + (dx - 0.1) * s, cy + 0.3 * s, cx + (dx + 0.1) * s, cy + 0.5 * s), fill=fill)


def _truck(draw, cx, cy, s, fill):
    """A lorry from the side: box, cab, wheels."""
    draw.rectangle(_p(cx - 0.55 * s, cy - 0.35 * s, cx + 0.2 * s, cy + 0.2 * s), fill=fill)
    draw.polygon(_p(cx + 0.25 * s, cy - 0.15 * s, cx + 0.45 * s, cy - 0.15 * s, cx + 0.55 * s, cy + 0.05 * s,
                    cx + 0.55 * s, cy + 0.2 * s, cx + 0.25 * s, cy + 0.2 * s), fill=fill)
    for dx in (-0.4, -0.15, 0.4):
        draw.ellipse(_p(cx + (dx - 0.1) * s, cy + 0.15 * s, cx + (dx + 0.1) * s, cy + 0.35 * s), fill=fill)


def _person(draw, cx, cy, s, fill=BLACK, stride=1.0):
    """A walking figure of height ~s centred at (cx, cy)."""
    w = 0.09 * s
    draw.ellipse(_p(cx - 0.09 * s, cy - 0.5 * s, cx + 0.09 * s, cy - 0.32 * s), fill=fill)
    _line(draw, [cx, cy - 0.28 * s, cx, cy + 0.08 * s], w, fill)
    _line(draw, [cx, cy + 0.08 * s, cx - 0.18 * s * stride, cy + 0.5 * s], w, fill)
    _line(draw, [cx, cy + 0.08 * s, cx + 0.18 * s * stride, cy + 0.5 * s], w, fill)
    _line(draw, [cx - 0.2 * s, cy + 0.02 * s, cx, cy - 0.22 * s, cx + 0.2 * s, cy - 0.02 * s], w * 0.8, fill)


# ----------------------------------------------------------------------------------------------
# Outlines.

def _circle(draw, rim, fill, inset=0.13):
    draw.ellipse(_p(0.02, 0.02, 0.98, 0.98), fill=rim)
    draw.ellipse(_p(0.02 + inset, 0.02 + inset, 0.98 - inset, 0.98 - inset), fill=fill)


def _triangle(draw, inverted=False):
    if inverted:
        outer, inner = _p(0.02, 0.08, 0.98, 0.08, 0.5, 0.92), _p(0.2, 0.19, 0.8, 0.19, 0.5, 0.72)
    else:
        outer, inner = _p(0.5, 0.06, 0.98, 0.9, 0.02, 0.9), _p(0.5, 0.27, 0.8, 0.79, 0.2, 0.79)
    draw.polygon(outer, fill=RED)
    draw.polygon(inner, fill=WHITE)


def _octagon(draw):
    def ring(r):
        return [(0.5 * _D + r * _D * math.cos(math.radians(22.5 + 45 * i)),
                 0.5 * _D + r * _D * math.sin(math.radians(22.5 + 45 * i))) for i in range(8)]
    draw.polygon(ring(0.5), fill=WHITE)
    draw.polygon(ring(0.46), fill=RED)


def _diamond(draw):
    draw.polygon(_p(0.5, 0.01, 0.99, 0.5, 0.5, 0.99, 0.01, 0.5), fill=WHITE)
    draw.polygon(_p(0.5, 0.05, 0.95, 0.5, 0.5, 0.95, 0.05, 0.5), fill=(60, 60, 60))
    draw.polygon(_p(0.5, 0.1, 0.9, 0.5, 0.5, 0.9, 0.1, 0.5), fill=WHITE)
    draw.polygon(_p(0.5, 0.24, 0.76, 0.5, 0.5, 0.76, 0.24, 0.5), fill=YELLOW)


def _derestriction_stripes(draw):
    for k in range(-2, 3):
        off = k * 0.035
        _line(draw, [0.78 + off, 0.22 + off, 0.22 + off, 0.78 + off], 0.018, (40, 40, 40))


# ----------------------------------------------------------------------------------------------
# Symbols inside warning triangles: centred near (0.5, 0.62), about 0.3 of the side.

def _warning_symbol(draw, c):
    cx, cy = 0.5, 0.61
    if c == 11:  # right-of-way at the next intersection: thick vertical, thin crossbar
        _line(draw, [cx, cy - 0.17, cx, cy + 0.15], 0.065)
        _line(draw, [cx - 0.1, cy - 0.04, cx + 0.1, cy - 0.04], 0.03)
    elif c == 18:  # general caution
        draw.polygon(_p(cx - 0.035, cy - 0.17, cx + 0.035, cy - 0.17, cx + 0.015, cy + 0.06,
                        cx - 0.015, cy + 0.06), fill=BLACK)
        draw.ellipse(_p(cx - 0.03, cy + 0.1, cx + 0.03, cy + 0.16), fill=BLACK)
    elif c in (19, 20):  # dangerous curve left / right
        d = -1 if c == 19 else 1
        _arrow(draw, [cx - 0.04 * d, cy + 0.16, cx - 0.04 * d, cy - 0.02, cx + 0.1 * d, cy - 0.16], 0.045,
               BLACK, head=0.08)
    elif c == 21:  # double curve (first to the left)
        _line(draw, [cx + 0.02, cy + 0.17, cx + 0.06, cy + 0.07, cx - 0.06, cy - 0.03, cx - 0.02, cy - 0.1,
                     cx + 0.04, cy - 0.17], 0.04)
    elif c == 22:  # bumpy road: two bumps on a base line
        _line(draw, [cx - 0.18, cy + 0.1, cx + 0.18, cy + 0.1], 0.03)
        for bx in (-0.09, 0.09):
            draw.chord(_p(cx + bx - 0.085, cy - 0.02, cx + bx + 0.085, cy + 0.2), 180, 360, fill=BLACK)
    elif c == 23:  # slippery road: car and skid marks
        _car(draw, cx, cy - 0.08, 0.18, BLACK)
        for dx in (-0.06, 0.06):
            _line(draw, [cx + dx, cy + 0.04, cx + dx + 0.04, cy + 0.09, cx + dx - 0.03, cy + 0.13,
                         cx + dx + 0.02, cy + 0.17], 0.02)
    elif c == 24:  # road narrows on the right
        _line(draw, [cx - 0.07, cy + 0.17, cx - 0.07, cy - 0.17], 0.04)
        _line(draw, [cx + 0.09, cy + 0.17, cx + 0.09, cy + 0.03, cx + 0.02, cy - 0.05, cx + 0.02, cy - 0.17],
              0.04)
    elif c == 25:  # road work: worker with a shovel beside a heap
        _person(draw, cx - 0.03, cy - 0.01, 0.32, stride=1.3)
        _line(draw, [cx + 0.05, cy - 0.02, cx + 0.13, cy + 0.14], 0.02)
        draw.polygon(_p(cx + 0.05, cy + 0.17, cx + 0.14, cy + 0.08, cx + 0.2, cy + 0.17), fill=BLACK)
    elif c == 26:  # traffic signals: red, yellow, green
        for i, colour in enumerate((RED, YELLOW, (20, 150, 60))):
            y = cy - 0.12 + i * 0.1
            draw.ellipse(_p(cx - 0.045, y - 0.045, cx + 0.045, y + 0.045), fill=colour, outline=BLACK,
                         width=max(1, int(0.008 * _D)))
    elif c == 27:  # pedestrians: one walker
        _person(draw, cx, cy, 0.34)
    elif c == 28:  # children crossing: an adult and a child
        _person(draw, cx - 0.07, cy - 0.01, 0.32)
        _person(draw, cx + 0.08, cy + 0.04, 0.24)
    elif c == 29:  # bicycles crossing
        for wx in (-0.1, 0.1):
            draw.ellipse(_p(cx + wx - 0.07, cy + 0.0, cx + wx + 0.07, cy + 0.14),
                         outline=BLACK, width=max(1, int(0.018 * _D)))
        _line(draw, [cx - 0.1, cy + 0.07, cx - 0.02, cy - 0.04, cx + 0.06, cy - 0.04, cx + 0.1, cy + 0.07],
              0.018)
        _line(draw, [cx - 0.02, cy - 0.04, cx + 0.01, cy + 0.07, cx + 0.06, cy - 0.04], 0.018)
        draw.ellipse(_p(cx + 0.02, cy - 0.17, cx + 0.08, cy - 0.11), fill=BLACK)
    elif c == 30:  # beware of ice/snow: snowflake
        for k in range(3):
            a = math.radians(90 + 60 * k)
            dx, dy = 0.15 * math.cos(a), 0.15 * math.sin(a)
            _line(draw, [cx - dx, cy - dy, cx + dx, cy + dy], 0.025)
            for sgn in (-1, 1):
                tx, ty = cx + sgn * dx * 0.6, cy + sgn * dy * 0.6
                px, py = -dy * 0.3, dx * 0.3
                _line(draw, [tx + px + sgn * dx * 0.25, ty + py + sgn * dy * 0.25, tx, ty,
                             tx - px + sgn * dx * 0.25, ty - py + sgn * dy * 0.25], 0.015)
    elif c == 31:  # wild animals crossing: leaping deer
        draw.polygon(_p(cx - 0.17, cy + 0.16, cx - 0.1, cy + 0.03, cx - 0.07, cy - 0.03, cx + 0.07, cy - 0.05,
                        cx + 0.11, cy - 0.13, cx + 0.15, cy - 0.12, cx + 0.13, cy - 0.06, cx + 0.17, cy - 0.02,
                        cx + 0.1, cy + 0.0, cx + 0.08, cy + 0.05, cx + 0.16, cy + 0.15, cx + 0.12, cy + 0.16,
                        cx + 0.03, cy + 0.05, cx - 0.05, cy + 0.05, cx - 0.12, cy + 0.17), fill=BLACK)
        _line(draw, [cx + 0.12, cy - 0.13, cx + 0.1, cy - 0.19, cx + 0.06, cy - 0.2], 0.012)
        _line(draw, [cx + 0.12, cy - 0.13, cx + 0.16, cy - 0.19], 0.012)


def _mandatory_symbol(draw, c):
    w = 0.075
    if c == 35:  # ahead only
        _arrow(draw, [0.5, 0.8, 0.5, 0.2], w)
    elif c in (33, 34):  # turn right / left ahead
        d = 1 if c == 33 else -1
        _arrow(draw, [0.5 - 0.1 * d, 0.8, 0.5 - 0.1 * d, 0.45, 0.5 + 0.22 * d, 0.45], w)
    elif c in (36, 37):  # go straight or right / left
        d = 1 if c == 36 else -1
        _arrow(draw, [0.5 - 0.08 * d, 0.82, 0.5 - 0.08 * d, 0.2], w * 0.85, head=0.12)
        _arrow(draw, [0.5 - 0.08 * d, 0.58, 0.5 + 0.05 * d, 0.45, 0.5 + 0.25 * d, 0.45], w * 0.85, head=0.12)
    elif c in (38, 39):  # keep right / left: arrow pointing down to that side
        d = 1 if c == 38 else -1
        _arrow(draw, [0.5 - 0.2 * d, 0.25, 0.5 + 0.18 * d, 0.72], w)
    elif c == 40:  # roundabout: three arrows chasing each other round the centre
        for k in range(3):
            start = -90 + 120 * k
            _arrow(draw, _arc_points(0.5, 0.5, 0.22, start + 15, start + 95, n=6), 0.06, head=0.1)


def _draw(class_id: int, draw: ImageDraw.ImageDraw) -> None:
    c = class_id
    if c in _PROHIBITORY:
        _circle(draw, RED, WHITE)
        if c in SPEED_LIMITS:
            _text(draw, SPEED_LIMITS[c], 0.5, 0.52, 0.42)
        elif c == 9:
            _car(draw, 0.36, 0.52, 0.24, RED)
            _car(draw, 0.64, 0.52, 0.24, BLACK)
        elif c == 10:
            _truck(draw, 0.34, 0.52, 0.26, RED)
            _car(draw, 0.67, 0.52, 0.22, BLACK)
        elif c == 16:
            _truck(draw, 0.5, 0.52, 0.46, BLACK)
    elif c in _DERESTRICTION:
        _circle(draw, (90, 90, 90), WHITE, inset=0.025)
        if c == 6:
            _text(draw, "80", 0.5, 0.52, 0.42, fill=GREY)
        elif c == 41:
            _car(draw, 0.36, 0.52, 0.24, GREY)
            _car(draw, 0.64, 0.52, 0.24, GREY)
        elif c == 42:
            _truck(draw, 0.34, 0.52, 0.26, GREY)
            _car(draw, 0.67, 0.52, 0.22, GREY)
        _derestriction_stripes(draw)
    elif c in _WARNING:
        _triangle(draw)
        _warning_symbol(draw, c)
    elif c in _MANDATORY:
        _circle(draw, WHITE, BLUE, inset=0.03)
        _mandatory_symbol(draw, c)
    elif c == 12:
        _diamond(draw)
    elif c == 13:
        _triangle(draw, inverted=True)
    elif c == 14:
        _octagon(draw)
        _text(draw, "STOP", 0.5, 0.5, 0.27, fill=WHITE, max_width=0.8)
    elif c == 17:
        _circle(draw, RED, RED, inset=0.0)
        draw.rectangle(_p(0.18, 0.42, 0.82, 0.58), fill=WHITE)
    else:  # pragma: no cover - every id in range is handled above
        raise ValueError(f"no drawing for class {c}")


@functools.lru_cache(maxsize=NUM_CLASSES)
def _template_array(class_id: int) -> np.ndarray:
    canvas = Image.new("RGBA", (_D, _D), (0, 0, 0, 0))
    _draw(check_class_id(class_id), ImageDraw.Draw(canvas))
    return np.asarray(canvas.resize((TEMPLATE_SIZE, TEMPLATE_SIZE), Image.LANCZOS))


def template(class_id: int) -> Image.Image:
    """The clean RGBA drawing of one class at TEMPLATE_SIZE px (alpha 0 outside the sign)."""
    return Image.fromarray(_template_array(int(class_id)).copy(), "RGBA")


def sheet(class_ids=range(NUM_CLASSES), columns: int = 11, size: int = 64) -> Image.Image:
    """All templates on one white sheet (a contact sheet for the README and for eyeballing)."""
    ids = list(class_ids)
    rows = math.ceil(len(ids) / columns)
    out = Image.new("RGB", (columns * (size + 4), rows * (size + 4)), (255, 255, 255))
    for i, c in enumerate(ids):
        t = template(c).resize((size, size), Image.LANCZOS)
        out.paste(t, ((i % columns) * (size + 4) + 2, (i // columns) * (size + 4) + 2), t)
    return out
