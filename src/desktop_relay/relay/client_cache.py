"""The desktops' web client files, kept in the relay's memory so that a new session's client loads
from the relay instead of over one new TLS connection to the container per file.

A web client is some 60 static files, the same for every session of an image, and a container
answers each one on a connection of its own (KasmVNC closes every connection after one answer):
loading them was the slowest step between a click on Start and the desktop on the screen.

Two rules keep this safe and correct:

- **Per user.** What a container serves is in the hands of whoever uses it (a user can change the
  web server's files or its configuration in their own container), so files a container served
  are only ever given to its own user's browser. Bodies are stored once per content (SHA-256), so
  a file many users have costs its size once.
- **Per client build.** Every load of the client fetches its entry document (`/desktop/ID/?path=...`)
  from the container. Its content and validators name the client build; a session's files are
  looked up under (user, that build), and only once its entry document has been seen. A new image
  with a new entry document starts with nothing cached.

**Announced ahead.** The client is a graph of ES modules that the browser otherwise discovers
one import level at a time, each level a round of requests. When an entry document arrives with
the validators (ETag, Last-Modified) of one this user loaded before, its answer carries a `Link`
header naming the module scripts that build had (`rel=modulepreload`), and the browser asks for
them all at once. Only paths this user's own browser fetched as modules are named, so the header
tells nobody anything new; a wrong guess costs requests, never correctness.

Only static-looking files are kept: GET without a query or Range, a 200 with a file suffix from
STATIC_SUFFIXES, no Content-Encoding, no Vary, not marked no-store or private.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import attr
from twisted.web.http_headers import Headers

STATIC_SUFFIXES = frozenset({
    ".js", ".mjs", ".css", ".html", ".svg", ".png", ".gif", ".jpg", ".ico", ".webp",
    ".woff", ".woff2", ".ttf", ".oga", ".ogg", ".mp3", ".wav", ".wasm",
})
#: Files larger than this are relayed, never kept.
MAX_FILE = 4 * 1024 * 1024
#: The entry document is read up to this size to name the client build.
MAX_ENTRY = 1024 * 1024

RawHeaders = tuple[tuple[bytes, tuple[bytes, ...]], ...]


@attr.s(frozen=True, auto_attribs=True)
class CachedFile:
    """A file as the browser got it: status, the headers it was sent with, and the body."""

    code: int
    phrase: bytes
    headers: RawHeaders
    body: bytes


@attr.s(frozen=True, auto_attribs=True)
class _Entry:
    code: int
    phrase: bytes
    headers: RawHeaders
    digest: bytes
    # The browser fetched it as a module script (Sec-Fetch-Dest script, Sec-Fetch-Mode cors).
    module: bool = False


class ClientFileCache:
    """The client files per (user, client build), bounded in bytes and in (user, build) sets."""

    def __init__(self, *, max_bytes: int = 64 * 1024 * 1024, max_builds: int = 5000,
                 max_sessions: int = 20000) -> None:
        self._max_bytes = max_bytes
        self._max_builds = max_builds
        self._max_sessions = max_sessions
        # (user, build) -> path -> entry; least recently used first.
        self._files: OrderedDict[tuple[str, bytes], dict[str, _Entry]] = OrderedDict()
        # digest -> [body, number of entries using it]
        self._bodies: dict[bytes, list] = {}
        self._bytes = 0
        # session -> (user, build), from the entry document its container served.
        self._sessions: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        # (user, an entry document's validators) -> the build they named last: what to announce.
        self._named: OrderedDict[tuple[str, bytes], bytes] = OrderedDict()

    @property
    def size(self) -> int:
        """Bytes of file bodies held."""
        return self._bytes

    def entry_seen(self, session_id: str, user_id: str, body: bytes, headers: Headers) -> bytes:
        """The session's container served this entry document: its files are looked up under
        the client build it names, which is returned."""
        validators = _validators(headers)
        build = hashlib.sha256(body + validators).digest()
        self._sessions[session_id] = (user_id, build)
        self._sessions.move_to_end(session_id)
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)
        if validators:
            self._named[(user_id, validators)] = build
            self._named.move_to_end((user_id, validators))
            while len(self._named) > self._max_builds:
                self._named.popitem(last=False)
        return build

    def holds(self, user_id: str, build: bytes, path: str) -> bool:
        """Whether this user's browser had this file of this build already."""
        return path in self._files.get((user_id, build), {})

    def files_of_build(self, build: bytes) -> dict[str, bool]:
        """The paths any user's browser fetched of this client build, and whether as a module:
        which files to fetch ahead for someone else (client_warmup.py), never their bodies."""
        paths: dict[str, bool] = {}
        for (_, seen), files in self._files.items():
            if seen == build:
                for path, entry in files.items():
                    paths[path] = paths.get(path, False) or entry.module
        return paths

    def modules_to_announce(self, user_id: str, headers: Headers) -> list[str]:
        """The module scripts of the build an entry document with these headers' validators
        named when this user loaded it before, for the browser to fetch at once; none without
        validators or a build seen."""
        validators = _validators(headers)
        build = self._named.get((user_id, validators)) if validators else None
        files = self._files.get((user_id, build)) if build is not None else None
        return sorted(path for path, entry in files.items() if entry.module) if files else []

    def lookup(self, session_id: str, user_id: str, path: str) -> CachedFile | None:
        """The file at path for this session's client build, if this user's browser got it before."""
        key = self._key(session_id, user_id)
        entry = self._files.get(key, {}).get(path) if key else None
        if entry is None:
            return None
        self._files.move_to_end(key)  # type: ignore[arg-type]
        return CachedFile(entry.code, entry.phrase, entry.headers, self._bodies[entry.digest][0])

    def wants(self, session_id: str, user_id: str, path: str) -> bool:
        """Whether a file at path of this session would be kept, before its answer is known."""
        return self._key(session_id, user_id) is not None and is_static_path(path)

    def store(self, session_id: str, user_id: str, path: str, code: int, phrase: bytes,
              headers: Headers, body: bytes, module: bool = False) -> None:
        """Keep a file the session's container served, if it is a static one (see the module);
        `module`: the browser asked for it as a module script."""
        key = self._key(session_id, user_id)
        if key is None or not is_static_path(path) or not is_static_answer(code, headers) or len(body) > MAX_FILE:
            return
        digest = hashlib.sha256(body).digest()
        files = self._files.setdefault(key, {})
        self._files.move_to_end(key)
        old = files.get(path)
        if old is not None:
            self._release(old.digest)
        files[path] = _Entry(code, phrase, _frozen(headers.getAllRawHeaders()), digest, module)
        held = self._bodies.setdefault(digest, [body, 0])
        if held[1] == 0:
            self._bytes += len(body)
        held[1] += 1
        while self._files and (self._bytes > self._max_bytes or len(self._files) > self._max_builds):
            _, evicted = self._files.popitem(last=False)
            for entry in evicted.values():
                self._release(entry.digest)

    def _key(self, session_id: str, user_id: str) -> tuple[str, bytes] | None:
        key = self._sessions.get(session_id)
        # The session's owner is checked before every request; this only keeps the rule visible.
        return key if key is not None and key[0] == user_id else None

    def _release(self, digest: bytes) -> None:
        held = self._bodies[digest]
        held[1] -= 1
        if held[1] == 0:
            self._bytes -= len(held[0])
            del self._bodies[digest]


