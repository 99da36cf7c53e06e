"""Reading and validating relay.ini into typed, immutable settings.

This module holds RelayConfig and load_config, and the sections that are plain values; each other
section has its reader beside it (desktops, auth, site, storage, schedules, classes), built from values'
converters. A wrong value raises ConfigError with one line naming the file, section, key and reason.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

import attr

from .auth import HEADER_DEFAULTS, OIDC_DEFAULTS, HeaderSettings, OIDCSettings, read_header, read_oidc
from .classes import CLASSES_DEFAULTS, ROLES_DEFAULTS, ClassSettings, read_classes
from .desktops import DESKTOP_DEFAULTS, DesktopType, read_desktops
from .safety import check_safety
from .schedules import SCHEDULE_DEFAULTS, ScheduleSettings, read_schedules
from .site import SITE_DEFAULTS, SiteSettings, read_site
from .storage import HOMES_DEFAULTS, SHARE_DEFAULTS, HomesSettings, ShareSettings, read_homes, read_shares
from .values import (
    ConfigError,
    Reader,
    auth_method,
    byte_size,
    duration,
    endpoint,
    instance,
    log_format,
    networks,
    non_negative_int,
    off,
    port_range,
    positive_int,
    public_url,
    secret_from_file,
    word_set,
)

__all__ = [
    "ClassSettings",
    "ConfigError",
    "DesktopType",
    "HeaderSettings",
    "HomesSettings",
    "OIDCSettings",
    "RelayConfig",
    "ScheduleSettings",
    "ShareSettings",
    "SiteSettings",
    "load_config",
]


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
    homes: HomesSettings = HomesSettings()
    shares: Mapping[str, ShareSettings] = attr.ib(factory=dict)
    schedules: Mapping[str, ScheduleSettings] = attr.ib(factory=dict)
    classes: ClassSettings = ClassSettings()

    @property
    def secure_cookies(self) -> bool:
        """Cookies carry Secure when browsers reach us over https."""
        return self.public_url.startswith("https://")

    @property
    def redirect_uri(self) -> str:
        """Where the OpenID provider sends browsers back to (register it with the provider)."""
        return self.public_url + "/login/callback"



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

_METRICS_DEFAULTS = {
    "listen": "tcp:9118:interface=127.0.0.1",
    "token_file": "",
}

_SECTIONS = {
    "site": SITE_DEFAULTS,
    "relay": _RELAY_DEFAULTS,
    "docker": _DOCKER_DEFAULTS,
    "auth": _AUTH_DEFAULTS,
    "oidc": OIDC_DEFAULTS,
    "header": HEADER_DEFAULTS,
    "roles": ROLES_DEFAULTS,
    "sessions": _SESSIONS_DEFAULTS,
    "websocket": _WEBSOCKET_DEFAULTS,
    "audit": _AUDIT_DEFAULTS,
    "metrics": _METRICS_DEFAULTS,
    "homes": HOMES_DEFAULTS,
    "classes": CLASSES_DEFAULTS,
}
# Sections that may come many times, one per NAME: "prefix:" -> their keys.
_NAMED_SECTIONS: Mapping[str, Mapping[str, str | None]] = {
    "desktop:": DESKTOP_DEFAULTS,
    "share:": SHARE_DEFAULTS,
    "schedule:": SCHEDULE_DEFAULTS,
}



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

    reader = Reader(source, parser)
    for section in parser.sections():
        prefix = section.partition(":")[0] + ":"
        if ":" in section and prefix in _NAMED_SECTIONS:
            known: Mapping[str, str | None] = _NAMED_SECTIONS[prefix]
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
    origin = reader.value("relay", "public_url", r, public_url)
    desktops = read_desktops(reader)
    homes = read_homes(reader)
    config = RelayConfig(
        source=source,
        listen=listen,
        public_url=origin,
        instance=reader.value("relay", "instance", r, instance),
        database=reader.path_value("relay", "database", r),
        trusted_proxies=reader.value("relay", "trusted_proxies", r, networks),
        docker_url=reader.raw("docker", "url", d) or None,
        docker_threads=reader.value("docker", "threads", d, positive_int),
        port_range=reader.value("docker", "port_range", d, port_range),
        start_timeout=reader.value("docker", "start_timeout", d, duration),
        stop_timeout=max(1, int(reader.value("docker", "stop_timeout", d, duration))),
        reconcile_interval=reader.value("docker", "reconcile_interval", d, duration),
        engine_timeout=reader.value("docker", "timeout", d, duration),
        auth_method=reader.value("auth", "method", a, auth_method),
        password_file=reader.path_value("auth", "password_file", a),
        login_attempts=reader.value("auth", "login_attempts", a, positive_int),
        login_window=reader.value("auth", "login_window", a, duration),
        web_session_idle=reader.value("auth", "session_idle", a, duration),
        web_session_lifetime=reader.value("auth", "session_lifetime", a, duration),
        max_sessions_per_user=reader.value("sessions", "max_per_user", sd, positive_int),
        max_total_sessions=reader.value("sessions", "max_total", sd, off(positive_int)),
        memory_budget=None if budget in ("auto", "off") else reader.value("sessions", "memory_budget", sd, byte_size),
        memory_budget_auto=budget == "auto",
        max_starting=reader.value("sessions", "max_starting", sd, positive_int),
        max_queued=reader.value("sessions", "max_queued", sd, non_negative_int),
        lifecycle_check_interval=reader.value("sessions", "check_interval", sd, duration),
        activity_write_interval=reader.value("sessions", "activity_write_interval", sd, duration),
        ws_max_message_size=reader.value(
            "websocket", "max_message_size", _WEBSOCKET_DEFAULTS, byte_size
        ),
        ws_ping_interval=reader.value("websocket", "ping_interval", _WEBSOCKET_DEFAULTS, duration),
        ws_open_timeout=reader.value("websocket", "open_timeout", _WEBSOCKET_DEFAULTS, duration),
        desktops=desktops,
        oidc=None,
        header=None,
        admin_groups=reader.value("roles", "admin_groups", ROLES_DEFAULTS, word_set),
        teacher_groups=reader.value("roles", "teacher_groups", ROLES_DEFAULTS, word_set),
        audit_keep=reader.value("audit", "keep", _AUDIT_DEFAULTS, off(duration)),
        metrics_listen=reader.value("metrics", "listen", _METRICS_DEFAULTS, off(endpoint)),
        metrics_token=(
            secret_from_file(reader, "metrics", "token_file", _METRICS_DEFAULTS)
            if reader.raw("metrics", "token_file", _METRICS_DEFAULTS) else None
        ),
        log_format=reader.value("relay", "log_format", r, log_format),
        site=read_site(reader),
        homes=homes,
        shares=read_shares(reader, homes, desktops),
        schedules=read_schedules(reader, desktops),
        classes=read_classes(reader),
    )
    if config.auth_method == "oidc":
        config = attr.evolve(config, oidc=read_oidc(reader))
    elif config.auth_method == "header":
        if not config.trusted_proxies:
            raise reader.fail(
                "relay", "trusted_proxies",
                "[auth] method = header needs the proxy addresses whose headers are believed",
            )
        config = attr.evolve(config, header=read_header(reader))
    check_safety(reader, config)
    return config

