"""Micro-benchmark of the consent decision point (issue 4): a benchmark, not a test.

Each synthetic patient has 50 provisions (grants to practitioners,
organisations and professions, exclusions, periods, purposes, a break-the-glass
refusal now and then). Times `decide`, `granted_categories`, and the per-request
cost of reading the patient's 50 Consent resources (no decision is cached, so a
request parses them every time). Baseline: the same calls with one provision per
patient (a single grant). Median of `--repeat` runs.

    /work/venv/bin/python bench/bench_consent.py [--patients 200] [--provisions 50]
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from harness import Ratio, Section, Table, median_rate, ratio_cell

from consent import (
    ACTIONS,
    CATEGORIES,
    Actor,
    Provision,
    break_glass_provision,
    decide,
    granted_categories,
    parse_consent,
    render_consent,
    validate_consent,
)

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
PROFESSIONS = ("persphysician", "persnurse", "perssocialworker", "perspsychologist")
CATS = sorted(CATEGORIES)


def sample(rng: random.Random, items: list[str], low: int, high: int) -> frozenset[str]:
    return frozenset(rng.sample(items, rng.randint(low, high)))


def provision(rng: random.Random, index: int) -> Provision:
    """A permit (80 %) or deny (20 %), half of them with a period around NOW."""
    kind = "deny" if rng.random() < 0.2 else "permit"
    grantee = rng.choice([
        f"Practitioner/p{rng.randrange(40)}",
        f"Organization/o{rng.randrange(10)}",
        f"Group/profession-{rng.choice(PROFESSIONS)}",
    ])
    start = end = None
    if rng.random() < 0.5:
        start = NOW + timedelta(days=rng.randint(-400, 10))
        end = start + timedelta(days=rng.randint(1, 500))
    least = 1 if kind == "permit" else 0
    return Provision(
        consent_id=f"c{index}",
        type="permit" if kind == "permit" else "deny",
        actors=frozenset({grantee}) if kind == "permit" or rng.random() < 0.9 else frozenset(),
        actions=sample(rng, sorted(ACTIONS), least, 2),
        categories=sample(rng, CATS, least, 3),
        start=start,
        end=end,
        purposes=frozenset({"BTG"}) if kind == "deny" and rng.random() < 0.05 else frozenset(),
        patient="Patient/bench",
    )


def actor(rng: random.Random) -> Actor:
    return Actor(
        practitioner=f"Practitioner/p{rng.randrange(40)}",
        organizations=frozenset({f"Organization/o{rng.randrange(10)}"}),
        professions=frozenset({rng.choice(PROFESSIONS)}),
    )


TITLE = "Consent (issue 4)"


def measure(patients: int, provisions: int, repeat: int) -> Section:
    rng = random.Random(20270301)
    many = [[provision(rng, i) for i in range(provisions)] for _ in range(patients)]
    many[0].append(break_glass_provision("Practitioner/p1", NOW, grant_id="bg"))
    who = [(actor(rng), sample(rng, CATS, 1, 3), rng.choice(sorted(ACTIONS)))
           for _ in range(patients * 5)]

    def requests(sets: list[list[Provision]]) -> list[tuple[list[Provision], Actor,
                                                            frozenset[str], str]]:
        return [(sets[i // 5], a, c, act) for i, (a, c, act) in enumerate(who)]

    req_many = requests(many)
    # baseline: one grant per patient, naming the requester (a permit, the full check)
    req_one = [([Provision(consent_id="c0", type="permit",
                           actors=frozenset({a.practitioner or ""}),
                           actions=frozenset(ACTIONS), categories=frozenset(CATS),
                           patient="Patient/bench")], a, c, act) for a, c, act in who]
    documents: list[list[dict[str, Any]]] = [
        [render_consent(p, "Patient/bench") for p in provs] for provs in many
    ]
    permitted = sum(bool(decide(a, p, c, act, NOW)) for p, a, c, act in req_many)

    def decide_all(reqs: list[tuple[list[Provision], Actor, frozenset[str], str]]) -> None:
        for provs, actor_, cats, act in reqs:
            decide(actor_, provs, cats, act, NOW)

    def granted_all() -> None:
        for provs, actor_, _, act in req_many:
            granted_categories(actor_, provs, act, NOW)

    def parse_all() -> None:
        for docs in documents:
            for doc in docs:
                parse_consent(doc)

    def validate_all() -> None:
        for docs in documents:
            for doc in docs:
                validate_consent(doc)

    def request_all() -> None:  # what one request costs: read 50 Consents, then decide
        for docs, (_, actor_, cats, act) in zip(documents, req_many[::5], strict=True):
            provs = [p for p in map(parse_consent, docs) if p is not None]
            decide(actor_, provs, cats, act, NOW)

    n_docs = sum(map(len, documents))
    one_rate = median_rate(len(req_one), lambda: decide_all(req_one), repeat)
    many_rate = median_rate(len(req_many), lambda: decide_all(req_many), repeat)
    request_rate = median_rate(len(documents), request_all, repeat)
    rows = [
        ("`decide`, 1 provision (baseline)", one_rate, ""),
        (f"`decide`, {provisions} provisions", many_rate, ratio_cell(one_rate / many_rate)),
        (f"`granted_categories`, {provisions} provisions",
         median_rate(len(req_many), granted_all, repeat), ""),
        ("`validate_consent` (1 Consent)", median_rate(n_docs, validate_all, repeat), ""),
        ("`parse_consent` (1 Consent)", median_rate(n_docs, parse_all, repeat), ""),
        (f"parse {provisions} Consents + `decide` (1 request)", request_rate,
         ratio_cell(many_rate / request_rate) + f" of `decide`, {provisions} provisions"),
    ]
    table = Table(["operation", "per second", "µs per call", "time / baseline"],
                  left=1, title=f"Decision point, pure Python: {patients} patients × {provisions} "
                        f"provisions, {len(req_many)} requests ({permitted} permitted)")
    for name, rate, ratio in rows:
        table.add(name, rate, 1e6 / rate, ratio)
    section = Section(TITLE, "", [table])
    section.ratios += [
        Ratio(TITLE, f"`decide` with {provisions} provisions", f"{provisions} provisions",
              "1 provision", one_rate / many_rate),
        Ratio(TITLE, f"parse {provisions} Consents + `decide` (what a request does per "
              "dossier)", "parse + decide", "`decide` on parsed provisions",
              many_rate / request_rate),
    ]
    return section


def main(argv: list[str] | None = None) -> Section:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--provisions", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    section = measure(args.patients, args.provisions, args.repeat)
    print(section.markdown())
    return section


if __name__ == "__main__":
    main()
