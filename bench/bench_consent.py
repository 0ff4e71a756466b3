"""Micro-benchmark of the consent decision point: a benchmark, not a test.

Each synthetic patient has 50 provisions (grants to practitioners,
organisations and professions, exclusions, periods, purposes, a break-the-glass
refusal now and then). Times `decide`, `granted_categories`, and the per-request
cost of reading the patient's 50 Consent resources (no decision is cached, so a
request parses them every time). Prints a markdown table (best of 5 runs).

    /work/venv/bin/python bench/bench_consent.py [--patients 200] [--provisions 50]
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

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


def best_rate(calls: int, run: Callable[[], object], repeat: int = 5) -> float:
    """Calls per second of the fastest of `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return calls / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--provisions", type=int, default=50)
    args = parser.parse_args()
    rng = random.Random(20270301)

    patients = [
        [provision(rng, i) for i in range(args.provisions)] for _ in range(args.patients)
    ]
    patients[0].append(break_glass_provision("Practitioner/p1", NOW, grant_id="bg"))
    requests: list[tuple[list[Provision], Actor, frozenset[str], str]] = [
        (provs, actor(rng), sample(rng, CATS, 1, 3), rng.choice(sorted(ACTIONS)))
        for provs in patients for _ in range(5)
    ]
    documents: list[list[dict[str, Any]]] = [
        [render_consent(p, "Patient/bench") for p in provs] for provs in patients
    ]
    permitted = sum(bool(decide(a, p, c, act, NOW)) for p, a, c, act in requests)

    def decide_all() -> None:
        for provs, who, cats, act in requests:
            decide(who, provs, cats, act, NOW)

    def granted_all() -> None:
        for provs, who, _, act in requests:
            granted_categories(who, provs, act, NOW)

    def parse_all() -> None:
        for docs in documents:
            for doc in docs:
                parse_consent(doc)

    def validate_all() -> None:
        for docs in documents:
            for doc in docs:
                validate_consent(doc)

    def request_all() -> None:  # what one request costs: read 50 Consents, then decide
        for docs, (_, who, cats, act) in zip(documents, requests[::5], strict=True):
            provs = [p for p in map(parse_consent, docs) if p is not None]
            decide(who, provs, cats, act, NOW)

    n_docs = sum(map(len, documents))
    rows = [
        ("`decide` (50 provisions)", best_rate(len(requests), decide_all)),
        ("`granted_categories` (50 provisions)", best_rate(len(requests), granted_all)),
        ("`validate_consent` (1 Consent)", best_rate(n_docs, validate_all)),
        ("`parse_consent` (1 Consent)", best_rate(n_docs, parse_all)),
        ("parse 50 Consents + `decide` (1 request)", best_rate(len(documents), request_all)),
    ]
    print(f"Python {platform.python_version()} on {platform.machine()}, "
          f"{args.patients} patients x {args.provisions} provisions, "
          f"{len(requests)} requests ({permitted} permitted)\n")
    print("| operation | per second | µs per call |")
    print("|---|---:|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} | {1e6 / rate:,.1f} |")


if __name__ == "__main__":
    main()
