"""Reading and validating relay.ini into typed, immutable settings.

Every option, its default and its check live in this module; a wrong value raises
ConfigError with one line naming the file, section, key and reason.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar
from urllib.parse import urlsplit

import attr

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration problem, described in one line: file, section, key and reason."""


@attr.s(frozen=True, auto_attribs=True)
class DesktopType:
    """One `[desktop:NAME]` section: which image to run, with what limits, for whom."""

    name: str
    image: str
    title: str
    description: str
    shm_size: str
    memory: str | None
    cpus: float | None
    pids_limit: int | None
    environment: Mapping[str, str]
    groups: frozenset[str]
    users: frozenset[str]
    # Lifecycle policy; None means off. See etc/relay.ini and docs/idle.md.
    idle_timeout: float | None = 45 * 60
    max_lifetime: float | None = 10 * 3600
    disconnect_grace: float | None = 15 * 60
    idle_warning: float = 5 * 60
    max_sessions: int | None = None

    @property
    def memory_bytes(self) -> int:
        """The memory limit in bytes, counted against the memory budget (0: no limit set)."""
        return _byte_size(self.memory) if self.memory else 0

    def allows(self, user_id: str, groups: frozenset[str]) -> bool:
        """Whether a user with these groups may start this desktop ("*" admits everyone)."""
        return "*" in self.groups or user_id in self.users or bool(self.groups & groups)


@attr.s(frozen=True, auto_attribs=True)
class OIDCSettings:
    """The `[oidc]` section: which provider, which client, which claims say who someone is."""

    issuer: str
    discovery: bool
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    client_id: str
    client_secret: str = attr.ib(repr=False)
    token_auth_method: str
    scopes: tuple[str, ...]
    user_id_claim: str
    name_claim: str
    groups_claim: str
    clock_skew: float
    sign_in_timeout: float


@attr.s(frozen=True, auto_attribs=True)
class HeaderSettings:
    """The `[header]` section: which request headers a trusted proxy signs users in with."""

    user: str
    groups: str
    name: str
    separator: str


@attr.s(frozen=True, auto_attribs=True)
class SiteSettings:
    """The `[site]` section: the school's name, logo and accent colour on every page."""

    name: str = "Desktops"
    # The logo's file and its bytes (read once at start-up; served at /site/logo).
    logo: Path | None = None
    logo_image: bytes = attr.ib(default=b"", repr=False)
    accent: str = "#1d3557"

    @property
    def logo_type(self) -> str:
        """The logo's media type, by its suffix (checked when the file was read)."""
        return _IMAGE_TYPES[self.logo.suffix.lower()] if self.logo else ""


@attr.s(frozen=True, auto_attribs=True)
class RelayConfig:
    """All settings of one relay, as read from relay.ini."""

    source: Path
    listen: str
    public_url: str  # normalised to an origin: scheme://host[:port]
    instance: str
    database: Path
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    docker_url: str | None
    docker_threads: int
    port_range: tuple[int, int] | None
    start_timeout: float
    stop_timeout: int
    reconcile_interval: float
    engine_timeout: float
    auth_method: str
    password_file: Path
    login_attempts: int
    login_window: float
    web_session_idle: float
    web_session_lifetime: float
    max_sessions_per_user: int
    max_total_sessions: int | None
    # Bytes; None: no budget. memory_budget_auto: take 80% of the engine's memory at start.
    memory_budget: int | None
    memory_budget_auto: bool
    max_starting: int
    max_queued: int
    lifecycle_check_interval: float
    activity_write_interval: float
    ws_max_message_size: int
    ws_ping_interval: float
    ws_open_timeout: float
    desktops: Mapping[str, DesktopType]
    oidc: OIDCSettings | None
    header: HeaderSettings | None
    admin_groups: frozenset[str]
    teacher_groups: frozenset[str]
    # Seconds the audit trail keeps a line; None: for ever.
    audit_keep: float | None = 180 * 86400
    # [metrics] listen (None: off) and the bearer token scrapes must carry (None: none needed).
    metrics_listen: str | None = None
    metrics_token: str | None = attr.ib(default=None, repr=False)
    # [relay] log_format: "text" (twistd's lines) or "json" (one JSON object per line).
    log_format: str = "text"
    site: SiteSettings = SiteSettings()

    @property
    def secure_cookies(self) -> bool:
        """Cookies carry Secure when browsers reach us over https."""
        return self.public_url.startswith("https://")

    @property
    def redirect_uri(self) -> str:
        """Where the OpenID provider sends browsers back to (register it with the provider)."""
        return self.public_url + "/login/callback"


