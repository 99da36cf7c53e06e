"""Home volumes on a Docker engine, through the provisioner's bounded thread pool: created with
their labels, listed and measured by label, removed only when no container mounts them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import docker
from docker.errors import APIError, NotFound
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from ..homes import Home
from ..homes.interface import HomeVolume, HomeVolumeFailed, HomeVolumeInUse, IHomeVolumes
from ._docker_common import api_reason
from .docker import DockerProvisioner
from .interface import LABEL_HOME, LABEL_INSTANCE, LABEL_OWNER


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
                self._log.info("created home volume {volume} for {user} ({home})",
                               volume=home.volume, user=home.owner, home=home.key)
            return created

        return d.addCallback(logged)

    def remove(self, volume: str) -> Deferred[bool]:
        d = self._provisioner.in_thread(self._remove_blocking, volume)

        def logged(removed: bool) -> bool:
            if removed:
                self._log.info("removed home volume {volume}", volume=volume)
            return removed

        return d.addCallback(logged)

    def list(self, instance: str) -> Deferred[list[HomeVolume]]:
        return self._provisioner.in_thread(_list_blocking, instance)

    def usage(self, instance: str) -> Deferred[Mapping[str, int]]:
        return self._provisioner.in_thread(self._usage_blocking, instance)

    # -- in worker threads ----------------------------------------------------------------

    @staticmethod
    def _ensure_blocking(api: docker.APIClient, home: Home) -> bool:
        try:
            api.inspect_volume(home.volume)
            return False
        except NotFound:
            pass
        # Creating an existing volume is no error for the engine, so two starts racing here
        # both succeed with the same volume.
        try:
            api.create_volume(home.volume, driver="local", labels=dict(home.labels))
        except APIError as e:
            if e.is_server_error():
                raise  # the provisioner's plumbing makes that an unavailable engine
            raise HomeVolumeFailed(f"the container engine refused to create volume {home.volume}: "
                                   f"{api_reason(e)}") from e
        return True

    @staticmethod
    def _remove_blocking(api: docker.APIClient, volume: str) -> bool:
        try:
            api.remove_volume(volume)
        except NotFound:
            return False
        except APIError as e:
            # 409: "volume is in use - [container ids]", running or stopped alike.
            if e.status_code == 409:
                raise HomeVolumeInUse(api_reason(e)) from e
            if e.is_server_error():
                raise
            raise HomeVolumeFailed(api_reason(e)) from e
        return True

    @staticmethod
    def _usage_blocking(api: docker.APIClient, instance: str) -> Mapping[str, int]:
        # /system/df is the one call that sizes volumes; it sizes every volume on the engine,
        # which is why this runs every [homes] usage_interval and not per request.
        volumes = api.df().get("Volumes") or ()
        sizes = {}
        for volume in volumes:
            labels = volume.get("Labels") or {}
            size = (volume.get("UsageData") or {}).get("Size", -1)
            # -1: the engine could not size it (a driver without usage data).
            if labels.get(LABEL_INSTANCE) == instance and LABEL_HOME in labels and size >= 0:
                sizes[volume["Name"]] = int(size)
        return sizes


def _list_blocking(api: docker.APIClient, instance: str) -> list[HomeVolume]:
    answer = api.volumes(filters={"label": [f"{LABEL_INSTANCE}={instance}", LABEL_HOME]})
    return [_home_volume(v) for v in answer.get("Volumes") or ()]


def _home_volume(volume: Mapping[str, Any]) -> HomeVolume:
    labels = volume.get("Labels") or {}
    return HomeVolume(
        volume=volume["Name"], owner=labels.get(LABEL_OWNER, ""), key=labels.get(LABEL_HOME, ""),
        created=_engine_time(volume.get("CreatedAt")),
    )


def _engine_time(text: str | None) -> float | None:
    """The engine's RFC 3339 time ("2026-12-02T06:00:00Z", "...+01:00") in epoch seconds."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
