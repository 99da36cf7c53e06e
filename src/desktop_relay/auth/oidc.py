"""OpenID Connect sign-in: authorization code flow with PKCE, state and nonce, ID token validation.

The provider's endpoints come from its discovery document or from relay.ini; ID tokens are
checked with joserfc against the provider's JWKS (fetched again when an unknown key id shows
up, so key rotation needs no restart). Every network call goes through treq on the reactor.
Each way a sign-in can fail is a SignInFailed with a message for the person and a detail for
the log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Generator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import attr
import treq
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.error import ConnectError, DNSLookupError, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.client import ResponseFailed, ResponseNeverReceived

from ..config import OIDCSettings
from ..i18n import N_
from . import Identity

# Asymmetric signatures only: "none" proves nothing, and HMAC algorithms would let anyone who
# knows the provider's public key (everyone) sign tokens with it.
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
# How long the relay waits for the provider on one request.
HTTP_TIMEOUT = 10.0
# What a provider that cannot be reached, or hangs up, looks like to treq.
_UNREACHABLE = (ConnectError, DNSLookupError, TimeoutError, CancelledError, ResponseFailed, ResponseNeverReceived)
# Larger answers from the provider are refused; discovery, JWKS, tokens and userinfo are small.
MAX_ANSWER = 1024 * 1024
# An unknown key id makes the relay fetch the JWKS again, but not more often than this, so that
# tokens with made-up key ids cannot turn the relay into a JWKS-fetching loop.
JWKS_REFRESH_INTERVAL = 30.0
# Pending sign-ins kept at once; beyond this the oldest are forgotten (a flood of /login
# requests must not grow memory without bound).
MAX_PENDING = 10000


class SignInFailed(Exception):
    """A sign-in that cannot complete: HTTP status, a title and message for people (msgids,
    translated on the error page), a detail for logs."""

    status = 400
    title = N_("Sign-in failed")
    message = N_("The sign-in could not be completed.")

    def __init__(self, detail: str, message: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if message is not None:
            self.message = message


class ProviderUnavailable(SignInFailed):
    """The provider could not be reached, or answered with something other than what was asked."""

    status = 503
    title = N_("Sign-in service unavailable")
    message = N_("The school's sign-in service cannot be reached right now. Please try again in a few minutes.")


class ProviderRefused(SignInFailed):
    """The provider sent the browser back with an error instead of a code."""

    status = 403
    title = N_("Sign-in refused")
    message = N_("The school's sign-in service did not sign you in (it was cancelled or refused).")


class InvalidState(SignInFailed):
    """The callback's state is unknown, expired, used before, or belongs to another browser."""

    status = 400
    title = N_("Sign-in link not valid")
    message = N_("This sign-in link is not valid: it expired, was already used, or was started in "
               "another browser. Please sign in again.")


class CodeRejected(SignInFailed):
    """The provider would not exchange the code: replayed, expired or otherwise invalid."""

    status = 400
    title = N_("Sign-in code not accepted")
    message = N_("The sign-in code was already used or has expired. Please sign in again.")


class TokenRejected(SignInFailed):
    """The provider's ID token or userinfo did not pass validation."""

    status = 502
    title = N_("Sign-in answer not trusted")
    message = N_("The answer from the school's sign-in service could not be verified, so you were not signed in.")


class AccountUnusable(SignInFailed):
    """The token is valid but lacks what the relay needs to know who someone is."""

    status = 403
    title = N_("Account cannot be used")
    message = N_("Your account does not carry the information this service needs. Please ask your administrator.")