_SIZE = re.compile(r"^[0-9]+[bkmg]?$", re.IGNORECASE)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}

# The schema: section -> key -> default. A key missing here is unknown and refused.
_RELAY_DEFAULTS = {
    "listen": "tcp:8080:interface=127.0.0.1",
    "public_url": "http://127.0.0.1:8080",
    "instance": "default",
    "database": "var/relay.sqlite3",
    "trusted_proxies": "",
    "log_format": "text",
}
_DOCKER_DEFAULTS = {
    "url": "",
    "threads": "4",
    "port_range": "",
    "start_timeout": "60s",
    "stop_timeout": "10s",
    "reconcile_interval": "30s",
    "timeout": "30s",
}
_AUTH_DEFAULTS = {
    "method": "local",
    "password_file": "var/passwords",
    "login_attempts": "5",
    "login_window": "5m",
    "session_idle": "8h",
    "session_lifetime": "24h",
}
_OIDC_DEFAULTS = {
    "issuer": "",
    "discovery": "yes",
    "authorization_endpoint": "",
    "token_endpoint": "",
    "userinfo_endpoint": "",
    "jwks_uri": "",
    "client_id": "",
    "client_secret_file": "",
    "token_auth_method": "client_secret_basic",
    "scopes": "openid profile email groups",
    "user_id_claim": "sub",
    "name_claim": "name",
    "groups_claim": "groups",
    "clock_skew": "60s",
    "sign_in_timeout": "10m",
}
_HEADER_DEFAULTS = {
    "user": "X-Remote-User",
    "groups": "X-Remote-Groups",
    "name": "X-Remote-Name",
    "separator": ",",
}
_ROLES_DEFAULTS = {"admin_groups": "", "teacher_groups": ""}
_SESSIONS_DEFAULTS = {
    "max_per_user": "2",
    "max_total": "off",
    "memory_budget": "auto",
    "max_starting": "4",
    "max_queued": "200",
    "check_interval": "5s",
    "activity_write_interval": "5s",
}
_WEBSOCKET_DEFAULTS = {
    "max_message_size": "16m",
    "ping_interval": "30s",
    "open_timeout": "15s",
}
_AUDIT_DEFAULTS = {"keep": "180d"}
_DESKTOP_DEFAULTS = {
    "image": None,
    "title": "",
    "description": "",
    "shm_size": "512m",
    "memory": "",
    "cpus": "",
    "pids_limit": "",
    "environment": "",
    "groups": "",
    "users": "",
    "idle_timeout": "45m",
    "max_lifetime": "10h",
    "disconnect_grace": "15m",
    "idle_warning": "5m",
    "max_sessions": "off",
}
_METRICS_DEFAULTS = {
    "listen": "tcp:9118:interface=127.0.0.1",
    "token_file": "",
}
_SITE_DEFAULTS = {"name": "Desktops", "logo": "", "accent": "#1d3557"}
# Logos browsers show in an <img>, by suffix; anything else is refused at start-up.
_IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                ".gif": "image/gif", ".webp": "image/webp"}
# A logo is shown small; a bigger file is a mistake (a photo, not a logo).
_MAX_LOGO_BYTES = 1024 * 1024
_SECTIONS = {
    "site": _SITE_DEFAULTS,
    "relay": _RELAY_DEFAULTS,
    "docker": _DOCKER_DEFAULTS,
    "auth": _AUTH_DEFAULTS,
    "oidc": _OIDC_DEFAULTS,
    "header": _HEADER_DEFAULTS,
    "roles": _ROLES_DEFAULTS,
    "sessions": _SESSIONS_DEFAULTS,
    "websocket": _WEBSOCKET_DEFAULTS,
    "audit": _AUDIT_DEFAULTS,
    "metrics": _METRICS_DEFAULTS,
}
# Environment variables the relay sets itself; a desktop section may not override them.
_RESERVED_ENVIRONMENT = frozenset({"VNC_PW", "NO_VNC_PORT"})


