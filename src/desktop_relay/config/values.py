"""The building blocks every section reader uses: the one-line ConfigError, the Reader that names
the file, section and key of a bad value, and the converters from text to typed values."""

from __future__ import annotations

import configparser
import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration problem, described in one line: file, section, key and reason."""



SIZE = re.compile(r"^[0-9]+[bkmg]?$", re.IGNORECASE)
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?$")
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


class Reader:
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



def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be a whole number of at least 0")
    return value


def duration(text: str) -> float:
    match = DURATION.match(text.lower())
    if not match:
        raise ValueError("must be a duration such as 30s, 5m, 8h")
    seconds = float(match.group(1)) * DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


def off(convert: Callable[[str], T]) -> Callable[[str], T | None]:
    """A value that may also be `off` (the policy or limit does not apply)."""

    def off(text: str) -> T | None:
        return None if text.lower() == "off" else convert(text)

    return off


def byte_size(text: str) -> int:
    if not SIZE.match(text):
        raise ValueError("must be a size such as 512m, 2g or 65536")
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    suffix = text[-1].lower()
    if suffix in units:
        return int(text[:-1]) * units[suffix]
    return int(text)


def docker_size(text: str) -> str:
    byte_size(text)
    return text.lower()


def optional(convert: Callable[[str], T]) -> Callable[[str], T | None]:
    def optional(text: str) -> T | None:
        return convert(text) if text else None

    return optional


def cpus(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1024:
        raise ValueError("must be a number of CPUs greater than 0")
    return value


def word_set(text: str) -> frozenset[str]:
    return frozenset(part for part in re.split(r"[\s,]+", text) if part)


def port_range(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    low, sep, high = text.partition("-")
    if not sep:
        raise ValueError("must be LOW-HIGH, e.g. 40000-40999")
    first, last = int(low), int(high)
    if not 1024 <= first <= last <= 65535:
        raise ValueError("must be within 1024-65535 with LOW <= HIGH")
    return (first, last)


def public_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ValueError("must be the site root: no path, query or fragment")
    return f"{parts.scheme}://{parts.netloc}"


def networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(part, strict=False) for part in word_set(text))


def instance(text: str) -> str:
    if not NAME.match(text):
        raise ValueError("must be lower-case letters, digits, '.', '_' or '-'")
    return text


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_interface(listen: str) -> str | None:
    """The interface= of a tcp endpoint string (None: all interfaces)."""
    match = re.search(r"(?:^|:)interface=([^:]+)", listen)
    return match.group(1).replace("\\", "") if match else None


def endpoint(text: str) -> str:
    if not re.match(r"^[a-z0-9]+:", text):
        raise ValueError("must be a Twisted endpoint such as tcp:9118:interface=127.0.0.1, or off")
    return text


def log_format(text: str) -> str:
    if text not in ("text", "json"):
        raise ValueError("must be text or json")
    return text


def auth_method(text: str) -> str:
    if text not in ("local", "oidc", "header"):
        raise ValueError("must be local, oidc or header")
    return text


def yes_no(text: str) -> bool:
    if text.lower() in ("yes", "true", "on", "1"):
        return True
    if text.lower() in ("no", "false", "off", "0"):
        return False
    raise ValueError("must be yes or no")


def provider_url(text: str) -> str:
    """An address of the OpenID provider: https, or http only on loopback (tests, demos)."""
    if not text:
        return text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute https:// URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("must be https:// (plain http only for a provider on loopback)")
    return text


def claim_name(text: str) -> str:
    if not re.match(r"^[A-Za-z0-9_.:-]+$", text):
        raise ValueError("must be a claim name such as sub, uuid or groups")
    return text


def secret_from_file(reader: Reader, section: str, key: str, defaults: Mapping[str, str | None]) -> str:
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
