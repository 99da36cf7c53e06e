"""The `[oidc]` and `[header]` sections: how people sign in, when it is not with local accounts."""

from __future__ import annotations

import re

import attr

from .values import Reader, claim_name, duration, provider_url, secret_from_file, yes_no


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



OIDC_DEFAULTS = {
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
HEADER_DEFAULTS = {
    "user": "X-Remote-User",
    "groups": "X-Remote-Groups",
    "name": "X-Remote-Name",
    "separator": ",",
}


def header_name(text: str) -> str:
    if not re.match(r"^[A-Za-z0-9-]+$", text):
        raise ValueError("must be an HTTP header name such as X-Remote-User")
    return text


def read_oidc(reader: Reader) -> OIDCSettings:
    o = OIDC_DEFAULTS
    issuer = reader.value("oidc", "issuer", o, provider_url).rstrip("/")
    if not issuer:
        raise reader.fail("oidc", "issuer", "is required with [auth] method = oidc")
    client_id = reader.raw("oidc", "client_id", o)
    if not client_id:
        raise reader.fail("oidc", "client_id", "is required with [auth] method = oidc")
    discovery = reader.value("oidc", "discovery", o, yes_no)
    endpoints = {
        key: reader.value("oidc", key, o, provider_url)
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
        client_secret=secret_from_file(reader, "oidc", "client_secret_file", o),
        token_auth_method=token_auth_method,
        scopes=scopes,
        user_id_claim=reader.value("oidc", "user_id_claim", o, claim_name),
        name_claim=reader.value("oidc", "name_claim", o, claim_name),
        groups_claim=reader.value("oidc", "groups_claim", o, claim_name),
        clock_skew=reader.value("oidc", "clock_skew", o, duration),
        sign_in_timeout=reader.value("oidc", "sign_in_timeout", o, duration),
        **endpoints,
    )


def read_header(reader: Reader) -> HeaderSettings:
    h = HEADER_DEFAULTS
    separator = reader.raw("header", "separator", h)
    if not separator:
        raise reader.fail("header", "separator", "must not be empty")
    return HeaderSettings(
        user=reader.value("header", "user", h, header_name),
        groups=reader.value("header", "groups", h, header_name),
        name=reader.value("header", "name", h, header_name),
        separator=separator,
    )
