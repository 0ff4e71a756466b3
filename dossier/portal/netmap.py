"""The network map as a picture: the person in the middle, the network around.

Positions only; `templates/_netmap.svg.html` draws them. Shape and colour both say the
kind of member (circle: professional, square: service, diamond: informal helper), so
colour is never the only cue; a ring and a check mark show who is confirmed available
at discharge. The page always shows the same information as a list too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dossier.portal.views import Member

WIDTH = 640
HEIGHT = 500
NODE_RADIUS = 22
LABEL_CHARS = 20
PER_RING = 10


@dataclass(frozen=True)
class Node:
    x: float
    y: float
    kind: str
    available: bool
    label: str
    role: str
    points: str  # the diamond's corners (informal helpers)


def short(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def diamond(x: float, y: float, r: float) -> str:
    return f"{x:.1f},{y - r:.1f} {x + r:.1f},{y:.1f} {x:.1f},{y + r:.1f} {x - r:.1f},{y:.1f}"


def layout(members: list[Member]) -> list[Node]:
    """Members on one or two rings around the centre, first ones at the top."""
    cx, cy = WIDTH / 2, HEIGHT / 2
    nodes: list[Node] = []
    rings = [members[:PER_RING], members[PER_RING:2 * PER_RING]]
    for ring_no, ring in enumerate(rings):
        if not ring:
            continue
        radius = (HEIGHT / 2 - 80) * (1.0 if ring_no == 0 else 0.55)
        offset = 0.0 if ring_no == 0 else math.pi / len(ring)
        for i, member in enumerate(ring):
            angle = -math.pi / 2 + offset + 2 * math.pi * i / len(ring)
            x = cx + radius * math.cos(angle) * 1.2
            y = cy + radius * math.sin(angle)
            nodes.append(Node(x, y, member.kind, member.available, short(member.name),
                              short(", ".join(member.role_labels)),
                              diamond(x, y, NODE_RADIUS + 4)))
    return nodes
