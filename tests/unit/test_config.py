"""Settings: config.toml documents every default; env and flags override; errors name."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from rtc_server.config import ConfigError, load_settings
from rtc_server.features import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("RTC_"):
            monkeypatch.delenv(key)


def test_config_toml_lists_every_setting_with_its_default() -> None:
    documented = tomllib.loads((ROOT / "config.toml").read_text())
    defaults = Settings.model_construct().model_dump(mode="json")
    defaults = {k: (v if not isinstance(v, dict) else v) for k, v in defaults.items()}
    assert documented == defaults


def test_env_overrides_file_and_flags_override_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[server]\nport = 1111\nmax_inflight = 3\n[http]\nport = 2222\n")
    monkeypatch.setenv("RTC_SERVER__PORT", "3333")
    monkeypatch.setenv("RTC_DATA_DIR", "/srv/rtc")
    settings = load_settings(config, {"http": {"port": 4444}})
    assert settings.server.port == 3333  # env beats the file
    assert settings.server.max_inflight == 3  # the file beats defaults
    assert settings.http.port == 4444  # flags beat everything
    assert settings.data_dir == Path("/srv/rtc")


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("RTC_SERVER__PORT", "not-a-port", "server.port (RTC_SERVER__PORT)"),
        ("RTC_SERVER__PORT", "70000", "server.port"),
        ("RTC_DATABASE__POOL_MAX", "0", "database.pool_max"),
        ("RTC_LOG__FORMAT", "xml", "log.format"),
    ],
)
def test_bad_setting_names_itself(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        load_settings(ROOT / "config.toml")


def test_unknown_setting_in_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match="server.prot"):
        load_settings(config)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("RTC_AUTH__JWT_SECRET", "short", "auth.jwt_secret"),
        ("RTC_REDIS__URL", "localhost:6379", "redis.url"),
        ("RTC_PAYMENTS__CALLBACK_NETWORKS", '["203.192.240.*"]', "payments.callback_networks"),
        ("RTC_PAYMENTS__PAYTM_BASE_URL", "securegw.paytm.in", "payments.paytm_base_url"),
        ("RTC_PAYMENTS__GATEWAY", "paytm", "payments.*needs paytm_mid"),
        ("RTC_OBJECTS__BACKEND", "s3", "objects.*needs bucket"),
        ("RTC_OBJECTS__BACKEND", "gcs", "objects.backend"),
        ("RTC_OBJECTS__PREFIX", "../elsewhere", "objects.prefix"),
        ("RTC_OBJECTS__ENDPOINT_URL", "minio:9000", "objects.endpoint_url"),
        ("RTC_OBJECTS__ACCESS_KEY_ID", "AKIAEXAMPLE", "objects.*go together"),
    ],
)
def test_settings_that_would_fail_later_fail_at_start(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=named):
        load_settings(ROOT / "config.toml")


def test_an_object_prefix_is_kept_as_a_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTC_OBJECTS__PREFIX", "/buildxpert/prod")
    assert load_settings(ROOT / "config.toml").objects.prefix == "buildxpert/prod/"


def test_a_redis_url_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTC_REDIS__URL", "redis://localhost:6379/2")
    assert load_settings(ROOT / "config.toml").redis.url == "redis://localhost:6379/2"


def test_relay_only_calls_without_turn_stop_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTC_CALLS__POLICY", "relay-only")
    with pytest.raises(ConfigError, match="calls.*relay-only needs turn_urls"):
        load_settings(ROOT / "config.toml")


def test_calls_policy_is_relay_only_whenever_turn_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings(ROOT / "config.toml").calls.effective_policy == "open"
    monkeypatch.setenv("RTC_CALLS__TURN_URLS", '["turn:127.0.0.1:3478"]')
    with pytest.raises(ConfigError, match="turn_secret"):
        load_settings(ROOT / "config.toml")
    monkeypatch.setenv("RTC_CALLS__TURN_SECRET", "s" * 32)
    assert load_settings(ROOT / "config.toml").calls.effective_policy == "relay-only"
    monkeypatch.setenv("RTC_CALLS__TURN_URLS", '["http://127.0.0.1:3478"]')
    with pytest.raises(ConfigError, match="calls.turn_urls"):
        load_settings(ROOT / "config.toml")


def test_paytm_needs_its_merchant_and_a_key_of_an_aes_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RTC_PAYMENTS__GATEWAY", "paytm")
    monkeypatch.setenv("RTC_PAYMENTS__PAYTM_MID", "BuildX00000000000001")
    monkeypatch.setenv("RTC_PAYMENTS__PAYTM_MERCHANT_KEY", "too-short")
    with pytest.raises(ConfigError, match="RTC_PAYMENTS__PAYTM_MERCHANT_KEY"):
        load_settings(ROOT / "config.toml")
    monkeypatch.setenv("RTC_PAYMENTS__PAYTM_MERCHANT_KEY", "k" * 16)
    monkeypatch.setenv("RTC_PAYMENTS__PAYTM_BASE_URL", "production")
    payments = load_settings(ROOT / "config.toml").payments  # type: ignore[attr-defined]
    assert payments.paytm_url == "https://securegw.paytm.in"