def _validators(headers: Headers) -> bytes:
    """An entry document's ETag and Last-Modified, as one key (empty without either)."""
    return b"".join(
        b"\0" + name + b"\0" + value
        for name in (b"etag", b"last-modified") for value in headers.getRawHeaders(name, [])
    )


def is_module_request(request_headers: Headers) -> bool:
    """Whether the browser asks for a module script: modules are fetched in CORS mode, classic
    scripts in no-cors mode (Fetch Metadata, sent by every current browser)."""
    dest = request_headers.getRawHeaders(b"sec-fetch-dest", [b""])[0]
    mode = request_headers.getRawHeaders(b"sec-fetch-mode", [b""])[0]
    return dest == b"script" and mode == b"cors"


def is_static_path(path: str) -> bool:
    """A file of the client by its name: below the session prefix, with a static file's suffix."""
    name = path.rsplit("/", 1)[-1]
    return "." in name and "." + name.rsplit(".", 1)[-1].lower() in STATIC_SUFFIXES


def is_static_answer(code: int, headers: Headers) -> bool:
    """An answer the same for every request of the file: a plain 200, not personalised or private."""
    if code != 200 or headers.hasHeader(b"content-encoding") or headers.hasHeader(b"vary"):
        return False
    directives = b",".join(headers.getRawHeaders(b"cache-control", [])).lower()
    return b"no-store" not in directives and b"private" not in directives


def _frozen(raw: Iterable[tuple[bytes, Sequence[bytes]]]) -> RawHeaders:
    return tuple((name, tuple(values)) for name, values in raw)
