"""relay.ini: the shipped file loads, and every kind of mistake stops start-up with one precise line."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop_relay.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = "[desktop:demo]\nimage = desktop-relay/demo-desktop:latest\ngroups = *\n"


def write(tmp_path: Path, text: str) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    path = etc / "relay.ini"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_shipped_configuration_loads_with_documented_defaults() -> None:
    config = load_config(ROOT / "etc" / "relay.ini")
    assert config.listen == "tcp:8080:interface=127.0.0.1"
    assert config.public_url == "http://127.0.0.1:8080"
    assert config.database == ROOT / "var" / "relay.sqlite3"
    demo = config.desktops["demo"]
    assert demo.shm_size == "512m"
    assert demo.environment == {"VNC_RESOLUTION": "1280x720"}
    assert demo.allows("anyone", frozenset())
    assert not config.secure_cookies


def test_defaults_apply_when_sections_are_missing(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.start_timeout == 60
    assert config.ws_max_message_size == 16 * 1024 * 1024
    assert config.max_sessions_per_user == 2
    assert config.desktops["demo"].memory is None
    assert config.password_file == tmp_path / "var" / "passwords"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[relay]\nlisen = x\n" + MINIMAL, "[relay] lisen: unknown key"),
        ("[relais]\n" + MINIMAL, "[relais]: unknown section"),
        ("[docker]\nthreads = 0\n" + MINIMAL, "[docker] threads: '0': must be a whole number of at least 1"),
        ("[docker]\nstart_timeout = soon\n" + MINIMAL, "[docker] start_timeout: 'soon': must be a duration"),
        ("[docker]\nport_range = 80-90\n" + MINIMAL, "[docker] port_range: '80-90': must be within 1024-65535"),
        ("[relay]\npublic_url = example.org\n" + MINIMAL, "[relay] public_url: 'example.org': must be an absolute"),
        ("[desktop:demo]\ngroups = *\n", "[desktop:demo] image: is required"),
        ("[desktop:demo]\nimage = x\n", "[desktop:demo] groups: no one may start this desktop"),
        ("[desktop:demo]\nimage = x\ngroups = *\nshm_size = lots\n", "[desktop:demo] shm_size: 'lots': must be a size"),
        ("[desktop:demo]\nimage = x\ngroups = *\ncpus = -1\n", "[desktop:demo] cpus: '-1'"),
        ("[desktop:demo]\nimage = x\ngroups = *\nenvironment = VNC_PW=x\n", "VNC_PW is set by the relay itself"),
        ("[desktop:Demo!]\nimage = x\ngroups = *\n", "[desktop:Demo!]: desktop name must be"),
        ("[relay]\n", "no [desktop:NAME] section"),
        ("not an ini file", "not a valid ini file"),
    ],
)
def test_mistakes_name_file_section_key_and_reason(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    assert message.startswith(str(tmp_path / "etc" / "relay.ini") + ": ")
    assert expected in message


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.ini: cannot read configuration: no such file"):
        load_config(tmp_path / "nowhere.ini")


def test_listening_beyond_loopback_over_plain_http_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[relay]\nlisten = tcp:8080\n" + MINIMAL)
    assert "[relay] listen: listens beyond loopback while public_url is http://" in message


def test_plain_http_public_url_is_only_for_loopback(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[relay]\npublic_url = http://desktop.school.example\n" + MINIMAL)
    assert "[relay] public_url: plain http is only allowed for a loopback demo" in message


def test_https_deployment_behind_apache_is_accepted(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, (
        "[relay]\npublic_url = https://desktop.school.example/\ntrusted_proxies = 127.0.0.1 ::1\n" + MINIMAL
    )))
    assert config.public_url == "https://desktop.school.example"
    assert config.secure_cookies
    assert len(config.trusted_proxies) == 2


def test_desktop_groups_and_users_decide_access(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, (
        "[desktop:code]\nimage = x\ngroups = teachers, informatik-kurs\nusers = alice\n"
    )))
    code = config.desktops["code"]
    assert code.allows("bob", frozenset({"informatik-kurs"}))
    assert code.allows("alice", frozenset())
    assert not code.allows("bob", frozenset({"pupils"}))


def test_shipped_file_documents_every_option_with_its_default() -> None:
    import configparser

    from desktop_relay import config as config_module

    shipped = configparser.ConfigParser(interpolation=None)
    shipped.read(ROOT / "etc" / "relay.ini")
    for section, defaults in config_module._SECTIONS.items():
        assert set(shipped.options(section)) == set(defaults), section
        for key, default in defaults.items():
            assert shipped.get(section, key).strip() == default, f"[{section}] {key}"
    for section in shipped.sections():
        if section.startswith("desktop:"):
            assert set(shipped.options(section)) == set(config_module.DESKTOP_DEFAULTS)
    # The sections a school adds by name are documented in comments, key by key.
    text = (ROOT / "etc" / "relay.ini").read_text()
    for prefix in ("share:", "schedule:"):
        for key in config_module._NAMED_SECTIONS[prefix]:
            assert f"\n#   {key} " in text, f"[{prefix}NAME] {key}"


def oidc_config(tmp_path: Path, secret_mode: int = 0o600, extra: str = "") -> str:
    secret = tmp_path / "client-secret"
    secret.write_text("s3cret\n")
    secret.chmod(secret_mode)
    return (f"[auth]\nmethod = oidc\n[oidc]\nissuer = https://iserv.school.example/\nclient_id = relay\n"
            f"client_secret_file = {secret}\n{extra}" + MINIMAL)


def test_oidc_settings_are_read_with_the_secret_from_its_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, oidc_config(tmp_path)))
    assert config.auth_method == "oidc" and config.oidc is not None
    assert config.oidc.issuer == "https://iserv.school.example"
    assert config.oidc.client_secret == "s3cret"
    assert config.oidc.scopes == ("openid", "profile", "email", "groups")
    assert config.redirect_uri == "http://127.0.0.1:8080/login/callback"
    assert "s3cret" not in repr(config.oidc)


@pytest.mark.parametrize(
    "mode, extra, expected",
    [
        (0o644, "", "client-secret is readable by everyone"),
        (0o600, "discovery = no\n", "[oidc] authorization_endpoint: is required when discovery = no"),
        (0o600, "scopes = profile\n", "[oidc] scopes: must include openid"),
        (0o600, "user_id_claim = display name\n", "[oidc] user_id_claim: 'display name': must be a claim name"),
        (0o600, "token_endpoint = http://iserv.example/token\n", "[oidc] token_endpoint: 'http://iserv.example/token': must be https://"),
    ],
)
def test_oidc_mistakes_stop_start_up(tmp_path: Path, mode: int, extra: str, expected: str) -> None:
    assert expected in error_of(tmp_path, oidc_config(tmp_path, mode, extra))


def test_missing_secret_file_and_issuer_stop_start_up(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[auth]\nmethod = oidc\n[oidc]\nissuer = https://x.example\nclient_id = r\n"
                                 f"client_secret_file = {tmp_path}/nope\n" + MINIMAL)
    assert "[oidc] client_secret_file: cannot read" in message
    assert "[oidc] issuer: is required" in error_of(tmp_path, "[auth]\nmethod = oidc\n" + MINIMAL)
    assert "[auth] method: 'ldap': must be local, oidc or header" in error_of(tmp_path, "[auth]\nmethod = ldap\n" + MINIMAL)


def test_header_method_needs_trusted_proxies(tmp_path: Path) -> None:
    assert "[relay] trusted_proxies: [auth] method = header needs" in error_of(
        tmp_path, "[auth]\nmethod = header\n" + MINIMAL)
    config = load_config(write(tmp_path, "[auth]\nmethod = header\n[relay]\ntrusted_proxies = 127.0.0.1\n"
                                         "[header]\nuser = OIDC-CLAIM-sub\n[roles]\nteacher_groups = lehrer\n" + MINIMAL))
    assert config.header is not None and config.header.user == "OIDC-CLAIM-sub"
    assert config.teacher_groups == {"lehrer"}
