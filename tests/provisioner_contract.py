"""The behaviour every IContainerProvisioner must show, as one set of tests run against each.

A test module subclasses ProvisionerContract (the name has no Test prefix, so pytest collects
only the subclasses) and overrides its fixtures:

- `provisioner`: the implementation under test, which must remove every container it made for
  `instance` and `other_instance` when the test ends, whatever happened;
- `unreachable_provisioner`: the same implementation with its engine down;
- `desktop`: a DesktopType whose image exists for `provisioner`;
- `kill_from_outside`: kills a container of `provisioner` as `docker kill` would, behind the
  provisioner's back.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from types import MappingProxyType

import attr
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from desktop_relay.config import DesktopType
from desktop_relay.engine.interface import (
    ContainerEngineUnavailable,
    ContainerEvent,
    ContainerSpec,
    ContainerStartFailed,
    IContainerProvisioner,
    IEventFollower,
    ImagePullFailed,
)

MISSING_IMAGE = "desktop-relay/no-such-image:never-built"


def make_desktop(image: str, name: str = "demo", **changes: object) -> DesktopType:
    """A desktop type as config.py would read it, with Kasm's defaults."""
    desktop = DesktopType(
        name=name,
        image=image,
        title=name,
        description="",
        shm_size="512m",
        memory=None,
        cpus=None,
        pids_limit=None,
        environment=MappingProxyType({}),
        groups=frozenset({"*"}),
        users=frozenset(),
    )
    return attr.evolve(desktop, **changes)


def make_spec(instance: str, desktop: DesktopType, owner: str = "alice") -> ContainerSpec:
    """A spec for a new session with a random id and password."""
    return ContainerSpec(
        session_id=secrets.token_urlsafe(16),
        owner=owner,
        instance=instance,
        desktop=desktop,
        vnc_password=secrets.token_urlsafe(16),
    )


class EventRecorder:
    """The three callbacks of follow_events, recording what they are told, and a way to await it."""

    def __init__(self) -> None:
        self.events: list[ContainerEvent] = []
        self.connections = 0
        self.losses: list[str] = []
        self._waiting: list[tuple[Callable[[], object], Deferred[None]]] = []

    def follow(self, provisioner: IContainerProvisioner, instance: str) -> IEventFollower:
        return provisioner.follow_events(instance, self.on_event, self.on_connected, self.on_lost)

    def on_event(self, event: ContainerEvent) -> None:
        self.events.append(event)
        self._check()

    def on_connected(self) -> None:
        self.connections += 1
        self._check()

    def on_lost(self, reason: str) -> None:
        self.losses.append(reason)
        self._check()

    def of(self, container_id: str) -> list[str]:
        """The actions announced for a container, in order."""
        return [e.action for e in self.events if e.container_id == container_id]

    def event(self, container_id: str, action: str) -> ContainerEvent:
        [event] = [e for e in self.events if e.container_id == container_id and e.action == action]
        return event

    async def until(self, condition: Callable[[], object], timeout: float = 10.0) -> None:
        """Wait until condition() is true (it is checked whenever a callback was called)."""
        from twisted.internet import reactor

        if condition():
            return
        d: Deferred[None] = Deferred()
        self._waiting.append((condition, d))
        d.addTimeout(timeout, reactor)
        await d

    def _check(self) -> None:
        for entry in list(self._waiting):
            condition, d = entry
            if condition():
                self._waiting.remove(entry)
                d.callback(None)


