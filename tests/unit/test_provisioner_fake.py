"""FakeProvisioner: held to the provisioner contract, plus its own controls for tests."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest
from fakes import FakeProvisioner
from provisioner_contract import ProvisionerContract, make_desktop, make_spec
from twisted.internet.defer import Deferred

from desktop_relay.config import DesktopType
from desktop_relay.containers import ContainerStartFailed

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