@attr.s(frozen=True, auto_attribs=True)
class ProviderMetadata:
    """The provider endpoints the relay uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge for a PKCE code verifier (RFC 7636)."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


@attr.s(frozen=True, auto_attribs=True)
class PendingSignIn:
    """A sign-in on its way through the provider: what the callback must match."""

    state: str
    nonce: str
    verifier: str = attr.ib(repr=False)
    browser_hash: str
    next: str
    created: float


class PendingSignIns:
    """Pending sign-ins in memory, keyed by state: each usable once, by one browser, for a short time."""

    def __init__(self, clock: IReactorTime, lifetime: float, limit: int = MAX_PENDING) -> None:
        self._clock = clock
        self._lifetime = lifetime
        self._limit = limit
        self._pending: dict[str, PendingSignIn] = {}

    def add(self, browser_token: str, next_path: str) -> PendingSignIn:
        """Remember a new sign-in for the browser holding browser_token."""
        self._purge()
        while len(self._pending) >= self._limit:
            del self._pending[next(iter(self._pending))]
        pending = PendingSignIn(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(64),
            browser_hash=_hash(browser_token),
            next=next_path,
            created=self._clock.seconds(),
        )
        self._pending[pending.state] = pending
        return pending

    def take(self, state: str, browser_token: str | None) -> PendingSignIn:
        """The sign-in for this state, removed so it cannot be used again; InvalidState if none fits."""
        pending = self._pending.pop(state, None)
        if pending is None:
            raise InvalidState("unknown or already used state")
        if self._clock.seconds() - pending.created > self._lifetime:
            raise InvalidState("expired state")
        if browser_token is None or not secrets.compare_digest(pending.browser_hash, _hash(browser_token)):
            raise InvalidState("state belongs to another browser (sign-in cookie missing or different)")
        return pending

    def discard(self, state: str) -> None:
        """Forget a pending sign-in, if there is one."""
        self._pending.pop(state, None)

    def _purge(self) -> None:
        horizon = self._clock.seconds() - self._lifetime
        for state in [s for s, p in self._pending.items() if p.created < horizon]:
            del self._pending[state]

    def __len__(self) -> int:
        return len(self._pending)


def groups_from_claim(value: object) -> frozenset[str]:
    """Group names from a groups claim.

    IServ sends an object whose values are {"act": ..., "name": ...} (act is the group's id);
    other providers a list of names, or a list of such objects. Anything else gives no groups.
    """
    if isinstance(value, Mapping):
        items: list[object] = list(value.values())
    elif isinstance(value, list):
        items = value
    elif isinstance(value, str):
        items = [value]
    else:
        return frozenset()
    groups = set()
    for item in items:
        if isinstance(item, Mapping):
            item = item.get("act")
        if isinstance(item, str) and item.strip():
            groups.add(item.strip())
    return frozenset(groups)


def identity_from_claims(claims: Mapping[str, Any], settings: OIDCSettings) -> Identity:
    """Who the claims say someone is: the configured id claim, a name to show, the groups."""
    user_id = claims.get(settings.user_id_claim)
    if not isinstance(user_id, str) or not user_id:
        raise AccountUnusable(f"claim {settings.user_id_claim!r} missing or not a string")
    name = claims.get(settings.name_claim) or claims.get("preferred_username") or user_id
    return Identity(user_id, str(name), groups_from_claim(claims.get(settings.groups_claim)))


def _token_header(token: str) -> dict[str, Any]:
    try:
        encoded = token.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, IndexError, RecursionError):
        raise TokenRejected("ID token is not a compact JWS") from None
    if not isinstance(header, dict):
        raise TokenRejected("ID token header is not an object")
    return header


def validate_id_token(
    token: str, keys: KeySet, *, issuer: str, client_id: str, nonce: str, now: float, leeway: float
) -> dict[str, Any]:
    """The claims of an ID token that passes every check, else TokenRejected saying which failed.

    Signature against the provider's keys with an asymmetric algorithm; iss, aud (and azp when
    there are several audiences), exp, iat, sub and the nonce of this sign-in.
    """
    header = _token_header(token)
    if header.get("alg") not in ALLOWED_ALGORITHMS:
        raise TokenRejected(f"ID token algorithm {header.get('alg')!r} is not accepted")
    try:
        decoded = jwt.decode(token, keys, algorithms=list(ALLOWED_ALGORITHMS))
        claims = decoded.claims
        jwt.JWTClaimsRegistry(
            now=int(now),
            leeway=int(leeway),
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(claims)
    except JoseError as e:
        raise TokenRejected(f"ID token refused: {e.__class__.__name__}: {e}") from None
    except ValueError as e:
        raise TokenRejected(f"ID token refused: {e}") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise TokenRejected("ID token has several audiences and azp is not this client")
    return claims


class OpenIDProvider:
    """Talks to one OpenID provider: discovery, JWKS, code exchange and userinfo."""

    _log = Logger()

    def __init__(self, settings: OIDCSettings, clock: IReactorTime, http: Any = treq) -> None:
        self._settings = settings
        self._clock = clock
        self._http = http
        self._metadata: ProviderMetadata | None = None
        self._keys: KeySet | None = None
        self._keys_fetched = float("-inf")

    @inlineCallbacks
    def metadata(self) -> Generator[Deferred[Any], Any, ProviderMetadata]:
        """The provider's endpoints; fetched once, and again after a failure."""
        if self._metadata is not None:
            return self._metadata
        s = self._settings
        found: dict[str, Any] = {}
        if s.discovery:
            found = yield self._get_json(s.issuer + "/.well-known/openid-configuration", "discovery document")
            if found.get("issuer") != s.issuer:
                raise ProviderUnavailable(
                    f"discovery document names issuer {found.get('issuer')!r}, expected {s.issuer!r}"
                )
        endpoints = {}
        for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
            value = getattr(s, key) or found.get(key) or ""
            if not isinstance(value, str) or (key != "userinfo_endpoint" and not value):
                raise ProviderUnavailable(f"the provider names no {key}")
            endpoints[key] = value
        self._metadata = ProviderMetadata(issuer=s.issuer, **endpoints)
        return self._metadata

    @inlineCallbacks
    def keys_for(self, token: str) -> Generator[Deferred[Any], Any, KeySet]:
        """The provider's keys, fetched again when the token names a key id we do not have."""
        kid = _token_header(token).get("kid")
        now = self._clock.seconds()
        if self._keys is None or (
            not _has_kid(self._keys, kid) and now - self._keys_fetched >= JWKS_REFRESH_INTERVAL
        ):
            metadata = yield self.metadata()
            document = yield self._get_json(metadata.jwks_uri, "key set")
            try:
                keys = KeySet.import_key_set(document)
            except (JoseError, ValueError, KeyError, TypeError) as e:
                raise ProviderUnavailable(f"key set from {metadata.jwks_uri} unusable: {e}") from None
            if self._keys is not None:
                self._log.info("fetched the provider's keys again for key id {kid}", kid=kid)
            self._keys, self._keys_fetched = keys, now
        return self._keys

    def authorization_url(self, metadata: ProviderMetadata, pending: PendingSignIn, redirect_uri: str) -> str:
        """Where to send the browser to sign in, with state, nonce and the PKCE challenge."""
        query = urlencode({
            "response_type": "code",
            "client_id": self._settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self._settings.scopes),
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": pkce_challenge(pending.verifier),
            "code_challenge_method": "S256",
        })
        separator = "&" if urlsplit(metadata.authorization_endpoint).query else "?"
        return metadata.authorization_endpoint + separator + query

    @inlineCallbacks
    def sign_in(self, pending: PendingSignIn, code: str, redirect_uri: str) -> Generator[Deferred[Any], Any, Identity]:
        """Exchange the code, validate the ID token, read userinfo, and say who signed in."""
        s = self._settings
        metadata = yield self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": pending.verifier,
        }
        headers = {b"Accept": [b"application/json"]}
        if s.token_auth_method == "client_secret_post":
            form.update(client_id=s.client_id, client_secret=s.client_secret)
        else:
            # RFC 6749 2.3.1: id and secret are form-encoded before they are joined and base64ed.
            pair = f"{quote(s.client_id, safe='')}:{quote(s.client_secret, safe='')}"
            headers[b"Authorization"] = [b"Basic " + base64.b64encode(pair.encode("utf-8"))]
        answer = yield self._post_token(metadata.token_endpoint, form, headers)
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise TokenRejected("token answer has no id_token")
        keys = yield self.keys_for(id_token)
        claims = validate_id_token(
            id_token, keys, issuer=metadata.issuer, client_id=s.client_id, nonce=pending.nonce,
            now=self._clock.seconds(), leeway=s.clock_skew,
        )
        access_token = answer.get("access_token")
        if metadata.userinfo_endpoint and isinstance(access_token, str):
            userinfo = yield self._get_json(
                metadata.userinfo_endpoint, "userinfo",
                headers={b"Authorization": [b"Bearer " + access_token.encode("ascii", "replace")]},
            )
            # Userinfo is bound to the token's subject; a different sub is someone else's answer.
            if userinfo.get("sub") != claims["sub"]:
                raise TokenRejected("userinfo sub differs from the ID token's sub")
            claims = {**claims, **userinfo}
        return identity_from_claims(claims, s)

    @inlineCallbacks
    def _post_token(
        self, url: str, form: dict[str, str], headers: dict[bytes, list[bytes]]
    ) -> Generator[Deferred[Any], Any, dict]:
        try:
            response = yield self._http.post(url, data=form, timeout=HTTP_TIMEOUT, headers=headers)
            body = yield _read_limited(response)
        except _UNREACHABLE as e:
            raise ProviderUnavailable(f"token endpoint {url} unreachable: {e}") from None
        answer = _parse_json(body)
        if response.code == 200 and isinstance(answer, dict):
            return answer
        error = answer.get("error") if isinstance(answer, dict) else None
        if error == "invalid_grant":
            raise CodeRejected(f"token endpoint refused the code: {answer.get('error_description', '')}")
        if error in ("invalid_client", "unauthorized_client"):
            raise ProviderUnavailable(
                f"token endpoint refused the relay's client credentials ({error}); check client_id "
                "and client_secret_file",
                message=N_("The sign-in service does not accept this server's credentials. "
                           "Please tell your administrator."),
            )
        if response.code >= 500:
            raise ProviderUnavailable(f"token endpoint answered {response.code}")
        raise TokenRejected(f"token endpoint answered {response.code}: {error or body[:200]!r}")

    @inlineCallbacks
    def _get_json(
        self, url: str, what: str, headers: dict[bytes, list[bytes]] | None = None
    ) -> Generator[Deferred[Any], Any, dict]:
        try:
            response = yield self._http.get(
                url, timeout=HTTP_TIMEOUT, headers={b"Accept": [b"application/json"], **(headers or {})}
            )
            body = yield _read_limited(response)
        except _UNREACHABLE as e:
            raise ProviderUnavailable(f"{what} at {url} unreachable: {e}") from None
        if response.code != 200:
            raise ProviderUnavailable(f"{what} at {url} answered {response.code}")
        value = _parse_json(body)
        if not isinstance(value, dict):
            raise ProviderUnavailable(f"{what} at {url} is not a JSON object")
        return value


