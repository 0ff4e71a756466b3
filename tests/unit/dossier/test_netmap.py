"""The network map's layout (issue 19): labels never overlap, stay inside the picture,
and a cut label ends with an ellipsis; on both canvases (wide and phone)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dossier.portal.netmap import MAX_SHOWN, NARROW, WIDE, Canvas, layout, overlaps
from dossier.portal.views import Member

KINDS = ("professional", "service", "informal")
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ÉéèLJWT", min_size=1, max_size=60)
members = st.lists(st.tuples(names, names, st.sampled_from(KINDS), st.booleans()),
                   min_size=1, max_size=MAX_SHOWN + 3)


def build(rows: list[tuple[str, str, str, bool]]) -> list[Member]:
    return [Member(f"Practitioner/{i}", name.strip() or "x", [role], [role.strip() or "r"],
                   kind, available) for i, (name, role, kind, available) in enumerate(rows)]


def check(canvas: Canvas, rows: list[tuple[str, str, str, bool]]) -> None:
    team = build(rows)
    nodes = layout(team, canvas)
    assert len(nodes) == min(len(team), MAX_SHOWN)
    boxes = [n.box(canvas) for n in nodes]
    for i, a in enumerate(boxes):
        assert a[0] >= 0 and a[2] <= canvas.width, "a label leaves the picture sideways"
        assert a[1] >= 0 and a[3] <= canvas.height, "a label leaves the picture"
        for b in boxes[i + 1:]:
            assert not overlaps(a, b, gap=0.0), "two labels overlap"
    for node, member in zip(nodes, team, strict=False):
        if node.label != member.name:
            assert node.label.endswith("…")


@settings(max_examples=150, deadline=None)
@given(members)
def test_wide_map_labels_never_overlap(rows: list[tuple[str, str, str, bool]]) -> None:
    check(WIDE, rows)


@settings(max_examples=150, deadline=None)
@given(members)
def test_phone_map_labels_never_overlap(rows: list[tuple[str, str, str, bool]]) -> None:
    check(NARROW, rows)


def test_the_reported_collision_is_gone() -> None:
    team = build([("Jan Wouters", "Thuisverpleegkundige", "professional", True),
                  ("Thuisverpleegkundige", "Thuisverpleegkundige", "professional", False),
                  ("CPAS de Saint-Gilles", "Maatschappelijk werker", "service", False),
                  ("Marc Peeters", "Buurman", "informal", False)])
    nodes = layout(team, WIDE)
    boxes = [n.box(WIDE) for n in nodes]
    assert not any(overlaps(a, b, 0.0) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert nodes[0].label == "Jan Wouters"
