from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dossier.cli import main
from dossier.settings import SettingsError, ensure_data_dir, load_settings


def test_defaults_are_the_embedded_default(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path)
    assert s.embedded
    assert s.sqlalchemy_url.startswith("sqlite:///")
    assert s.host == "127.0.0.1"


@pytest.mark.parametrize(("overrides", "needle"), [
    ({"database_url": "mysql://x"}, "DATABASE_URL"),
    ({"port": 0}, "port"),
    ({"port": 70000}, "port"),
    ({"otel_exporter": "otlp"}, "DOSSIER_OTEL_ENDPOINT"),
    ({"otel_exporter": "zipkin"}, "otel_exporter"),
    ({"page_size_default": 500, "page_size_max": 100}, "page_size_default"),
    ({"base_url": "ftp://x"}, "base_url"),
    ({"key_provider": "pkcs11"}, "PKCS11"),
    ({"oidc_issuer": "https://idp.example"}, "DOSSIER_OIDC_AUDIENCE"),
])
def test_each_bad_value_gets_a_clear_message(tmp_path: Path, overrides: dict[str, object],
                                             needle: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(data_dir=tmp_path, **overrides)
    assert needle in str(err.value)


def test_bad_environment_value_is_reported_by_the_cli(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", "oracle://secret@db")
    assert main(["db", "upgrade", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "DATABASE_URL" in err and "secret" not in err


def test_data_dir_is_created_private(tmp_path: Path) -> None:
    target = tmp_path / "new" / "data"
    ensure_data_dir(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700


def test_db_upgrade_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # before the upgrade: a plain error that says what to do, no traceback
    assert main(["db", "check", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "dossier db upgrade" in err and "Traceback" not in err
    assert main(["db", "upgrade", "--data-dir", str(tmp_path)]) == 0
    assert main(["db", "check", "--data-dir", str(tmp_path)]) == 0
    assert (tmp_path / "dossier.sqlite3").exists()
