"""OpenID Connect pieces without a network: claims and groups, ID token checks, PKCE, pending state."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from twisted.internet.task import Clock

from desktop_relay.auth import ADMIN, PUPIL, TEACHER, Identity
from desktop_relay.auth.oidc import (
    AccountUnusable,
    InvalidState,
    PendingSignIns,
    TokenRejected,
    groups_from_claim,
    identity_from_claims,
    pkce_challenge,
    validate_id_token,
)
from desktop_relay.auth.roles import Roles
from desktop_relay.config import OIDCSettings

ISSUER = "https://iserv.school.example"
CLIENT = "desktop-relay"
NONCE = "n-0S6_WzA2Mj"
KEY = RSAKey.generate_key(2048, parameters={"kid": "key-1"})
KEYS = KeySet([KEY])


def settings(**overrides: Any) -> OIDCSettings:
    values: dict[str, Any] = {
        "issuer": ISSUER, "discovery": True, "authorization_endpoint": "", "token_endpoint": "",
        "userinfo_endpoint": "", "jwks_uri": "", "client_id": CLIENT, "client_secret": "s3cret",
        "token_auth_method": "client_secret_basic", "scopes": ("openid", "profile", "email", "groups"),
        "user_id_claim": "sub", "name_claim": "name", "groups_claim": "groups", "clock_skew": 60,
        "sign_in_timeout": 600,
    }
    values.update(overrides)
    return OIDCSettings(**values)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values = {"iss": ISSUER, "aud": CLIENT, "sub": "u-123", "iat": now, "exp": now + 300, "nonce": NONCE}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = KEY, alg: str = "RS256", kid: str | None = "key-1") -> str:
    header = {"alg": alg, **({"kid": kid} if kid else {})}
    return jwt.encode(header, payload, key, algorithms=[alg])


def validate(token: str, keys: KeySet = KEYS) -> dict[str, Any]:
    return validate_id_token(token, keys, issuer=ISSUER, client_id=CLIENT, nonce=NONCE, now=time.time(), leeway=60)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# Groups and identity


def test_iserv_groups_object_is_read_by_act() -> None:
    claim = {"1": {"act": "klasse-5a", "name": "Klasse 5a"}, "7": {"act": "lehrer", "name": "Lehrer"}}
    assert groups_from_claim(claim) == {"klasse-5a", "lehrer"}


def test_groups_as_plain_strings_and_as_list_of_objects() -> None:
    assert groups_from_claim(["pupils", "informatik"]) == {"pupils", "informatik"}
    assert groups_from_claim([{"act": "pupils", "name": "Schüler"}, "x"]) == {"pupils", "x"}


@pytest.mark.parametrize("value", [None, 3, {"1": {"name": "no act"}}, [None, 1, ""]])
def test_unusable_group_claims_give_no_groups(value: object) -> None:
    assert groups_from_claim(value) == frozenset()


def test_user_id_is_the_configured_claim_never_the_name() -> None:
    identity = identity_from_claims(
        {"sub": "s-1", "uuid": "0b5c-uuid", "name": "Anna Admin", "groups": ["a"]}, settings(user_id_claim="uuid")
    )
    assert identity == Identity("0b5c-uuid", "Anna Admin", frozenset({"a"}))


def test_missing_user_id_claim_refuses_the_account() -> None:
    with pytest.raises(AccountUnusable):
        identity_from_claims({"sub": "s-1"}, settings(user_id_claim="uuid"))


def test_name_falls_back_to_preferred_username_then_id() -> None:
    assert identity_from_claims({"sub": "s", "preferred_username": "anna"}, settings()).display_name == "anna"
    assert identity_from_claims({"sub": "s"}, settings()).display_name == "s"


def test_roles_come_from_groups() -> None:
    roles = Roles(admin_groups=frozenset({"admins"}), teacher_groups=frozenset({"lehrer"}))
    assert roles.role_of(frozenset({"lehrer", "admins"})) == ADMIN
    assert roles.role_of(frozenset({"lehrer"})) == TEACHER
    assert roles.role_of(frozenset({"klasse-5a"})) == PUPIL
    assert roles.assign(Identity("u", "U", frozenset({"lehrer"}))).role == TEACHER


# ID token validation


def test_valid_token_passes() -> None:
    assert validate(sign(claims()))["sub"] == "u-123"


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"iss": "https://evil.example"}, "iss"),
        ({"aud": "someone-else"}, "aud"),
        ({"exp": int(time.time()) - 120}, "Expired"),
        ({"iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200}, "issued in the future"),
        ({"nonce": "replayed"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"exp": None}, "exp"),
        ({"iat": None}, "iat"),
        ({"sub": None}, "sub"),
    ],
)
def test_claims_that_do_not_fit_are_refused(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(TokenRejected, match=reason):
        validate(sign(claims(**change)))


def test_several_audiences_need_azp_of_this_client() -> None:
    with pytest.raises(TokenRejected, match="azp"):
        validate(sign(claims(aud=[CLIENT, "other"])))
    assert validate(sign(claims(aud=[CLIENT, "other"], azp=CLIENT)))["sub"] == "u-123"


def test_token_signed_with_another_key_is_refused() -> None:
    foreign = RSAKey.generate_key(2048, parameters={"kid": "key-1"})
    with pytest.raises(TokenRejected, match="BadSignature"):
        validate(sign(claims(), key=foreign))


def test_tampered_payload_is_refused() -> None:
    header, _, signature = sign(claims()).split(".")
    payload = b64(json.dumps(claims(sub="admin")).encode())
    with pytest.raises(TokenRejected):
        validate(f"{header}.{payload}.{signature}")


def test_alg_none_is_refused() -> None:
    token = b64(json.dumps({"alg": "none"}).encode()) + "." + b64(json.dumps(claims()).encode()) + "."
    with pytest.raises(TokenRejected, match="'none' is not accepted"):
        validate(token)


def test_hmac_signed_with_the_public_key_is_refused() -> None:
    # The classic confusion attack: HS256 keyed with the provider's public key, which anyone has.
    # joserfc will not even make such a key, so the token is forged by hand.
    signing_input = b64(json.dumps({"alg": "HS256", "kid": "key-1"}).encode()) + "." + b64(json.dumps(claims()).encode())
    mac = hmac.new(KEY.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    token = signing_input + "." + b64(mac)
    with pytest.raises(TokenRejected, match="'HS256' is not accepted"):
        validate(token)


def test_garbage_is_refused() -> None:
    with pytest.raises(TokenRejected):
        validate("not-a-token")


# PKCE and pending sign-ins


def test_pkce_challenge_is_rfc7636_s256() -> None:
    # The example of RFC 7636 appendix B.
    assert pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    verifier = "x" * 64
    assert pkce_challenge(verifier) == b64(hashlib.sha256(verifier.encode()).digest())


def test_state_is_usable_once_by_the_browser_that_began() -> None:
    pending = PendingSignIns(Clock(), lifetime=600)
    started = pending.add("browser-a", "/next")
    assert pending.take(started.state, "browser-a") == started
    with pytest.raises(InvalidState, match="already used"):
        pending.take(started.state, "browser-a")


def test_state_from_another_browser_is_refused_and_spent() -> None:
    pending = PendingSignIns(Clock(), lifetime=600)
    started = pending.add("browser-a", "/")
    with pytest.raises(InvalidState, match="another browser"):
        pending.take(started.state, "browser-b")
    with pytest.raises(InvalidState):
        pending.take(started.state, "browser-a")


def test_state_expires() -> None:
    clock = Clock()
    pending = PendingSignIns(clock, lifetime=600)
    started = pending.add("b", "/")
    clock.advance(601)
    with pytest.raises(InvalidState, match="expired"):
        pending.take(started.state, "b")


def test_unknown_state_is_refused_and_pending_is_bounded() -> None:
    pending = PendingSignIns(Clock(), lifetime=600, limit=3)
    for _ in range(5):
        pending.add("b", "/")
    assert len(pending) == 3
    with pytest.raises(InvalidState):
        pending.take("made-up", "b")


def test_deeply_nested_json_from_a_provider_is_refused_not_a_crash() -> None:
    import base64

    from desktop_relay.auth import oidc

    deep = b"[" * 8000 + b"]" * 8000
    assert oidc._parse_json(deep) is None
    header = base64.urlsafe_b64encode(deep).decode().rstrip("=")
    with pytest.raises(TokenRejected, match="not a compact JWS"):
        oidc._token_header(header + ".e30.sig")