class _Reader:
    """Reads typed values from one parsed file, raising ConfigError that names the spot."""

    def __init__(self, path: Path, parser: configparser.ConfigParser) -> None:
        self.path = path
        self.parser = parser

    def fail(self, section: str, key: str | None, reason: str) -> ConfigError:
        where = f"[{section}] {key}" if key else f"[{section}]"
        return ConfigError(f"{self.path}: {where}: {reason}")

    def raw(self, section: str, key: str, defaults: Mapping[str, str | None]) -> str:
        if self.parser.has_option(section, key):
            return self.parser.get(section, key).strip()
        default = defaults[key]
        if default is None:
            raise self.fail(section, key, "is required")
        return default

    def value(
        self,
        section: str,
        key: str,
        defaults: Mapping[str, str | None],
        convert: Callable[[str], T],
    ) -> T:
        text = self.raw(section, key, defaults)
        try:
            return convert(text)
        except ValueError as e:
            raise self.fail(section, key, f"{text!r}: {e}") from None

    def path_value(self, section: str, key: str, defaults: Mapping[str, str | None]) -> Path:
        text = self.raw(section, key, defaults)
        if not text:
            raise self.fail(section, key, "must not be empty")
        path = Path(text)
        # Relative paths are relative to the directory above etc/, i.e. the install root, so
        # that the shipped defaults work from a checkout; absolute paths are used as given.
        return path if path.is_absolute() else self.path.resolve().parent.parent / path


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be a whole number of at least 0")
    return value


def _duration(text: str) -> float:
    match = _DURATION.match(text.lower())
    if not match:
        raise ValueError("must be a duration such as 30s, 5m, 8h")
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


def _off(convert: Callable[[str], T]) -> Callable[[str], T | None]:
    """A value that may also be `off` (the policy or limit does not apply)."""

    def off(text: str) -> T | None:
        return None if text.lower() == "off" else convert(text)

    return off


def _byte_size(text: str) -> int:
    if not _SIZE.match(text):
        raise ValueError("must be a size such as 512m, 2g or 65536")
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    suffix = text[-1].lower()
    if suffix in units:
        return int(text[:-1]) * units[suffix]
    return int(text)


def _docker_size(text: str) -> str:
    _byte_size(text)
    return text.lower()


def _optional(convert: Callable[[str], T]) -> Callable[[str], T | None]:
    def optional(text: str) -> T | None:
        return convert(text) if text else None

    return optional


def _cpus(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1024:
        raise ValueError("must be a number of CPUs greater than 0")
    return value


def _word_set(text: str) -> frozenset[str]:
    return frozenset(part for part in re.split(r"[\s,]+", text) if part)


def _environment(text: str) -> Mapping[str, str]:
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        name, sep, value = line.partition("=")
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name.strip()):
            raise ValueError(f"{line!r} is not NAME=value (one per line)")
        if name.strip() in _RESERVED_ENVIRONMENT:
            raise ValueError(f"{name.strip()} is set by the relay itself")
        env[name.strip()] = value.strip()
    return MappingProxyType(env)


def _port_range(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    low, sep, high = text.partition("-")
    if not sep:
        raise ValueError("must be LOW-HIGH, e.g. 40000-40999")
    first, last = int(low), int(high)
    if not 1024 <= first <= last <= 65535:
        raise ValueError("must be within 1024-65535 with LOW <= HIGH")
    return (first, last)


def _public_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ValueError("must be the site root: no path, query or fragment")
    return f"{parts.scheme}://{parts.netloc}"


def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(part, strict=False) for part in _word_set(text))


def _instance(text: str) -> str:
    if not _NAME.match(text):
        raise ValueError("must be lower-case letters, digits, '.', '_' or '-'")
    return text


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen_interface(listen: str) -> str | None:
    """The interface= of a tcp endpoint string (None: all interfaces)."""
    match = re.search(r"(?:^|:)interface=([^:]+)", listen)
    return match.group(1).replace("\\", "") if match else None


