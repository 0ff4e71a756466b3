"""The network map as a picture: the person in the middle, the network around.

Positions only; `templates/_network.html` draws them. Shape and colour both say the
kind of member (circle: professional, square: service, diamond: informal helper), so
colour is never the only cue; a ring and a check mark show who is confirmed available
at discharge. The page always shows the same information as a list too.

Labels sit outside their node (to the right on the right side, to the left on the left,
above or below at the top and bottom), are cut with an ellipsis to the room they have
inside the picture, and never overlap: neighbours are staggered on two radii and any
label still in the way is shortened, then moved. Two canvases are drawn: a wide one and
a narrow, taller one with larger letters for phones (CSS shows one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dossier.portal.views import Member

NODE_RADIUS = 22
MAX_SHOWN = 12  # more members: the rest are in the list beneath
MARGIN = 6.0
CHAR_WIDTH = 0.6  # of the font size: a generous average for a bold sans-serif


@dataclass(frozen=True)
class Canvas:
    width: int
    height: int
    label_size: int
    role_size: int
    max_chars: int
    sides: bool = True  # labels beside the nodes on the left and right (else above/below)
    spread: float = 0.32  # the ring's horizontal radius, as a share of the width


WIDE = Canvas(640, 500, 17, 15, 24, spread=0.25)
NARROW = Canvas(400, 660, 22, 19, 16, sides=False, spread=0.26)


@dataclass(frozen=True)
class Node:
    x: float
    y: float
    kind: str
    available: bool
    label: str
    role: str
    points: str  # the diamond's corners (informal helpers)
    anchor: str = "middle"  # start | middle | end
    lx: float = 0.0  # where the label's anchor is
    ly: float = 0.0  # the label's baseline; the role's is one line below
    role_dy: float = 20.0

    def box(self, canvas: Canvas) -> tuple[float, float, float, float]:
        """The labels' bounding box (left, top, right, bottom), estimated."""
        width = max(text_width(self.label, canvas.label_size),
                    text_width(self.role, canvas.role_size))
        left = self.lx - (0 if self.anchor == "start" else
                          width if self.anchor == "end" else width / 2)
        top = self.ly - canvas.label_size
        bottom = self.ly + (self.role_dy + 4 if self.role else 4)
        return left, top, left + width, bottom


def text_width(text: str, size: int) -> float:
    return len(text) * size * CHAR_WIDTH


def short(text: str, limit: int) -> str:
    limit = max(limit, 2)
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def diamond(x: float, y: float, r: float) -> str:
    return f"{x:.1f},{y - r:.1f} {x + r:.1f},{y:.1f} {x:.1f},{y + r:.1f} {x - r:.1f},{y:.1f}"


def overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float],
             gap: float = 4.0) -> bool:
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def _place(member: Member, x: float, y: float, angle: float, canvas: Canvas,
           chars: int) -> Node:
    """A node with its labels outside it, cut to the room left inside the canvas."""
    reach = NODE_RADIUS + 10
    cos, sin = math.cos(angle), math.sin(angle)
    line = canvas.label_size + 3
    if cos > 0.3 and canvas.sides:
        anchor, lx, ly = "start", x + reach, y - 2
        room = canvas.width - MARGIN - lx
    elif cos < -0.3 and canvas.sides:
        anchor, lx, ly = "end", x - reach, y - 2
        room = lx - MARGIN
    else:
        anchor, lx = "middle", x
        ly = y + reach + canvas.label_size if sin >= 0 else y - reach - line
        room = 2 * min(x - MARGIN, canvas.width - MARGIN - x)
    fits = int(room / (canvas.label_size * CHAR_WIDTH))
    fits_role = int(room / (canvas.role_size * CHAR_WIDTH))
    label = short(member.name, min(chars, fits))
    role = short(", ".join(member.role_labels), min(chars + 4, fits_role))
    return Node(x, y, member.kind, member.available, label, role,
                diamond(x, y, NODE_RADIUS + 4), anchor, lx, ly, float(line))


def inside(box: tuple[float, float, float, float], canvas: Canvas) -> bool:
    return box[0] >= 0 and box[1] >= 0 and box[2] <= canvas.width and box[3] <= canvas.height


def clash(node: Node, placed: list[Node], canvas: Canvas,
          shapes: list[tuple[float, float, float, float]] = ()) -> bool:  # type: ignore[assignment]
    """Outside the picture, over a label already placed, or over a shape."""
    box = node.box(canvas)
    return not inside(box, canvas) or any(
        overlaps(box, other.box(canvas)) for other in placed) or any(
        overlaps(box, shape, 0.0) for shape in shapes)


def shifted(node: Node, dy: float) -> Node:
    return Node(node.x, node.y, node.kind, node.available, node.label, node.role,
                node.points, node.anchor, node.lx, node.ly + dy, node.role_dy)


def layout(members: list[Member], canvas: Canvas = WIDE) -> list[Node]:
    """Members on a ring around the centre (first at the top), labels without overlap."""
    shown = members[:MAX_SHOWN]
    if not shown:
        return []
    cx, cy = canvas.width / 2, canvas.height / 2
    rx = canvas.width * canvas.spread
    ry = canvas.height / 2 - NODE_RADIUS - 2 * canvas.label_size - 20
    stagger = len(shown) > 6
    spots = []
    for i in range(len(shown)):
        angle = -math.pi / 2 + 2 * math.pi * i / len(shown)
        scale = 0.72 if stagger and i % 2 else 1.0
        spots.append((angle, cx + rx * scale * math.cos(angle),
                      cy + ry * scale * math.sin(angle)))
    r = NODE_RADIUS + 6
    shapes = [(x - r, y - r, x + r, y + r) for _, x, y in spots]
    shapes.append((cx - 52, cy - 52, cx + 52, cy + 52))  # the person, in the middle
    nodes: list[Node] = []
    for member, (angle, x, y) in zip(shown, spots, strict=True):
        chars = canvas.max_chars
        node = _place(member, x, y, angle, canvas, chars)
        # shorten, then move, a label that would overlap one already placed
        while clash(node, nodes, canvas, shapes) and chars > 6:
            chars -= 2
            node = _place(member, x, y, angle, canvas, chars)
        if clash(node, nodes, canvas, shapes):
            step = canvas.label_size + 4
            moved = [shifted(node, step * k * sign) for k in range(1, 12) for sign in (1, -1)]
            node = next((m for m in moved if not clash(m, nodes, canvas, shapes)),
                        next((m for m in [node, *moved] if not clash(m, nodes, canvas)), node))
        nodes.append(node)
    return nodes
