"""Settings layering (defaults < imnet.toml < IMNET_* < flags) and one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imnet.core.settings import SettingsError, load_settings


def test_layers(tmp_path: Path) -> None:
    cfg = tmp_path / "imnet.toml"
    cfg.write_text('data_dir = "/from/toml"\ncrawl_concurrency = 8\n[mturk]\nreward = "0.25"\n')
    s = load_settings(cfg, env={})
    assert (s.data_dir, s.crawl_concurrency, s.mturk_reward) == ("/from/toml", 8, "0.25")
    s = load_settings(
        cfg, env={"IMNET_CRAWL_CONCURRENCY": "16", "IMNET_ALLOW_PRIVATE_HOSTS": "yes"}
    )
    assert s.crawl_concurrency == 16 and s.allow_private_hosts is True
    assert s.data_dir == "/from/toml"
    s = load_settings(
        cfg, env={"IMNET_CRAWL_CONCURRENCY": "16"}, overrides={"crawl_concurrency": 4}
    )
    assert s.crawl_concurrency == 4
    assert s._sources["crawl_concurrency"] == "flag"


def test_defaults_are_embedded(tmp_path: Path) -> None:
    s = load_settings(env={"IMNET_CONFIG": str(tmp_path / "absent.toml")})
    assert s.resolved_database_url().startswith("sqlite:///")
    assert s.resolved_blob_url().startswith("file://")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IMNET_NO_SUCH_KEY": "1"}, "unknown setting 'no_such_key'"),
        ({"IMNET_CRAWL_CONCURRENCY": "many"}, "must be int"),
        ({"IMNET_DATABASE_URL": "mysql://x/y"}, "is not a sqlite"),
        ({"IMNET_BLOB_URL": "ftp://x"}, "must start with file:// or s3://"),
        ({"IMNET_BLOB_URL": "s3://"}, "names no bucket"),
        ({"IMNET_S3_ENDPOINT_URL": "localhost:9000"}, "must be an http"),
        ({"IMNET_CONSENSUS_DEPENDENCE_PRIOR": "1"}, "must be in [0, 1)"),
        ({"IMNET_CONSENSUS_FP_COST": "inf"}, "must be a finite number >= 0"),
        ({"IMNET_CRAWL_HOST_DELAY": "-1"}, "must be a finite number >= 0"),
        ({"IMNET_CONSENSUS_TARGET_RECALL": "0"}, "must be in (0, 1)"),
        ({"IMNET_MTURK_MIN_WORKER_GOLD": "1.5"}, "must be in [0, 1]"),
    ],
)
def test_bad_settings(tmp_path: Path, env: dict[str, str], message: str) -> None:
    env = {"IMNET_CONFIG": str(tmp_path / "absent.toml"), **env}
    with pytest.raises(SettingsError, match=re.escape(message)) as e:
        load_settings(env=env)
    assert "\n" not in str(e.value)


def test_bad_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "imnet.toml"
    cfg.write_text("data_dir = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(cfg, env={})


def test_masked_hides_secrets() -> None:
    s = load_settings(
        env={
            "IMNET_CONFIG": "/nonexistent/imnet.toml",
            "IMNET_S3_SECRET_KEY": "hunter2",
            "IMNET_DATABASE_URL": "postgresql+psycopg://u:pw@127.0.0.1/db",
        }
    )
    m = s.masked()
    assert m["s3_secret_key"] == "****"
    assert "pw" not in m["database_url"] and "****" in m["database_url"]