def _has_kid(keys: KeySet, kid: object) -> bool:
    if kid is None:
        return len(keys.keys) == 1
    return any(key.kid == kid for key in keys)


@inlineCallbacks
def _read_limited(response: Any) -> Generator[Deferred[Any], Any, bytes]:
    length = response.length
    if isinstance(length, int) and length > MAX_ANSWER:
        raise ProviderUnavailable(f"answer of {length} bytes is too large")
    body = yield treq.content(response)
    if len(body) > MAX_ANSWER:
        raise ProviderUnavailable(f"answer of {len(body)} bytes is too large")
    return body


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[...]]]]
        return None


class OpenIDSignIn:
    """The relay's side of the code flow: begin at /login, finish at /login/callback."""

    _log = Logger()

    def __init__(self, provider: OpenIDProvider, pending: PendingSignIns, redirect_uri: str) -> None:
        self.provider = provider
        self._pending = pending
        self._redirect_uri = redirect_uri

    @inlineCallbacks
    def begin(self, browser_token: str, next_path: str) -> Generator[Deferred[Any], Any, str]:
        """The provider URL to send this browser to; ProviderUnavailable if it cannot be reached."""
        metadata = yield self.provider.metadata()
        pending = self._pending.add(browser_token, next_path)
        return self.provider.authorization_url(metadata, pending, self._redirect_uri)

    @inlineCallbacks
    def finish(
        self, args: Mapping[str, str], browser_token: str | None
    ) -> Generator[Deferred[Any], Any, tuple[Identity, str]]:
        """Check the callback's parameters and complete the sign-in: (identity, where to go next)."""
        state = args.get("state")
        error = args.get("error")
        if error:
            # Some providers leave the state out of error answers; a refusal signs no one in, so
            # it is reported as such either way, and a state that came along is spent.
            if state:
                self._pending.discard(state)
            raise ProviderRefused(f"provider answered {error}: {args.get('error_description', '')}")
        if not state:
            raise InvalidState("callback without state")
        pending = self._pending.take(state, browser_token)
        code = args.get("code")
        if not code:
            raise ProviderRefused("callback without code or error")
        identity = yield self.provider.sign_in(pending, code, self._redirect_uri)
        return identity, pending.next
