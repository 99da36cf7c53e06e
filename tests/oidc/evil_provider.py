"""A deliberately misbehaving OpenID provider (twisted.web) for the relay's token checks.

Run as `python evil_provider.py PORT`. It serves discovery, JWKS, authorize, token and userinfo
on 127.0.0.1; `POST /mode` with a body of good, tampered, foreign, expired, none or hmac chooses
what the next ID tokens look like. Its token endpoint checks the PKCE verifier (S256), so a
`good` sign-in also proves the relay's PKCE is right.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sys
import time
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

CLIENT_ID = "desktop-relay"
KEY = RSAKey.generate_key(2048, parameters={"kid": "evil-1", "use": "sig"})
FOREIGN = RSAKey.generate_key(2048, parameters={"kid": "evil-1", "use": "sig"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Provider(Resource):
    isLeaf = True

    def __init__(self, issuer: str) -> None:
        super().__init__()
        self.issuer = issuer
        self.mode = "good"
        self.codes: dict[str, dict[str, str]] = {}

    def render_GET(self, request: Any) -> bytes:
        path = request.path.decode()
        if path == "/.well-known/openid-configuration":
            return self.json(request, {
                "issuer": self.issuer, "authorization_endpoint": self.issuer + "/authorize",
                "token_endpoint": self.issuer + "/token", "userinfo_endpoint": self.issuer + "/userinfo",
                "jwks_uri": self.issuer + "/jwks",
            })
        if path == "/jwks":
            return self.json(request, {"keys": [KEY.as_dict(private=False)]})
        if path == "/authorize":
            args = {k.decode(): v[0].decode() for k, v in request.args.items()}
            code = secrets.token_urlsafe(16)
            self.codes[code] = args
            request.setResponseCode(302)
            query = urlencode({"code": code, "state": args["state"]})
            request.setHeader(b"Location", f"{args['redirect_uri']}?{query}".encode())
            return b""
        if path == "/userinfo":
            return self.json(request, {"sub": "evil-user", "name": "Eve", "groups": ["pupils"]})
        request.setResponseCode(404)
        return b"not found"

    def render_POST(self, request: Any) -> bytes:
        path = request.path.decode()
        if path == "/mode":
            self.mode = request.content.read().decode().strip()
            return b"ok"
        if path == "/token":
            form = {k.decode(): v[0].decode() for k, v in request.args.items()}
            started = self.codes.pop(form.get("code", ""), None)
            if started is None:
                request.setResponseCode(400)
                return self.json(request, {"error": "invalid_grant"})
            challenge = b64(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
            if started.get("code_challenge_method") != "S256" or challenge != started.get("code_challenge"):
                request.setResponseCode(400)
                return self.json(request, {"error": "invalid_grant", "error_description": "PKCE verifier wrong"})
            return self.json(request, {"access_token": "at-" + secrets.token_urlsafe(8), "token_type": "Bearer",
                                       "expires_in": 300, "id_token": self.id_token(started["nonce"])})
        request.setResponseCode(404)
        return b"not found"

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": CLIENT_ID, "sub": "evil-user", "iat": now, "exp": now + 300,
                  "nonce": nonce}
        header = {"alg": "RS256", "kid": "evil-1"}
        if self.mode == "expired":
            claims.update(iat=now - 7200, exp=now - 3600)
        if self.mode == "foreign":
            return jwt.encode(header, claims, FOREIGN)
        if self.mode == "none":
            return b64(json.dumps({"alg": "none"}).encode()) + "." + b64(json.dumps(claims).encode()) + "."
        if self.mode == "hmac":
            signing_input = b64(json.dumps({"alg": "HS256", "kid": "evil-1"}).encode()) + "." + b64(
                json.dumps(claims).encode())
            mac = hmac.new(KEY.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
            return signing_input + "." + b64(mac)
        token = jwt.encode(header, claims, KEY)
        if self.mode == "tampered":
            head, _, signature = token.split(".")
            token = f"{head}.{b64(json.dumps({**claims, 'sub': 'admin'}).encode())}.{signature}"
        return token

    @staticmethod
    def json(request: Any, value: Any) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(value).encode()


if __name__ == "__main__":
    port = int(sys.argv[1])
    reactor.listenTCP(port, Site(Provider(f"http://127.0.0.1:{port}")), interface="127.0.0.1")
    print("evil provider ready", flush=True)
    reactor.run()
