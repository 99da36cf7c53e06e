"""FakeHomeVolumes: held to the home volumes contract, as DockerHomeVolumes is."""

from __future__ import annotations

import pytest
from fakes import FakeHomeVolumes, FakeProvisioner
from home_volumes_contract import HomeVolumesContract
from provisioner_contract import make_desktop

from desktop_relay.config import DesktopType

IMAGE = "fake/desktop:latest"


class TestFakeHomeVolumes(HomeVolumesContract):
    @pytest.fixture
    def provisioner(self, instance: str, other_instance: str) -> FakeProvisioner:
        return FakeProvisioner(images=[IMAGE])

    @pytest.fixture
    def volumes(self, provisioner: FakeProvisioner) -> FakeHomeVolumes:
        return FakeHomeVolumes(provisioner)

    @pytest.fixture
    def desktop(self) -> DesktopType:
        return make_desktop(IMAGE)
