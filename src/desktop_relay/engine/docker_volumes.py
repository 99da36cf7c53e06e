"""Home volumes on a Docker engine, through the provisioner's bounded thread pool."""

from __future__ import annotations

import docker
from docker.errors import NotFound
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from ..homes import Home
from ..homes.interface import IHomeVolumes
from .docker import DockerProvisioner


@implementer(IHomeVolumes)
class DockerHomeVolumes:
    """IHomeVolumes with the local volume driver of the provisioner's engine."""

    _log = Logger()

    def __init__(self, provisioner: DockerProvisioner) -> None:
        self._provisioner = provisioner

    def ensure(self, home: Home) -> Deferred[bool]:
        d = self._provisioner.in_thread(self._ensure_blocking, home)

        def logged(created: bool) -> bool:
            if created:
                self._log.info("created home volume {volume} for {user}", volume=home.volume, user=home.owner)
            return created

        return d.addCallback(logged)

    @staticmethod
    def _ensure_blocking(api: docker.APIClient, home: Home) -> bool:
        try:
            api.inspect_volume(home.volume)
            return False
        except NotFound:
            pass
        # Creating an existing volume is no error for the engine, so two starts racing here
        # both succeed with the same volume.
        api.create_volume(home.volume, driver="local", labels=dict(home.labels))
        return True
