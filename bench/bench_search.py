"""Consent on search (issue 4): a practitioner's searches with the consent policy against
the same searches with enforcement off, on the same database and the same rows.

Baseline: a second app on the same database whose Runtime builds
`dossier.core.repository.OpenPolicy()` for every request (`runtime.policy_factory = lambda
session, ctx: OpenPolicy()`); everything else (token check, audit, sealing) is the same.
Every dossier grants the GP, so both answer the same Bundles (checked before timing).

    /work/venv/bin/python bench/bench_search.py [--quick] [--database sqlite|postgres|both]
"""

from __future__ import annotations

from collections.abc import Callable

from harness import Ratio, Section, Size, Table, interleave, paired_ratio, ratio_cell
from world import Site, World, standalone

from dossier.core.repository import OpenPolicy

TITLE = "Consent (issue 4)"


def open_policy(runtime: object) -> None:
    runtime.policy_factory = lambda session, ctx: OpenPolicy()  # type: ignore[attr-defined]


def measure(w: World, size: Size) -> Section:
    open_site = w.site(open_policy)
    sites: dict[str, tuple[Site, dict[str, str]]] = {
        "open policy (baseline)": (open_site, open_site.auth("practitioner", w.gp)),
        "consent policy": (w.main, w.main.auth("practitioner", w.gp)),
    }
    n = len(w.dossiers)
    queries: dict[str, Callable[[int], str]] = {
        "`GET /fhir/Task?patient=…`":
            lambda i: f"/fhir/Task?patient={w.dossiers[i % n].patient_id}",
        "`GET /fhir/Task?status=in-progress&_count=50`":
            lambda i: "/fhir/Task?status=in-progress&_count=50",
    }
    table = Table(["search", "policy", "requests/s", "p50 ms", "p95 ms", "consent / open"],
                  title=f"{w.kind}: GP granted by {n} dossiers of {size.tasks} Tasks each")
    section = Section(TITLE, "")
    for label, path in queries.items():
        for i in range(min(n, 5)):  # same answers, or the comparison means nothing
            totals = {s.get(h, path(i)).json()["total"] for s, h in sites.values()}
            if len(totals) != 1 or 0 in totals:
                raise RuntimeError(f"{label}: the two policies disagree ({totals})")

        def request(site: Site, headers: dict[str, str],
                    path: Callable[[int], str] = path) -> Callable[[int], None]:
            return lambda k: site.get(headers, path(k))

        samples = interleave({name: request(*sh) for name, sh in sites.items()},
                             rounds=size.rounds, per_round=size.per_round)
        base, subject = samples["open policy (baseline)"], samples["consent policy"]
        value = paired_ratio(base, subject)
        for name, s in samples.items():
            table.add(label, name, s.rate, s.p(50), s.p(95),
                      ratio_cell(value) if s is subject else "")
        section.ratios.append(Ratio(TITLE, f"{label}, {w.kind}, {n} granting dossiers",
                                    "consent policy", "open policy", value))
    section.tables.append(table)
    return section


def main(argv: list[str] | None = None) -> Section:
    section: Section = standalone(measure, argv, __doc__ or "")
    return section


if __name__ == "__main__":
    main()
