"""Fetching a pupil's web client ahead, from their own pre-started desktop, before they open it:
their first load after a lesson's pre-start is then as quick as any later one.

The client file cache is per user because a container's files are in its user's hands
(client_cache.py). A pre-started desktop has not been in anybody's hands yet: nobody has
connected to it. So the relay asks it for its entry document and, when some browser has loaded
that client build before, for each file that build had (only the paths come from the other
user's load; every body comes from the pupil's own container), and keeps the answers for the
pupil as if their browser had asked. For a build nobody has loaded yet (the first lesson after
the relay started) there is nothing to go by: asked again, it fetches once somebody has.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent

from ..backend import Backend, container_agent
from .assets import copy_response_headers, upstream_headers, upstream_url
from .client_cache import MAX_ENTRY, MAX_FILE, ClientFileCache

# Requests to one container at a time: its web server answers one connection per file.
PARALLEL = 4


class ClientWarmup:
    """Fills the client file cache for a session's owner from the session's own container."""

    _log = Logger()

    def __init__(self, reactor: IReactorTime, cache: ClientFileCache, *, agent: IAgent | None = None,
                 connect_timeout: float = 10, response_timeout: float = 30) -> None:
        self._reactor = reactor
        self._cache = cache
        self._agent = agent if agent is not None else container_agent(reactor, connect_timeout)
        self._response_timeout = response_timeout
        # Sessions whose entry document was seen, for a build no browser had loaded: session -> build.
        self._unknown_builds: dict[str, bytes] = {}

    @inlineCallbacks
    def warm(self, session_id: str, user_id: str, backend: Backend) -> Generator[Deferred[Any], Any, int]:
        """Fetch the client of this session for its owner; the number of files kept (or 1 when the
        owner's browser has them all already), 0 for nothing to go by yet. Never fails: a file
        that cannot be had is left for the browser to ask for."""
        build = self._unknown_builds.pop(session_id, None)
        if build is None:
            entry = yield self._get(backend, "", MAX_ENTRY)
            if entry is None:
                return 0
            build = self._cache.entry_seen(session_id, user_id, entry[3], entry[2])
        paths = self._cache.files_of_build(build)
        if not paths:
            self._unknown_builds[session_id] = build
            return 0
        paths = {path: module for path, module in paths.items() if not self._cache.holds(user_id, build, path)}
        if not paths:
            return 1  # their browser loaded this build itself: nothing to fetch
        semaphore = DeferredSemaphore(PARALLEL)
        kept = sum((yield gatherResults([
            semaphore.run(self._keep, session_id, user_id, backend, path, module)
            for path, module in sorted(paths.items())
        ])))
        self._log.info("web client of session {session} fetched ahead for {user}: {kept} of {count} files",
                       session=session_id, user=user_id, kept=kept, count=len(paths))
        return kept

    def keep_only(self, session_ids: frozenset[str]) -> None:
        """Only these sessions may be asked for again; the others were opened or stopped."""
        for session_id in set(self._unknown_builds) - session_ids:
            del self._unknown_builds[session_id]

    @inlineCallbacks
    def _keep(self, session_id: str, user_id: str, backend: Backend, path: str,
              module: bool) -> Generator[Deferred[Any], Any, int]:
        answer = yield self._get(backend, path, MAX_FILE)
        if answer is None:
            return 0
        code, phrase, headers, body = answer
        self._cache.store(session_id, user_id, path, code, phrase, headers, body, module)
        return 1

    @inlineCallbacks
    def _get(self, backend: Backend, path: str, limit: int) -> Generator[
        Deferred[Any], Any, tuple[int, bytes, Headers, bytes] | None
    ]:
        """A 200 from the container, with the headers a browser would have got; None otherwise."""
        pending = self._agent.request(b"GET", upstream_url(backend, path, b""), upstream_headers(Headers(), backend))
        pending.addTimeout(self._response_timeout, self._reactor)
        pending.addCallback(lambda response: readBody(response).addCallback(lambda body: (response, body)))
        pending.addErrback(self._missed, backend, path)
        fetched = yield pending
        if fetched is None:
            return None
        response, body = fetched
        if response.code != 200 or len(body) > limit:
            return None
        headers = Headers()
        copy_response_headers(response, headers)
        return response.code, response.phrase, headers, body

    def _missed(self, failure: Failure, backend: Backend, path: str) -> None:
        # The browser will ask for it itself; worth a line only when looking closely.
        self._log.debug("cannot fetch {path} ahead from {host}:{port}: {reason}", path=path or "/",
                        host=backend.host, port=backend.port, reason=failure.getErrorMessage())
