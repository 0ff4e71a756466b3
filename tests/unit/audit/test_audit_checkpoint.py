"""Checkpoints and signed tree heads: exact format, round trips, tampering, keys."""

from __future__ import annotations

import base64
import stat
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jwk import OKPKey

from audit.checkpoint import (
    Checkpoint,
    Ed25519FileSigner,
    jwk_thumbprint,
    public_jwk,
    public_key_from_jwk,
    tree_head_json,
    verify_tree_head,
)
from audit.errors import (
    BadSignatureError,
    MalformedTreeHeadError,
    OriginMismatchError,
    SigningKeyError,
)
from tests.unit.audit.audit_vectors import ROOTS

ORIGIN = "dossier.brussels/audit"
NOW = datetime(2027, 3, 1, 10, 30, 15, 999, tzinfo=ZoneInfo("Europe/Brussels"))
SIGNER = Ed25519FileSigner(Ed25519PrivateKey.generate())
JWK = public_jwk(SIGNER.public_key())


def head(size: int = 8, root: bytes = ROOTS[7]) -> dict[str, object]:
    return dict(tree_head_json(Checkpoint(ORIGIN, size, root), SIGNER, NOW))


def test_checkpoint_text_is_three_newline_terminated_lines() -> None:
    text = Checkpoint(ORIGIN, 8, ROOTS[7]).text()
    assert text == "dossier.brussels/audit\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"


def test_tree_head_fields() -> None:
    body = head()
    assert set(body) == {"tree_size", "root_hash", "timestamp", "checkpoint", "signature"}
    assert body["tree_size"] == 8
    assert body["root_hash"] == base64.b64encode(ROOTS[7]).decode()
    assert body["timestamp"] == "2027-03-01T09:30:15Z"
    assert body["checkpoint"] == Checkpoint(ORIGIN, 8, ROOTS[7]).text()


def test_signature_is_plain_ed25519_over_the_checkpoint_bytes() -> None:
    body = head()
    signature = base64.b64decode(str(body["signature"]))
    SIGNER.public_key().verify(signature, str(body["checkpoint"]).encode("utf-8"))


def test_round_trip_returns_the_checkpoint() -> None:
    assert verify_tree_head(head(), JWK, origin=ORIGIN) == Checkpoint(ORIGIN, 8, ROOTS[7])


@settings(max_examples=250, deadline=None)
@given(
    origin=st.text(
        st.characters(codec="utf-8", exclude_categories=("Z", "C"), exclude_characters="+"),
        min_size=1,
        max_size=40,
    ),
    size=st.integers(0, 2**64),
    root=st.binary(min_size=32, max_size=32),
)
def test_checkpoint_round_trips(origin: str, size: int, root: bytes) -> None:
    checkpoint = Checkpoint(origin, size, root)
    assert Checkpoint.parse(checkpoint.text()) == checkpoint
    assert verify_tree_head(tree_head_json(checkpoint, SIGNER, NOW), JWK) == checkpoint


def resign_free(body: dict[str, object], **changes: object) -> dict[str, object]:
    """A tampered copy that keeps the original signature."""
    return body | changes


def test_signature_over_a_changed_size_fails() -> None:
    body = head()
    forged = resign_free(body, checkpoint=Checkpoint(ORIGIN, 9, ROOTS[7]).text(), tree_size=9)
    with pytest.raises(BadSignatureError):
        verify_tree_head(forged, JWK)


@given(st.integers(0, 2**64).filter(lambda n: n != 8))
def test_signature_never_covers_another_size(size: int) -> None:
    forged = head() | {"checkpoint": Checkpoint(ORIGIN, size, ROOTS[7]).text(), "tree_size": size}
    with pytest.raises(BadSignatureError):
        verify_tree_head(forged, JWK)


def test_signature_over_a_changed_root_fails() -> None:
    body = head()
    forged = resign_free(
        body,
        checkpoint=Checkpoint(ORIGIN, 8, ROOTS[6]).text(),
        root_hash=base64.b64encode(ROOTS[6]).decode(),
    )
    with pytest.raises(BadSignatureError):
        verify_tree_head(forged, JWK)


def test_flipped_signature_bit_fails() -> None:
    body = head()
    signature = bytearray(base64.b64decode(str(body["signature"])))
    signature[10] ^= 1
    with pytest.raises(BadSignatureError):
        verify_tree_head(body | {"signature": base64.b64encode(signature).decode()}, JWK)


