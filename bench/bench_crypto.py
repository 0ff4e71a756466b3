"""Field-encryption cost per Patient (issue 5): a benchmark, not a test.

Run: /work/venv/bin/python bench/bench_crypto.py [--repeat 7]
Prints a markdown table (median of the timed runs). Baseline: json.loads of the same
Patient stored plain. If SoftHSM2 is installed, the PKCS#11 unwrap is measured on a
throwaway token.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from harness import Ratio, Section, Table, median_us, ratio_cell

from dossier.crypto import FieldCipher, LocalFileKeyProvider, Pkcs11KeyProvider, blind_index
from schemas import encrypted_elements

PATHS = list(encrypted_elements("Patient"))
CTX: dict[str, Any] = {"patient_id": "a1b2c3", "resource_type": "Patient",
                       "resource_id": "a1b2c3", "version": "7"}
PATIENT: dict[str, Any] = {
    "resourceType": "Patient", "id": "a1b2c3",
    "meta": {"versionId": "7", "lastUpdated": "2027-03-01T10:00:00+01:00",
             "security": [{"system": "https://dossier.brussels/fhir/CodeSystem/dossier-category",
                           "code": "identity"}]},
    "identifier": [{"system": "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin",
                    "value": "85073003328"}],
    "active": True,
    "name": [{"use": "official", "family": "Vandenberghe", "given": ["Marie-Claire", "Anne"]}],
    "telecom": [{"system": "phone", "value": "+32470123456", "use": "mobile"},
                {"system": "email", "value": "m.vandenberghe@example.be"}],
    "gender": "female",
    "birthDate": "1948-11-23",
    "address": [{"use": "home", "line": ["Rue de la Victoire 112", "boîte 3"],
                 "city": "Saint-Gilles", "postalCode": "1060", "country": "BE"}],
    "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "fr"}]}}],
}


TITLE = "Encryption (issue 5)"


def softhsm_provider(workdir: Path) -> Pkcs11KeyProvider | None:
    lib = "/usr/lib/softhsm/libsofthsm2.so"
    util = shutil.which("softhsm2-util")
    if not (Path(lib).exists() and util):
        return None
    (workdir / "tokens").mkdir()
    conf = workdir / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {workdir / 'tokens'}\n"
                    "objectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    argv = [util, "--init-token", "--free", "--label", "bench", "--pin", "1234", "--so-pin", "5678"]
    subprocess.run(argv, check=True, capture_output=True)
    return Pkcs11KeyProvider(lib, "bench", "1234")


def measure(repeat: int) -> Section:
    with tempfile.TemporaryDirectory() as tmp:
        local = LocalFileKeyProvider(Path(tmp) / "data")
        cipher = FieldCipher(local)
        dek, stored = cipher.new_data_key()
        clear, sealed = cipher.seal(PATIENT, PATHS, dek, **CTX)
        plain_json = json.dumps(PATIENT)
        stored_json = json.dumps({"content": clear, "sealed": sealed})
        index_key = local.blind_index_key()

        def seal_open() -> object:
            c, s = cipher.seal(PATIENT, PATHS, dek, **CTX)
            return cipher.open(c, s, dek, **CTX)

        def loads_open() -> object:
            row = json.loads(stored_json)
            return cipher.open(row["content"], row["sealed"], dek, **CTX)

        def local_unwrap() -> object:
            return local.unwrap(stored.kek_id, stored.wrapped)

        n = 2000

        def us(fn: Any, number: int) -> float:
            return median_us(fn, number, repeat)

        rows: list[tuple[str, float]] = [
            (f"seal ({len(PATHS)} elements)",
             us(lambda: cipher.seal(PATIENT, PATHS, dek, **CTX), n)),
            (f"open ({len(PATHS)} elements)",
             us(lambda: cipher.open(clear, sealed, dek, **CTX), n)),
            ("seal + open per Patient", us(seal_open, n)),
            ("json.dumps + json.loads (plain Patient)",
             us(lambda: json.loads(json.dumps(PATIENT)), n)),
            ("json.loads (plain stored Patient)", us(lambda: json.loads(plain_json), n)),
            ("json.loads + open (sealed stored Patient)", us(loads_open, n)),
            ("blind_index (one identifier)",
             us(lambda: blind_index(index_key, "urn:x", "85073003328"), n)),
            ("unwrap DEK, local key file (once per patient per request)",
             us(local_unwrap, 2000)),
        ]
        hsm = softhsm_provider(Path(tmp))
        if hsm is not None:
            with hsm:
                kek_id, wrapped = hsm.wrap(dek)
                rows.append(("unwrap DEK, PKCS#11 SoftHSM2 (once per patient per request)",
                             us(lambda: hsm.unwrap(kek_id, wrapped), 500)))

    t = dict(rows)
    # (subject, its baseline) pairs for the last column
    pairs = {"seal + open per Patient": "json.dumps + json.loads (plain Patient)",
             "json.loads + open (sealed stored Patient)": "json.loads (plain stored Patient)"}
    baselines = set(pairs.values())
    table = Table(["operation", "µs per call", "time / baseline"],
                  left=1, title=f"Per Patient, no database: {len(plain_json)} bytes of JSON, "
                        f"{len(PATHS)} sealed elements, {len(stored_json)} bytes stored sealed")
    section = Section(TITLE, "", [table])
    for name, value in rows:
        mark = "(baseline)" if name in baselines else ""
        if name in pairs:
            mark = ratio_cell(value / t[pairs[name]])
            section.ratios.append(Ratio(TITLE, f"{name}, no database", name, pairs[name],
                                        value / t[pairs[name]]))
        table.add(name, value, mark)
    return section


def main(argv: list[str] | None = None) -> Section:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    section = measure(parser.parse_args(argv).repeat)
    print(section.markdown())
    return section


if __name__ == "__main__":
    main()