def load_config(path: str | os.PathLike[str]) -> RelayConfig:
    """Read and check relay.ini; raise ConfigError with one line on any problem."""
    source = Path(path)
    parser = configparser.ConfigParser(
        interpolation=None, default_section="\0none", inline_comment_prefixes=None
    )
    try:
        with source.open(encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        raise ConfigError(f"{source}: cannot read configuration: no such file") from None
    except OSError as e:
        raise ConfigError(f"{source}: cannot read configuration: {e.strerror}") from None
    except configparser.Error as e:
        raise ConfigError(f"{source}: not a valid ini file: {e.message.splitlines()[0]}") from None

    reader = _Reader(source, parser)
    for section in parser.sections():
        if section.startswith("desktop:"):
            known: Mapping[str, str | None] = _DESKTOP_DEFAULTS
        elif section in _SECTIONS:
            known = _SECTIONS[section]
        else:
            raise reader.fail(section, None, "unknown section")
        for key in parser.options(section):
            if key not in known:
                raise reader.fail(section, key, "unknown key")

    r, d, a, sd = _RELAY_DEFAULTS, _DOCKER_DEFAULTS, _AUTH_DEFAULTS, _SESSIONS_DEFAULTS
    budget = reader.raw("sessions", "memory_budget", sd).lower()
    listen = reader.raw("relay", "listen", r)
    public_url = reader.value("relay", "public_url", r, _public_url)
    desktops = _read_desktops(reader)
    config = RelayConfig(
        source=source,
        listen=listen,
        public_url=public_url,
        instance=reader.value("relay", "instance", r, _instance),
        database=reader.path_value("relay", "database", r),
        trusted_proxies=reader.value("relay", "trusted_proxies", r, _networks),
        docker_url=reader.raw("docker", "url", d) or None,
        docker_threads=reader.value("docker", "threads", d, _positive_int),
        port_range=reader.value("docker", "port_range", d, _port_range),
        start_timeout=reader.value("docker", "start_timeout", d, _duration),
        stop_timeout=max(1, int(reader.value("docker", "stop_timeout", d, _duration))),
        reconcile_interval=reader.value("docker", "reconcile_interval", d, _duration),
        engine_timeout=reader.value("docker", "timeout", d, _duration),
        auth_method=reader.value("auth", "method", a, _auth_method),
        password_file=reader.path_value("auth", "password_file", a),
        login_attempts=reader.value("auth", "login_attempts", a, _positive_int),
        login_window=reader.value("auth", "login_window", a, _duration),
        web_session_idle=reader.value("auth", "session_idle", a, _duration),
        web_session_lifetime=reader.value("auth", "session_lifetime", a, _duration),
        max_sessions_per_user=reader.value("sessions", "max_per_user", sd, _positive_int),
        max_total_sessions=reader.value("sessions", "max_total", sd, _off(_positive_int)),
        memory_budget=None if budget in ("auto", "off") else reader.value("sessions", "memory_budget", sd, _byte_size),
        memory_budget_auto=budget == "auto",
        max_starting=reader.value("sessions", "max_starting", sd, _positive_int),
        max_queued=reader.value("sessions", "max_queued", sd, _non_negative_int),
        lifecycle_check_interval=reader.value("sessions", "check_interval", sd, _duration),
        activity_write_interval=reader.value("sessions", "activity_write_interval", sd, _duration),
        ws_max_message_size=reader.value(
            "websocket", "max_message_size", _WEBSOCKET_DEFAULTS, _byte_size
        ),
        ws_ping_interval=reader.value("websocket", "ping_interval", _WEBSOCKET_DEFAULTS, _duration),
        ws_open_timeout=reader.value("websocket", "open_timeout", _WEBSOCKET_DEFAULTS, _duration),
        desktops=desktops,
        oidc=None,
        header=None,
        admin_groups=reader.value("roles", "admin_groups", _ROLES_DEFAULTS, _word_set),
        teacher_groups=reader.value("roles", "teacher_groups", _ROLES_DEFAULTS, _word_set),
        audit_keep=reader.value("audit", "keep", _AUDIT_DEFAULTS, _off(_duration)),
        metrics_listen=reader.value("metrics", "listen", _METRICS_DEFAULTS, _off(_endpoint)),
        metrics_token=(
            _secret_from_file(reader, "metrics", "token_file", _METRICS_DEFAULTS)
            if reader.raw("metrics", "token_file", _METRICS_DEFAULTS) else None
        ),
        log_format=reader.value("relay", "log_format", r, _log_format),
        site=_read_site(reader),
    )
    if config.auth_method == "oidc":
        config = attr.evolve(config, oidc=_read_oidc(reader))
    elif config.auth_method == "header":
        if not config.trusted_proxies:
            raise reader.fail(
                "relay", "trusted_proxies",
                "[auth] method = header needs the proxy addresses whose headers are believed",
            )
        config = attr.evolve(config, header=_read_header(reader))
    _check_safety(reader, config)
    return config


def _endpoint(text: str) -> str:
    if not re.match(r"^[a-z0-9]+:", text):
        raise ValueError("must be a Twisted endpoint such as tcp:9118:interface=127.0.0.1, or off")
    return text


def _log_format(text: str) -> str:
    if text not in ("text", "json"):
        raise ValueError("must be text or json")
    return text


def _auth_method(text: str) -> str:
    if text not in ("local", "oidc", "header"):
        raise ValueError("must be local, oidc or header")
    return text


def _yes_no(text: str) -> bool:
    if text.lower() in ("yes", "true", "on", "1"):
        return True
    if text.lower() in ("no", "false", "off", "0"):
        return False
    raise ValueError("must be yes or no")


def _provider_url(text: str) -> str:
    """An address of the OpenID provider: https, or http only on loopback (tests, demos)."""
    if not text:
        return text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute https:// URL")
    if parts.scheme == "http" and not _is_loopback_host(parts.hostname):
        raise ValueError("must be https:// (plain http only for a provider on loopback)")
    return text


def _claim_name(text: str) -> str:
    if not re.match(r"^[A-Za-z0-9_.:-]+$", text):
        raise ValueError("must be a claim name such as sub, uuid or groups")
    return text


def _accent(text: str) -> str:
    if not re.fullmatch(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})", text):
        raise ValueError("must be a colour written #rgb or #rrggbb, such as #1d3557")
    return text.lower()


