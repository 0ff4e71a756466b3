"""Field-encryption cost per Patient: a benchmark, not a test.

Run: /work/venv/bin/python bench/bench_crypto.py
Prints a markdown table (best of 7 timed runs) for docs/encryption.md.
If SoftHSM2 is installed, the PKCS#11 unwrap is measured on a throwaway token.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def per_call_us(fn: Callable[[], object], number: int) -> float:
    """Best of 7 runs of the time per call, in microseconds (the least disturbed run)."""
    runs = timeit.repeat(fn, number=number, repeat=7)
    return min(runs) / number * 1e6


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
    subprocess.run(argv, check=True, capture_output=True)  # noqa: S603 - fixed argv, no shell
    return Pkcs11KeyProvider(lib, "bench", "1234")


def main() -> None:
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

        n = 5000
        rows: list[tuple[str, float]] = [
            (f"seal ({len(PATHS)} elements)",
             per_call_us(lambda: cipher.seal(PATIENT, PATHS, dek, **CTX), n)),
            (f"open ({len(PATHS)} elements)",
             per_call_us(lambda: cipher.open(clear, sealed, dek, **CTX), n)),
            ("seal + open per Patient", per_call_us(seal_open, n)),
            ("json.loads (plain stored Patient)", per_call_us(lambda: json.loads(plain_json), n)),
            ("json.loads + open (sealed stored Patient)", per_call_us(loads_open, n)),
            ("blind_index (one identifier)",
             per_call_us(lambda: blind_index(index_key, "urn:x", "85073003328"), n)),
            ("unwrap DEK, local key file (once per patient per request)",
             per_call_us(local_unwrap, 2000)),
        ]
        hsm = softhsm_provider(Path(tmp))
        if hsm is not None:
            with hsm:
                kek_id, wrapped = hsm.wrap(dek)
                rows.append(("unwrap DEK, PKCS#11 SoftHSM2 (once per patient per request)",
                             per_call_us(lambda: hsm.unwrap(kek_id, wrapped), 500)))

    timings = dict(rows)
    ratio = timings["json.loads + open (sealed stored Patient)"] / timings[
        "json.loads (plain stored Patient)"]
    print(f"Patient: {len(plain_json)} bytes of JSON, {len(PATHS)} sealed elements, "
          f"{len(stored_json)} bytes stored sealed\n")
    print("| operation | µs per call |")
    print("|---|---:|")
    for name, us in rows:
        print(f"| {name} | {us:.1f} |")
    print(f"| **ratio (json.loads + open) / json.loads** | **{ratio:.1f} x** |")


if __name__ == "__main__":
    main()