class ProvisionerContract:
    """Shared tests; subclasses supply the fixtures named in the module docstring."""

    @pytest.fixture
    def instance(self) -> str:
        return f"test-{uuid.uuid4().hex[:10]}"

    @pytest.fixture
    def other_instance(self, instance: str) -> str:
        return instance + "-other"

    @pytest.fixture
    def provisioner(self, instance: str, other_instance: str) -> IContainerProvisioner:
        raise NotImplementedError

    @pytest.fixture
    def unreachable_provisioner(self) -> IContainerProvisioner:
        raise NotImplementedError

    @pytest.fixture
    def desktop(self) -> DesktopType:
        raise NotImplementedError

    @pytest.fixture
    def kill_from_outside(self, provisioner: IContainerProvisioner) -> Callable[[str], None]:
        raise NotImplementedError

    def test_provides_the_interface(self, provisioner: IContainerProvisioner) -> None:
        assert IContainerProvisioner.providedBy(provisioner)

    @pytest_twisted.ensureDeferred
    async def test_start_returns_a_running_labelled_container_with_a_host_port(
        self, provisioner: IContainerProvisioner, instance: str, desktop: DesktopType
    ) -> None:
        spec = make_spec(instance, desktop)
        info = await provisioner.start(spec)
        assert info.running
        assert info.status == "running"
        assert info.problem is None
        assert (info.session_id, info.owner, info.desktop) == (spec.session_id, "alice", desktop.name)
        assert info.host_port is not None and 1024 <= info.host_port <= 65535
        assert info.vnc_password == spec.vnc_password

    @pytest_twisted.ensureDeferred
    async def test_inspect_reflects_a_started_container(
        self, provisioner: IContainerProvisioner, instance: str, desktop: DesktopType
    ) -> None:
        spec = make_spec(instance, desktop)
        started = await provisioner.start(spec)
        info = await provisioner.inspect(started.container_id)
        assert info is not None
        assert info.container_id == started.container_id
        assert info.running
        assert info.host_port == started.host_port
        assert info.session_id == spec.session_id
        assert info.vnc_password == spec.vnc_password

    @pytest_twisted.ensureDeferred
    async def test_list_managed_finds_this_instances_containers_only(
        self,
        provisioner: IContainerProvisioner,
        instance: str,
        other_instance: str,
        desktop: DesktopType,
    ) -> None:
        ours = await provisioner.start(make_spec(instance, desktop))
        theirs = await provisioner.start(make_spec(other_instance, desktop, owner="bob"))
        listed = await provisioner.list_managed(instance)
        assert [info.container_id for info in listed] == [ours.container_id]
        assert listed[0].owner == "alice"
        assert [i.container_id for i in await provisioner.list_managed(other_instance)] == [
            theirs.container_id
        ]

    @pytest_twisted.ensureDeferred
    async def test_a_pooled_container_is_listed_as_pooled_with_no_owner(
        self, provisioner: IContainerProvisioner, instance: str, desktop: DesktopType
    ) -> None:
        pooled = await provisioner.start(attr.evolve(make_spec(instance, desktop, owner=""), pooled=True))
        ordinary = await provisioner.start(make_spec(instance, desktop))
        listed = {info.container_id: info for info in await provisioner.list_managed(instance)}
        assert listed[pooled.container_id].pooled and listed[pooled.container_id].owner == ""
        assert not listed[ordinary.container_id].pooled

    @pytest_twisted.ensureDeferred
    async def test_remove_removes_the_container_and_may_be_repeated(
        self, provisioner: IContainerProvisioner, instance: str, desktop: DesktopType
    ) -> None:
        info = await provisioner.start(make_spec(instance, desktop))
        await provisioner.remove(info.container_id, 5)
        assert await provisioner.inspect(info.container_id) is None
        assert await provisioner.list_managed(instance) == []
        await provisioner.remove(info.container_id, 5)
        assert await provisioner.logs_tail(info.container_id, 10) == ""

    @pytest_twisted.ensureDeferred
    async def test_a_missing_image_fails_the_start_and_leaves_no_container(
        self, provisioner: IContainerProvisioner, instance: str, desktop: DesktopType
    ) -> None:
        missing = attr.evolve(desktop, image=MISSING_IMAGE)
        with pytest.raises(ContainerStartFailed) as failure:
            await provisioner.start(make_spec(instance, missing))
        assert str(failure.value) == (
            f"desktop image '{MISSING_IMAGE}' is not on this server: build or pull it"
        )
        assert await provisioner.list_managed(instance) == []

    @pytest_twisted.ensureDeferred
    async def test_every_call_fails_with_engine_unavailable_when_the_engine_is_down(
        self, unreachable_provisioner: IContainerProvisioner, instance: str, desktop: DesktopType
    ) -> None:
        calls = [
            lambda p: p.start(make_spec(instance, desktop)),
            lambda p: p.inspect("0123456789ab"),
            lambda p: p.logs_tail("0123456789ab", 10),
            lambda p: p.remove("0123456789ab", 1),
            lambda p: p.list_managed(instance),
            lambda p: p.image_present(desktop.image),
            lambda p: p.engine_summary(instance),
            lambda p: p.pull_image(desktop.image, lambda message: None).done,
        ]
        for call in calls:
            with pytest.raises(ContainerEngineUnavailable) as failure:
                await call(unreachable_provisioner)
            assert str(failure.value).startswith("Docker engine unreachable at ")

    @pytest_twisted.ensureDeferred
    async def test_image_presence_and_the_engine_summary_of_this_instance(
        self, provisioner: IContainerProvisioner, instance: str, other_instance: str, desktop: DesktopType
    ) -> None:
        assert await provisioner.image_present(desktop.image) is True
        assert await provisioner.image_present(MISSING_IMAGE) is False
        running = await provisioner.start(make_spec(instance, desktop))
        await provisioner.start(make_spec(other_instance, desktop))
        summary = await provisioner.engine_summary(instance)
        assert (summary.containers_running, summary.containers_all) == (1, 1)
        assert summary.version and summary.api_version and summary.memory > 0 and summary.cpus > 0
        await provisioner.remove(running.container_id, 1)
        summary = await provisioner.engine_summary(instance)
        assert (summary.containers_running, summary.containers_all) == (0, 0)

    @pytest_twisted.ensureDeferred
    async def test_a_pull_from_nowhere_fails_with_a_reason_and_no_progress(
        self, provisioner: IContainerProvisioner
    ) -> None:
        messages: list[object] = []
        # Port 9 (discard) on loopback: no registry answers there.
        with pytest.raises(ImagePullFailed) as failure:
            await provisioner.pull_image("127.0.0.1:9/nothing:here", messages.append).done
        assert str(failure.value) and messages == []

    @pytest_twisted.ensureDeferred
    async def test_inspect_of_an_unknown_container_is_none(
        self, provisioner: IContainerProvisioner
    ) -> None:
        assert await provisioner.inspect("0123456789ab" * 5 + "0123") is None


    @pytest_twisted.ensureDeferred
    async def test_events_announce_a_start_and_a_kill_from_outside_within_a_second(
        self,
        provisioner: IContainerProvisioner,
        instance: str,
        desktop: DesktopType,
        kill_from_outside: Callable[[str], None],
    ) -> None:
        seen = EventRecorder()
        follower = seen.follow(provisioner, instance)
        await seen.until(lambda: seen.connections)
        spec = make_spec(instance, desktop)
        info = await provisioner.start(spec)
        await seen.until(lambda: "start" in seen.of(info.container_id))
        assert seen.of(info.container_id)[:2] == ["create", "start"]
        assert seen.event(info.container_id, "start").session_id == spec.session_id
        killed = time.monotonic()
        kill_from_outside(info.container_id)
        await seen.until(lambda: "die" in seen.of(info.container_id), timeout=1)
        assert time.monotonic() - killed < 1
        died = seen.event(info.container_id, "die")
        assert (died.exit_code, died.session_id) == (137, spec.session_id)
        assert abs(died.at - time.time()) < 5
        after = await provisioner.inspect(info.container_id)
        assert after is not None
        assert (after.running, after.status, after.exit_code, after.oom_killed) == (False, "exited", 137, False)
        assert after.started_at is not None and after.finished_at is not None
        assert after.started_at <= after.finished_at <= time.time() + 1
        assert (seen.connections, seen.losses) == (1, [])
        await follower.stop()

    @pytest_twisted.ensureDeferred
    async def test_events_announce_a_removal_and_leave_out_other_instances(
        self,
        provisioner: IContainerProvisioner,
        instance: str,
        other_instance: str,
        desktop: DesktopType,
    ) -> None:
        seen = EventRecorder()
        follower = seen.follow(provisioner, instance)
        await seen.until(lambda: seen.connections)
        theirs = await provisioner.start(make_spec(other_instance, desktop, owner="bob"))
        ours = await provisioner.start(make_spec(instance, desktop))
        await provisioner.remove(ours.container_id, 5)
        await seen.until(lambda: "destroy" in seen.of(ours.container_id))
        assert seen.of(ours.container_id)[:2] == ["create", "start"]
        assert "die" in seen.of(ours.container_id)
        assert seen.of(theirs.container_id) == []
        await follower.stop()

    @pytest_twisted.ensureDeferred
    async def test_a_stopped_follower_lets_go_at_once_and_is_told_nothing_more(
        self, provisioner: IContainerProvisioner, instance: str, desktop: DesktopType
    ) -> None:
        seen = EventRecorder()
        follower = seen.follow(provisioner, instance)
        await seen.until(lambda: seen.connections)
        began = time.monotonic()
        await follower.stop()
        assert time.monotonic() - began < 0.5
        info = await provisioner.start(make_spec(instance, desktop))
        await provisioner.remove(info.container_id, 5)
        assert seen.events == []
        assert (seen.connections, seen.losses) == (1, [])

    @pytest_twisted.ensureDeferred
    async def test_following_an_unreachable_engine_tells_it_lost_and_can_be_stopped(
        self, unreachable_provisioner: IContainerProvisioner, instance: str
    ) -> None:
        seen = EventRecorder()
        follower = seen.follow(unreachable_provisioner, instance)
        await seen.until(lambda: seen.losses)
        [reason] = seen.losses
        assert reason.startswith("Docker engine unreachable at ")
        assert seen.connections == 0
        await follower.stop()
