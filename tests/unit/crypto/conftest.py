"""Fixtures: a real SoftHSM2 token per test session, and every key provider behind one fixture.

The PKCS#11 tests need Debian's softhsm2 (``apt-get install -y softhsm2``); they
are skipped only when /usr/lib/softhsm/libsofthsm2.so is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dossier.crypto import KeyProvider, LocalFileKeyProvider, Pkcs11KeyProvider

SOFTHSM_LIB = Path("/usr/lib/softhsm/libsofthsm2.so")


@dataclass(frozen=True)
class HsmToken:
    lib_path: str
    label: str
    pin: str


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HsmToken]:
    """A SoftHSM2 token initialised in a temporary directory for this test session."""
    if not SOFTHSM_LIB.exists():
        pytest.skip("PKCS#11 tests need softhsm2: apt-get install -y softhsm2")
    util = shutil.which("softhsm2-util")
    assert util is not None, "softhsm2 is installed but softhsm2-util is not on PATH"
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\n"
        "objectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
    )
    token = HsmToken(lib_path=str(SOFTHSM_LIB), label="dossier-test", pin="1234")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # must be set before the library initialises
    try:
        subprocess.run(
            [util, "--init-token", "--free", "--label", token.label,
             "--pin", token.pin, "--so-pin", "5678"],
            check=True, capture_output=True,
        )
        import pkcs11

        if token.lib_path in pkcs11._loaded:  # loaded earlier with another SOFTHSM2_CONF
            pkcs11.lib(token.lib_path).reinitialize()  # SoftHSM reads it in C_Initialize
        yield token
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


ProviderFactory = Callable[[], KeyProvider]


@pytest.fixture(params=["local", "pkcs11"])
def provider_factory(request: pytest.FixtureRequest,
                     tmp_path: Path) -> Iterator[ProviderFactory]:
    """Builds providers over one key store (a key directory, or a key label on the token)."""
    made: list[KeyProvider] = []
    if request.param == "local":
        def make() -> KeyProvider:
            made.append(LocalFileKeyProvider(tmp_path))
            return made[-1]
    else:
        token: HsmToken = request.getfixturevalue("softhsm_token")
        key_label = f"kek-{uuid.uuid4().hex[:12]}"  # a fresh key store on the shared token

        def make() -> KeyProvider:
            made.append(Pkcs11KeyProvider(token.lib_path, token.label, token.pin,
                                          key_label=key_label))
            return made[-1]
    yield make
    for provider in made:
        provider.close()


@pytest.fixture
def provider(provider_factory: ProviderFactory) -> KeyProvider:
    return provider_factory()
