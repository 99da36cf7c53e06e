"""Refusing configurations that would expose sessions, rather than guessing."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .values import Reader, is_loopback_host, listen_interface

if TYPE_CHECKING:
    from . import RelayConfig


def check_safety(reader: Reader, config: RelayConfig) -> None:
    """Refuse configurations that would expose sessions, rather than guess."""
    interface = listen_interface(config.listen)
    exposed = interface is None or not is_loopback_host(interface.strip("[]"))
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
    if config.public_url.startswith("http://") and not is_loopback_host(public_host):
        raise reader.fail(
            "relay",
            "public_url",
            "plain http is only allowed for a loopback demo; use https:// behind Apache",
        )
    metrics = config.metrics_listen
    if metrics is not None and config.metrics_token is None and not metrics.startswith("unix:"):
        # TLS does not say who is asking: beyond loopback, only a token keeps the numbers private.
        interface = listen_interface(metrics)
        if interface is None or not is_loopback_host(interface.strip("[]")):
            raise reader.fail(
                "metrics", "listen",
                "listens beyond loopback without a token: set token_file (scrapes then need "
                "Authorization: Bearer), or listen on 127.0.0.1",
            )
