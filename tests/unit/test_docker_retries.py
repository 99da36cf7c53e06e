"""The retry schedules of DockerProvisioner's event follower and leftover sweeper, on a
task.Clock with a stand-in for the provisioner's thread plumbing (the real engine's side of
both is proven in tests/integration/test_docker_provisioner.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from provisioner_contract import EventRecorder, make_desktop, make_spec
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock

from desktop_relay.engine.docker_events import EventFollower
from desktop_relay.engine.docker_sweeper import LeftoverSweeper
from desktop_relay.engine.interface import ContainerEngineTimedOut, ContainerEngineUnavailable


class UnansweringProvisioner:
    """What the follower and the sweeper use of DockerProvisioner, with every call failing."""

    engine_address = "unix:///stub/docker.sock"
    _timeout = 1

    def __init__(self, clock: Clock, error: Exception) -> None:
        self._reactor = clock
        self._error = error
        self.attempts: list[float] = []

    def _in_thread_quietly(self, operation: Callable[..., Any], *args: Any) -> Deferred:
        self.attempts.append(self._reactor.seconds())
        return fail(self._error)


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in zip(times, times[1:], strict=False)]


def test_the_follower_retries_after_half_a_second_doubling_to_ten_and_tells_the_loss_once() -> None:
    clock = Clock()
    engine = UnansweringProvisioner(clock, ContainerEngineUnavailable("Docker engine unreachable at x: Connection refused"))
    seen = EventRecorder()
    follower = EventFollower(engine, "test", seen.on_event, seen.on_connected, seen.on_lost)
    follower.connect()
    clock.pump([0.25] * 200)
    assert gaps(engine.attempts)[:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert seen.losses == ["Docker engine unreachable at x: Connection refused"]
    stopped = []
    follower.stop().addCallback(stopped.append)
    assert stopped == [None]
    tried = len(engine.attempts)
    clock.advance(60)
    assert len(engine.attempts) == tried
    assert clock.getDelayedCalls() == []


def test_the_sweeper_retries_with_the_same_backoff_until_the_watch_ends() -> None:
    clock = Clock()
    engine = UnansweringProvisioner(clock, ContainerEngineTimedOut("Docker engine at x did not answer within 1 s"))
    sweeper = LeftoverSweeper(engine, clock, watch_for=60)
    sweeper.watch(make_spec("test", make_desktop("fake/desktop:latest")))
    idle: list[None] = []
    sweeper.when_idle().addCallback(idle.append)
    clock.pump([0.25] * 400)
    # The last sweep within the watch at 55.5 s; the next, at 65.5 s, finds the watch over.
    assert engine.attempts == [0.5, 1.5, 3.5, 7.5, 15.5, 25.5, 35.5, 45.5, 55.5]
    assert idle == [None]
    assert clock.getDelayedCalls() == []


def test_a_session_started_again_is_no_longer_swept_for() -> None:
    clock = Clock()
    engine = UnansweringProvisioner(clock, ContainerEngineTimedOut("Docker engine at x did not answer within 1 s"))
    sweeper = LeftoverSweeper(engine, clock, watch_for=60)
    spec = make_spec("test", make_desktop("fake/desktop:latest"))
    sweeper.watch(spec)
    assert sweeper.forget(spec.session_id)
    assert not sweeper.forget(spec.session_id)
    clock.advance(5)
    assert engine.attempts == []
    assert clock.getDelayedCalls() == []
