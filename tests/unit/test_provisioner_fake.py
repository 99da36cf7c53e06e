"""FakeProvisioner: held to the provisioner contract, plus its own controls for tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from fakes import FakeProvisioner
from provisioner_contract import EventRecorder, ProvisionerContract, make_desktop, make_spec
from twisted.internet.defer import Deferred

from desktop_relay.config import DesktopType
from desktop_relay.engine.interface import ContainerEngineTimedOut, ContainerStartFailed

T = TypeVar("T")

IMAGE = "fake/desktop:latest"


class TestFakeProvisioner(ProvisionerContract):
    @pytest.fixture
    def provisioner(self, instance: str, other_instance: str) -> FakeProvisioner:
        return FakeProvisioner(images=[IMAGE])

    @pytest.fixture
    def unreachable_provisioner(self) -> FakeProvisioner:
        fake = FakeProvisioner(images=[IMAGE])
        fake.engine_down = True
        return fake

    @pytest.fixture
    def desktop(self) -> DesktopType:
        return make_desktop(IMAGE)

    @pytest.fixture
    def kill_from_outside(self, provisioner: FakeProvisioner) -> Callable[[str], None]:
        return provisioner.kill


def result_of(d: Deferred[T]) -> Any:
    """What a Deferred of the fake holds: its result or its Failure (they fire at once)."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the fake's Deferred did not fire synchronously"
    return results[0]


def started(fake: FakeProvisioner) -> Any:
    """Start a container on the fake: its ContainerInfo, or the Failure."""
    return result_of(fake.start(make_spec("test", make_desktop(IMAGE))))


def test_a_forced_start_failure_leaves_nothing_and_applies_once() -> None:
    fake = FakeProvisioner(images=[IMAGE])
    fake.fail_next_start("no space left on device")
    failure = started(fake)
    assert failure.check(ContainerStartFailed)
    assert str(failure.value) == "no space left on device"
    assert fake.containers == {}
    assert started(fake).running


def test_an_exited_container_reports_its_problem() -> None:
    fake = FakeProvisioner(images=[IMAGE])
    info = started(fake)
    fake.exit(info.container_id, exit_code=3)
    after = result_of(fake.inspect(info.container_id))
    assert (after.running, after.status, after.exit_code) == (False, "exited", 3)
    assert after.problem == "exited with code 3"
    assert after.host_port is None


def test_an_out_of_memory_exit_says_so() -> None:
    fake = FakeProvisioner(images=[IMAGE])
    info = started(fake)
    fake.exit(info.container_id, oom=True)
    assert result_of(fake.inspect(info.container_id)).problem == "ran out of memory and was killed"


def test_host_ports_come_from_the_given_sequence() -> None:
    fake = FakeProvisioner(images=[IMAGE], host_ports=[45001, 45007])
    assert [started(fake).host_port, started(fake).host_port] == [45001, 45007]


def test_logs_tail_returns_the_last_lines() -> None:
    fake = FakeProvisioner(images=[IMAGE])
    info = started(fake)
    fake.containers[info.container_id].logs = "one\ntwo\nthree\n"
    assert result_of(fake.logs_tail(info.container_id, 2)) == "two\nthree\n"


def test_container_for_finds_a_session_and_removed_records_removals() -> None:
    fake = FakeProvisioner(images=[IMAGE])
    info = started(fake)
    assert fake.container_for(info.session_id).container_id == info.container_id
    result_of(fake.remove(info.container_id, 1))
    assert fake.container_for(info.session_id) is None
    assert fake.removed == [info.container_id]


def test_an_exit_is_announced_with_its_code_and_an_oom_kill_before_it() -> None:
    fake = FakeProvisioner(images=[IMAGE])
    seen = EventRecorder()
    seen.follow(fake, "test")
    crashed, starved = started(fake), started(fake)
    fake.exit(crashed.container_id, exit_code=3)
    fake.exit(starved.container_id, oom=True)
    assert seen.of(crashed.container_id) == ["create", "start", "die"]
    assert seen.event(crashed.container_id, "die").exit_code == 3
    assert seen.of(starved.container_id) == ["create", "start", "oom", "die"]
    assert seen.event(starved.container_id, "die").exit_code == 137
    assert result_of(fake.inspect(starved.container_id)).oom_killed


def test_engine_down_and_back_is_told_to_followers_and_hides_what_happens_meanwhile() -> None:
    fake = FakeProvisioner(images=[IMAGE])
    seen = EventRecorder()
    seen.follow(fake, "test")
    info = started(fake)
    fake.engine_down = True
    fake.exit(info.container_id)
    fake.engine_down = False
    assert (seen.connections, seen.losses) == (2, ["Docker engine unreachable at fake://engine: it is down"])
    assert seen.of(info.container_id) == ["create", "start"]
    late = EventRecorder()
    fake.engine_down = True
    late.follow(fake, "test")
    assert (late.connections, len(late.losses)) == (0, 1)


def test_a_timed_out_start_is_carried_out_later_and_a_new_start_of_its_session_replaces_it() -> None:
    fake = FakeProvisioner(images=[IMAGE])
    seen = EventRecorder()
    seen.follow(fake, "test")
    spec = make_spec("test", make_desktop(IMAGE))
    fake.time_out_next_start()
    failure = result_of(fake.start(spec))
    assert failure.check(ContainerEngineTimedOut)
    assert fake.containers == {}
    [leftover] = fake.carry_out_timed_out_starts()
    assert seen.of(leftover) == ["create", "start"]
    assert fake.container_for(spec.session_id).container_id == leftover
    again = result_of(fake.start(spec))
    assert seen.of(leftover) == ["create", "start", "kill", "die", "stop", "destroy"]
    assert list(fake.containers) == [again.container_id]


def test_a_stopped_follower_of_the_fake_hears_nothing_more() -> None:
    fake = FakeProvisioner(images=[IMAGE])
    seen = EventRecorder()
    result_of(seen.follow(fake, "test").stop())
    started(fake)
    assert seen.events == []
