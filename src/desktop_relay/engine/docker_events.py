"""Following a Docker engine's container events: opening the event stream with a bounded wait
for the engine's answer, reading it in a pool thread of the provisioner, and reconnecting with
backoff, driven from the reactor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import docker
import requests
from docker.errors import APIError, StreamParseError
from docker.types import CancellableStream
from docker.utils import convert_filters
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._docker_common import FIRST_RETRY, MAX_RETRY, ProvisionerThreads, api_reason, container_event_from_engine
from .interface import LABEL_INSTANCE, ContainerEngineUnavailable, ContainerEvent, IEventFollower


def _open_event_stream(
    api: docker.APIClient, filters: Mapping[str, str], timeout: float
) -> tuple[CancellableStream, requests.Response]:
    """GET /events as `APIClient.events(decode=True, filters=...)` does, except that the wait for
    the engine's answer is bounded by `timeout`: events() waits for it without any limit, so a
    hung engine would hold the worker thread (and a stop()) for good. Once the engine has
    answered, the stream has no read timeout: events may come hours apart."""
    # The private helpers events() itself is made of, which docker-py's stubs leave out.
    internals: Any = api
    response = internals._get(
        internals._url("/events"), params={"filters": convert_filters(filters)}, stream=True, timeout=timeout
    )
    try:
        internals._disable_socket_timeout(internals._get_raw_response_socket(response))
    except BaseException:
        response.close()
        raise
    return CancellableStream(internals._stream_helper(response, decode=True), response), response

@implementer(IEventFollower)
class EventFollower:
    """One subscription to the engine's container events: the stream, read in a pool thread,
    and its reconnection with backoff, driven from the reactor."""

    _log = Logger()

    def __init__(
        self,
        provisioner: ProvisionerThreads,
        instance: str,
        on_event: Callable[[ContainerEvent], None],
        on_connected: Callable[[], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self._provisioner = provisioner
        self._reactor: Any = provisioner._reactor
        self._instance = instance
        self._filters = {"type": "container", "label": f"{LABEL_INSTANCE}={instance}"}
        self._on_event = on_event
        self._on_connected = on_connected
        self._on_lost = on_lost
        # The open stream, for stop() to close from outside; shared with the worker thread.
        self._lock = threading.Lock()
        self._stream: CancellableStream | None = None
        self._stopping = False
        # The reactor's side: the worker's Deferred while it runs, the pending retry, the
        # backoff, and what the owner was told last (None: nothing yet, True: connected,
        # False: lost), so that a failed retry does not tell it again.
        self._reading: Deferred[str] | None = None
        self._retry: IDelayedCall | None = None
        self._delay = FIRST_RETRY
        self._up: bool | None = None
        self._lost_at = 0.0

    def connect(self) -> None:
        """Open the stream (again) in a pool thread."""
        self._retry = None
        self._reading = self._provisioner._in_thread_quietly(self._events_blocking)
        self._reading.addBoth(self._ended)

    def stop(self) -> Deferred[None]:
        """Stop following; fires when the worker thread has let go of the stream."""
        with self._lock:
            self._stopping = True
            if self._stream is not None:
                # Shuts the socket down under the worker's blocking read, which then ends.
                self._stream.close()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._reading is None:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._reading.addBoth(lambda _: done.callback(None))
        return done

    def _events_blocking(self, api: docker.APIClient) -> str:
        stream, response = _open_event_stream(api, self._filters, self._provisioner._timeout)
        with self._lock:
            if self._stopping:
                response.close()
                return "stopped"
            self._stream = stream
        try:
            # Only now: the engine has subscribed us, so a reconcile the owner does next misses
            # no event.
            self._reactor.callFromThread(self._established)
            for message in stream:
                event = container_event_from_engine(message)
                if event is not None:
                    self._reactor.callFromThread(self._deliver, event)
        except StreamParseError:
            return "the event stream broke off in the middle of an event"
        finally:
            with self._lock:
                self._stream = None
            response.close()
        return "the engine closed the event stream"

    def _established(self) -> None:
        if self._stopping:
            return
        engine = self._provisioner.engine_address
        if self._up is False:
            self._log.info(
                "following Docker events of instance {instance} at {engine} again, after {outage:.1f} s",
                instance=self._instance,
                engine=engine,
                outage=self._reactor.seconds() - self._lost_at,
            )
        else:
            self._log.info(
                "following Docker events of instance {instance} at {engine}", instance=self._instance, engine=engine
            )
        self._up = True
        self._delay = FIRST_RETRY
        self._tell(self._on_connected)

    def _deliver(self, event: ContainerEvent) -> None:
        if not self._stopping:
            self._tell(self._on_event, event)

    def _ended(self, result: str | Failure) -> None:
        self._reading = None
        if self._stopping:
            return
        if isinstance(result, Failure):
            if result.check(ContainerEngineUnavailable):
                reason = str(result.value)
            elif result.check(APIError):
                reason = f"the engine refused the event stream: {api_reason(result.value)}"
            else:
                self._log.failure("following Docker events failed", result)
                reason = f"following the events failed: {result.getErrorMessage()}"
        else:
            reason = result
        # Scheduled before the owner hears of it, so that a stop() from on_lost cancels it.
        self._retry = self._reactor.callLater(self._delay, self.connect)
        self._delay = min(self._delay * 2, MAX_RETRY)
        if self._up is not False:
            self._log.warn(
                "{what} Docker's event stream at {engine}: {reason}; retrying with backoff",
                what="lost" if self._up else "cannot open",
                engine=self._provisioner.engine_address,
                reason=reason,
            )
            self._up = False
            self._lost_at = self._reactor.seconds()
            self._tell(self._on_lost, reason)

    def _tell(self, callback: Callable[..., None], *args: Any) -> None:
        # The owner's mistake must not stop the stream: log it and carry on.
        maybeDeferred(callback, *args).addErrback(
            lambda failure: self._log.failure("the owner of the Docker event stream failed", failure)
        )
