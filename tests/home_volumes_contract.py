"""The behaviour every IHomeVolumes must show, as one set of tests run against each.

A test module subclasses HomeVolumesContract (no Test prefix: only the subclasses are collected)
and overrides its fixtures:

- `provisioner`: the container engine the volumes belong to, which must remove every container
  and volume of `instance` and `other_instance` when the test ends;
- `volumes`: the IHomeVolumes under test, on that engine;
- `desktop`: a DesktopType whose image exists for `provisioner`.
"""

from __future__ import annotations

import uuid

import attr
import pytest
import pytest_twisted
from provisioner_contract import make_spec

from desktop_relay.config import DesktopType
from desktop_relay.engine.interface import IContainerProvisioner
from desktop_relay.homes import Home, home_for
from desktop_relay.homes.interface import HomeVolumeInUse, IHomeVolumes


class HomeVolumesContract:
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
    def volumes(self, provisioner: IContainerProvisioner) -> IHomeVolumes:
        raise NotImplementedError

    @pytest.fixture
    def desktop(self) -> DesktopType:
        raise NotImplementedError

    @staticmethod
    def home(instance: str, desktop: DesktopType, owner: str = "alice") -> Home:
        home = home_for(instance, desktop, owner)
        assert home is not None
        return home

    def test_provides_the_interface(self, volumes: IHomeVolumes) -> None:
        assert IHomeVolumes.providedBy(volumes)

    @pytest_twisted.ensureDeferred
    async def test_ensure_creates_a_home_once_and_lists_it_with_its_owner(
        self, volumes: IHomeVolumes, instance: str, other_instance: str, desktop: DesktopType
    ) -> None:
        home = self.home(instance, desktop)
        assert await volumes.ensure(home) is True
        assert await volumes.ensure(home) is False
        await volumes.ensure(self.home(other_instance, desktop))
        (listed,) = await volumes.list(instance)
        assert (listed.volume, listed.owner, listed.key) == (home.volume, "alice", "default")

    @pytest_twisted.ensureDeferred
    async def test_usage_names_only_this_instances_homes(
        self, volumes: IHomeVolumes, instance: str, other_instance: str, desktop: DesktopType
    ) -> None:
        home = self.home(instance, desktop)
        await volumes.ensure(home)
        await volumes.ensure(self.home(other_instance, desktop, "bob"))
        usage = await volumes.usage(instance)
        assert set(usage) <= {home.volume}
        assert all(isinstance(size, int) and size >= 0 for size in usage.values())

    @pytest_twisted.ensureDeferred
    async def test_a_home_a_container_mounts_is_kept_until_the_container_goes(
        self, volumes: IHomeVolumes, provisioner: IContainerProvisioner, instance: str, desktop: DesktopType
    ) -> None:
        home = self.home(instance, desktop)
        await volumes.ensure(home)
        info = await provisioner.start(attr.evolve(make_spec(instance, desktop), mounts=(home.mount,)))
        with pytest.raises(HomeVolumeInUse):
            await volumes.remove(home.volume)
        assert [v.volume for v in await volumes.list(instance)] == [home.volume]
        await provisioner.remove(info.container_id, 1)
        assert await volumes.remove(home.volume) is True
        assert await volumes.list(instance) == []

    @pytest_twisted.ensureDeferred
    async def test_removing_a_home_that_does_not_exist_says_so(
        self, volumes: IHomeVolumes, instance: str, desktop: DesktopType
    ) -> None:
        assert await volumes.remove(self.home(instance, desktop).volume) is False
