"""Field encryption on reads (issue 5): Patient reads with the sealer as shipped against
the same reads from an app that stores everything in clear.

Baseline: a second app on the same database whose `runtime.sealer` returns
bench/clear_sealer.ClearSealer (no data key, no cipher, no blind index). Each app wrote
its own Patients (same shape: the six sealed elements filled in), each set granted to its
own reader, so each app reads only rows it wrote (checked: sealed rows have ciphertexts,
clear rows none). Control: the shipped app reading the clear rows (no ciphertext, so
FieldSealer has nothing to open) shows how far two app instances differ by themselves.

    /work/venv/bin/python bench/bench_reads.py [--quick] [--database sqlite|postgres|both]
"""

from __future__ import annotations

from collections.abc import Callable

from harness import Ratio, Section, Size, Table, interleave, paired_ratio, ratio_cell
from sqlalchemy import select
from sqlalchemy.orm import Session
from world import Dossier, Site, World, standalone

from dossier.db.models import resources

TITLE = "Encryption (issue 5)"
# the shipped app reading the clear rows: shows how much two app instances differ by
# themselves (FieldSealer.open returns a row without ciphertexts as it is)
CONTROL = "clear, read by the shipped app (control)"


def sealed_count(site: Site, dossiers: list[Dossier]) -> int:
    """How many of these Patients are stored with ciphertexts."""
    ids = [d.patient_id for d in dossiers]
    with Session(site.runtime.engine) as session:
        rows = session.execute(select(resources.c.sealed).where(
            resources.c.res_type == "Patient", resources.c.res_id.in_(ids))).scalars()
        return sum(1 for sealed in rows if sealed)


def measure(w: World, size: Size) -> Section:
    if sealed_count(w.main, w.sealed_dossiers) != len(w.sealed_dossiers) or \
            sealed_count(w.main, w.clear_dossiers) != 0:
        raise RuntimeError("the sealed and clear Patients are not what they claim")
    sides: dict[str, tuple[Site, dict[str, str], list[Dossier]]] = {
        "clear (baseline)": (w.clear, w.clear.auth("practitioner", w.clear_reader),
                             w.clear_dossiers),
        CONTROL: (w.main, w.main.auth("practitioner", w.clear_reader), w.clear_dossiers),
        "sealed": (w.main, w.main.auth("practitioner", w.sealed_reader), w.sealed_dossiers),
    }
    page = min(50, size.readers)
    queries: dict[str, Callable[[list[Dossier], int], str]] = {
        "`GET /fhir/Patient/{id}`": lambda ds, i: f"/fhir/Patient/{ds[i % len(ds)].patient_id}",
        f"`GET /fhir/Patient?_count={page}` ({page} Patients)":
            lambda ds, i: f"/fhir/Patient?_count={page}",
    }
    table = Table(["read", "storage", "requests/s", "p50 ms", "p95 ms", "sealed / clear"],
                  title=f"{w.kind}: {size.readers} Patients per side, each with 6 sealed "
                        "elements")
    section = Section(TITLE, "")
    for label, path in queries.items():
        def request(site: Site, headers: dict[str, str], ds: list[Dossier],
                    path: Callable[[list[Dossier], int], str] = path) -> Callable[[int], None]:
            return lambda k: site.get(headers, path(ds, k))

        for site, headers, ds in sides.values():  # both answer, with the clear names
            body = site.get(headers, path(ds, 0)).json()
            first = body["entry"][0]["resource"] if "entry" in body else body
            if "name" not in first:
                raise RuntimeError(f"{label}: no name in the answer")
        samples = interleave({name: request(*side) for name, side in sides.items()},
                             rounds=size.rounds, per_round=size.per_round)
        base, subject = samples["clear (baseline)"], samples["sealed"]
        value = paired_ratio(base, subject)
        control = paired_ratio(base, samples[CONTROL])
        for name, s in samples.items():
            mark = ratio_cell(value) if s is subject else \
                f"{control:.2f} ×" if name == CONTROL else ""
            table.add(label, name, s.rate, s.p(50), s.p(95), mark)
        section.ratios.append(Ratio(TITLE, f"{label}, {w.kind}", "sealed", "clear", value))
    section.tables.append(table)
    return section


def main(argv: list[str] | None = None) -> Section:
    section: Section = standalone(measure, argv, __doc__ or "")
    return section


if __name__ == "__main__":
    main()