def _site_name(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    if len(text) > 80 or not text.isprintable():
        raise ValueError("must be one line of at most 80 characters")
    return text


def _read_site(reader: _Reader) -> SiteSettings:
    """The [site] section; the logo file is read here, so a wrong one stops start-up."""
    k = _SITE_DEFAULTS
    logo: Path | None = None
    image = b""
    if reader.raw("site", "logo", k):
        logo = reader.path_value("site", "logo", k)
        if logo.suffix.lower() not in _IMAGE_TYPES:
            raise reader.fail("site", "logo", f"{logo} is not an image: use one of {', '.join(sorted(_IMAGE_TYPES))}")
        try:
            with logo.open("rb") as f:
                image = f.read(_MAX_LOGO_BYTES + 1)
        except OSError as e:
            raise reader.fail("site", "logo", f"cannot read {logo}: {e.strerror}") from None
        if not image:
            raise reader.fail("site", "logo", f"{logo} is empty")
        if len(image) > _MAX_LOGO_BYTES:
            raise reader.fail("site", "logo", f"{logo} is larger than 1 MB")
    return SiteSettings(
        name=reader.value("site", "name", k, _site_name),
        logo=logo,
        logo_image=image,
        accent=reader.value("site", "accent", k, _accent),
    )


def _header_name(text: str) -> str:
    if not re.match(r"^[A-Za-z0-9-]+$", text):
        raise ValueError("must be an HTTP header name such as X-Remote-User")
    return text


def _secret_from_file(reader: _Reader, section: str, key: str, defaults: Mapping[str, str | None]) -> str:
    """Read a secret from a file that only its owner (and group) may read."""
    if not reader.raw(section, key, defaults):
        raise reader.fail(section, key, "is required")
    path = reader.path_value(section, key, defaults)
    try:
        mode = path.stat().st_mode
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise reader.fail(section, key, f"cannot read {path}: {e.strerror}") from None
    if mode & 0o007:
        raise reader.fail(section, key, f"{path} is readable by everyone; chmod 600 or 640 it")
    if not secret:
        raise reader.fail(section, key, f"{path} is empty")
    return secret


def _read_oidc(reader: _Reader) -> OIDCSettings:
    o = _OIDC_DEFAULTS
    issuer = reader.value("oidc", "issuer", o, _provider_url).rstrip("/")
    if not issuer:
        raise reader.fail("oidc", "issuer", "is required with [auth] method = oidc")
    client_id = reader.raw("oidc", "client_id", o)
    if not client_id:
        raise reader.fail("oidc", "client_id", "is required with [auth] method = oidc")
    discovery = reader.value("oidc", "discovery", o, _yes_no)
    endpoints = {
        key: reader.value("oidc", key, o, _provider_url)
        for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")
    }
    if not discovery:
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not endpoints[key]:
                raise reader.fail("oidc", key, "is required when discovery = no")
    scopes = tuple(reader.raw("oidc", "scopes", o).split())
    if "openid" not in scopes:
        raise reader.fail("oidc", "scopes", "must include openid")
    token_auth_method = reader.raw("oidc", "token_auth_method", o)
    if token_auth_method not in ("client_secret_basic", "client_secret_post"):
        raise reader.fail("oidc", "token_auth_method", "must be client_secret_basic or client_secret_post")
    return OIDCSettings(
        issuer=issuer,
        discovery=discovery,
        client_id=client_id,
        client_secret=_secret_from_file(reader, "oidc", "client_secret_file", o),
        token_auth_method=token_auth_method,
        scopes=scopes,
        user_id_claim=reader.value("oidc", "user_id_claim", o, _claim_name),
        name_claim=reader.value("oidc", "name_claim", o, _claim_name),
        groups_claim=reader.value("oidc", "groups_claim", o, _claim_name),
        clock_skew=reader.value("oidc", "clock_skew", o, _duration),
        sign_in_timeout=reader.value("oidc", "sign_in_timeout", o, _duration),
        **endpoints,
    )


def _read_header(reader: _Reader) -> HeaderSettings:
    h = _HEADER_DEFAULTS
    separator = reader.raw("header", "separator", h)
    if not separator:
        raise reader.fail("header", "separator", "must not be empty")
    return HeaderSettings(
        user=reader.value("header", "user", h, _header_name),
        groups=reader.value("header", "groups", h, _header_name),
        name=reader.value("header", "name", h, _header_name),
        separator=separator,
    )


def _read_desktops(reader: _Reader) -> Mapping[str, DesktopType]:
    desktops: dict[str, DesktopType] = {}
    k = _DESKTOP_DEFAULTS
    for section in reader.parser.sections():
        if not section.startswith("desktop:"):
            continue
        name = section.partition(":")[2]
        if not _NAME.match(name):
            raise reader.fail(section, None, "desktop name must be lower-case letters and digits")
        image = reader.raw(section, "image", k)
        if not image:
            raise reader.fail(section, "image", "must not be empty")
        groups = reader.value(section, "groups", k, _word_set)
        users = reader.value(section, "users", k, _word_set)
        if not groups and not users:
            raise reader.fail(section, "groups", "no one may start this desktop: name groups, users or *")
        desktops[name] = DesktopType(
            name=name,
            image=image,
            title=reader.raw(section, "title", k) or name,
            description=reader.raw(section, "description", k),
            shm_size=reader.value(section, "shm_size", k, _docker_size),
            memory=reader.value(section, "memory", k, _optional(_docker_size)),
            cpus=reader.value(section, "cpus", k, _optional(_cpus)),
            pids_limit=reader.value(section, "pids_limit", k, _optional(_positive_int)),
            environment=reader.value(section, "environment", k, _environment),
            groups=groups,
            users=users,
            idle_timeout=reader.value(section, "idle_timeout", k, _off(_duration)),
            max_lifetime=reader.value(section, "max_lifetime", k, _off(_duration)),
            disconnect_grace=reader.value(section, "disconnect_grace", k, _off(_duration)),
            idle_warning=reader.value(section, "idle_warning", k, _duration),
            max_sessions=reader.value(section, "max_sessions", k, _off(_positive_int)),
        )
        idle_timeout = desktops[name].idle_timeout
        if idle_timeout is not None and desktops[name].idle_warning >= idle_timeout:
            raise reader.fail(section, "idle_warning", "must be shorter than idle_timeout")
    if not desktops:
        raise ConfigError(f"{reader.path}: no [desktop:NAME] section: there is nothing to start")
    return MappingProxyType(desktops)


def _check_safety(reader: _Reader, config: RelayConfig) -> None:
    """Refuse configurations that would expose sessions, rather than guess."""
    interface = _listen_interface(config.listen)
    exposed = interface is None or not _is_loopback_host(interface.strip("[]"))
    if config.listen.startswith(("ssl:", "tls:")):
        exposed = False  # the relay terminates TLS itself
    public_host = urlsplit(config.public_url).hostname or ""
    if exposed and not config.secure_cookies:
        raise reader.fail(
            "relay",
            "listen",
            "listens beyond loopback while public_url is http://: session cookies would cross "
            "the network in clear text; listen on 127.0.0.1 behind Apache, or use an https public_url",
        )
    if config.public_url.startswith("http://") and not _is_loopback_host(public_host):
        raise reader.fail(
            "relay",
            "public_url",
            "plain http is only allowed for a loopback demo; use https:// behind Apache",
        )
    metrics = config.metrics_listen
    if metrics is not None and config.metrics_token is None and not metrics.startswith("unix:"):
        # TLS does not say who is asking: beyond loopback, only a token keeps the numbers private.
        interface = _listen_interface(metrics)
        if interface is None or not _is_loopback_host(interface.strip("[]")):
            raise reader.fail(
                "metrics", "listen",
                "listens beyond loopback without a token: set token_file (scrapes then need "
                "Authorization: Bearer), or listen on 127.0.0.1",
            )
