"""One settings object: defaults, a YAML file, environment variables on top."""

from __future__ import annotations

import pydantic
import pytest

from twinmesh.core.settings import load_settings


def test_defaults_need_no_file_and_no_server(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for key in list(__import__("os").environ):
        if key.startswith("TWINMESH_"):
            monkeypatch.delenv(key)
    settings = load_settings()
    assert settings.stac.backend == "embedded"
    assert settings.stac.base_url() == "http://127.0.0.1:8081"
    assert settings.resolved_store_url == str((tmp_path / ".twinmesh" / "store").resolve())


def test_yaml_file_then_environment_wins(tmp_path, monkeypatch) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(
        "store_url: s3://bucket/twins\n"
        "storage_options: {endpoint_url: 'http://127.0.0.1:9000'}\n"
        "stac: {backend: pgstac, pgstac_dsn: 'postgresql://u@127.0.0.1/db', port: 9100}\n"
    )
    monkeypatch.setenv("TWINMESH_CONFIG", str(config))
    monkeypatch.setenv("TWINMESH_STAC__PORT", "9200")
    settings = load_settings()
    assert settings.resolved_store_url == "s3://bucket/twins"
    assert settings.storage_options == {"endpoint_url": "http://127.0.0.1:9000"}
    assert settings.stac.backend == "pgstac"
    assert settings.stac.port == 9200  # the environment overrides the file


def test_a_misspelt_setting_is_an_error_not_ignored(tmp_path, monkeypatch) -> None:
    config = tmp_path / "twinmesh.yaml"
    config.write_text("stac_backend: pgstac\n")
    monkeypatch.setenv("TWINMESH_CONFIG", str(config))
    with pytest.raises(pydantic.ValidationError, match="stac_backend"):
        load_settings()