def test_other_key_fails() -> None:
    other = public_jwk(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(BadSignatureError):
        verify_tree_head(head(), other)


@pytest.mark.parametrize(
    "change",
    [
        {"tree_size": 9},
        {"tree_size": True},
        {"tree_size": "8"},
        {"root_hash": base64.b64encode(ROOTS[6]).decode()},
        {"timestamp": "2027-03-01T10:30:15+01:00"},
        {"timestamp": None},
        {"signature": "AAAA"},
        {"signature": "not base64"},
        {"signature": None},
        {"checkpoint": None},
    ],
)
def test_unsigned_fields_must_agree_and_be_well_formed(change: dict[str, object]) -> None:
    with pytest.raises(MalformedTreeHeadError):
        verify_tree_head(head() | change, JWK)


def test_other_origin_is_rejected() -> None:
    with pytest.raises(OriginMismatchError):
        verify_tree_head(head(), JWK, origin="elsewhere.example/log")


ROOT_B64 = base64.b64encode(ROOTS[7]).decode()
URLSAFE_ROOT_B64 = base64.urlsafe_b64encode(bytes([0xFB, 0xFF]) * 16).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"{ORIGIN}\n8\n{ROOT_B64}",  # last newline missing
        f"{ORIGIN}\n8\n{ROOT_B64}\n\n",
        f"{ORIGIN}\n8\n{ROOT_B64}\nextension\n",
        f"{ORIGIN}\n08\n{ROOT_B64}\n",
        f"{ORIGIN}\n+8\n{ROOT_B64}\n",
        f"{ORIGIN}\n-1\n{ROOT_B64}\n",
        f"{ORIGIN}\n\u0668\n{ROOT_B64}\n",  # Arabic-Indic digit eight
        f"{ORIGIN}\n8\n{URLSAFE_ROOT_B64}\n",  # base64url alphabet
        f"{ORIGIN}\n8\n{base64.b64encode(ROOTS[7][:31]).decode()}\n",
        f"\n8\n{ROOT_B64}\n",
        f"dossier brussels\n8\n{ROOT_B64}\n",
        f"{ORIGIN}\r\n8\n{ROOT_B64}\n",
    ],
)
def test_malformed_checkpoints_are_rejected(text: str) -> None:
    with pytest.raises(MalformedTreeHeadError):
        Checkpoint.parse(text)


def test_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        tree_head_json(Checkpoint(ORIGIN, 8, ROOTS[7]), SIGNER, datetime(2027, 3, 1))


def test_utc_clock_is_rendered_with_z() -> None:
    body = tree_head_json(Checkpoint(ORIGIN, 0, ROOTS[0]), SIGNER, datetime(2027, 1, 2, tzinfo=UTC))
    assert body["timestamp"] == "2027-01-02T00:00:00Z"


# Keys ----------------------------------------------------------------------------------


def test_thumbprint_matches_rfc8037_example() -> None:
    # RFC 8037 Appendix A.3
    assert (
        jwk_thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
        == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    )


def test_public_jwk_is_an_okp_key_with_its_thumbprint_as_kid() -> None:
    assert JWK["kty"] == "OKP"
    assert JWK["crv"] == "Ed25519"
    assert "d" not in JWK
    imported = OKPKey.import_key({k: JWK[k] for k in ("kty", "crv", "x")})
    assert JWK["kid"] == imported.thumbprint()
    raw = SIGNER.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert public_key_from_jwk(JWK).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ) == raw


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "EC", "crv": "P-256", "x": "AAAA"},
        {"kty": "OKP", "crv": "X25519", "x": JWK["x"]},
        {"kty": "OKP", "crv": "Ed25519"},
        {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
        {"kty": "OKP", "crv": "Ed25519", "x": JWK["x"] + "="},
        {**JWK, "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"},
    ],
)
def test_bad_jwks_are_rejected(jwk: dict[str, str]) -> None:
    with pytest.raises(MalformedTreeHeadError):
        public_key_from_jwk(jwk)


def test_file_signer_creates_a_private_pem_key_and_reloads_it(tmp_path: Path) -> None:
    key_path = tmp_path / "keys" / "audit-signing.pem"
    first = Ed25519FileSigner.load_or_create(key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in key_path.parent.iterdir()] == ["audit-signing.pem"]
    second = Ed25519FileSigner.load_or_create(key_path)
    assert public_jwk(second.public_key()) == public_jwk(first.public_key())
    body = tree_head_json(Checkpoint(ORIGIN, 8, ROOTS[7]), first, NOW)
    verify_tree_head(body, public_jwk(second.public_key()))


def test_file_signer_refuses_other_keys(tmp_path: Path) -> None:
    ec_path = tmp_path / "ec.pem"
    ec_path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(SigningKeyError, match="Ed25519"):
        Ed25519FileSigner.load_or_create(ec_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(SigningKeyError, match="cannot load"):
        Ed25519FileSigner.load_or_create(junk)
