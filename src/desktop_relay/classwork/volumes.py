"""Hand-out and hand-in volumes on a Docker engine: made and given to the desktop user, and each
class's hand-ins closed (made read-only for that user) or opened again, also while desktops
mount them. Every SDK call runs in the provisioner's bounded thread pool.

Docker cannot change a running container's mount from read-write to read-only, so closing works
on the files themselves: a short-lived root container owns everything in the hand-ins to root
and takes away every write permission (`chown -R 0:0`, `chmod -R a-w,a+rX`); the desktop user
(uid 1000) can then read but not write, in running desktops too. Opening gives them back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import docker
from docker.errors import APIError, NotFound
from docker.types import Mount as DockerMount
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ..engine._docker_common import api_reason
from ..engine.docker import DockerProvisioner
from ..engine.interface import LABEL_INSTANCE
from ..files.transfer import DownloadStream
from ..homes.interface import HomeVolumeFailed
from . import HANDIN, LABEL_CLASS, LABEL_CLASSWORK, ClassVolume
from .archive import zip_of_handins

# The root helper may change owners and modes, nothing else; it has no network.
_HELPER_CAPS = ["CHOWN", "FOWNER", "DAC_OVERRIDE"]
_HELPER_WAIT = 120


def _close_script() -> str:
    return 'for v in /v/*; do chown -R 0:0 "$v" && chmod -R a-w,a+rX "$v" || exit 1; done'


def _open_script(uid: int) -> str:
    return f'for v in /v/*; do chown -R {uid}:{uid} "$v" && chmod -R u+w "$v" || exit 1; done'


class DockerClassworkVolumes:
    """The classwork volumes of one relay instance on the provisioner's engine."""

    _log = Logger()

    def __init__(self, provisioner: DockerProvisioner, instance: str, image: str) -> None:
        """`image` runs the root helper; it needs `sh`, `chown` and `chmod` (any desktop image)."""
        self._provisioner = provisioner
        self._instance = instance
        self._image = image

    def ensure(self, volume: ClassVolume, closed: bool = False) -> Deferred[bool]:
        """Make the volume if it is missing, owned by its uid (or closed); True when made now."""
        d = self._provisioner.in_thread(self._ensure_blocking, volume, closed)

        def logged(created: bool) -> bool:
            if created:
                self._log.info("created {kind} volume {volume} of class {class_group} for {owner}",
                               kind=volume.kind, volume=volume.volume, class_group=volume.class_group,
                               owner=volume.owner)
            return created

        return d.addCallback(logged)

    def set_closed(self, class_group: str, closed: bool, uid: int) -> Deferred[int]:
        """Close (or open) every hand-in of a class on the engine; how many there are."""
        d = self._provisioner.in_thread(self._set_closed_blocking, class_group, closed, uid)

        def logged(count: int) -> int:
            self._log.info("{what} {count} hand-in(s) of class {class_group}",
                           what="closed" if closed else "opened", count=count, class_group=class_group)
            return count

        return d.addCallback(logged)

    def handins(self, class_group: str) -> Deferred[dict[str, str]]:
        """The hand-in volumes of a class on the engine, by pupil."""
        return self._provisioner.in_thread(self._handins_blocking, class_group)

    def stream_zip(self, volumes: Mapping[str, str], stream: DownloadStream) -> Deferred[int]:
        """Feed `stream` a zip of these hand-in volumes (by the folder each gets in the zip)."""
        return self._provisioner.in_thread(self._zip_blocking, volumes, stream)

    # -- in worker threads ----------------------------------------------------------------

    def _zip_blocking(self, api: docker.APIClient, volumes: Mapping[str, str], stream: DownloadStream) -> int:
        names = sorted(volumes)
        host_config = api.create_host_config(
            mounts=[DockerMount(f"/h/{i}", volumes[name], type="volume", read_only=True)
                    for i, name in enumerate(names)],
            network_mode="none", cap_drop=["ALL"], read_only=True,
        )
        # Never started: the engine copies out of a created container's mounts all the same.
        created = api.create_container(self._image, entrypoint=["true"], host_config=host_config,
                                       labels={LABEL_CLASSWORK: "helper"})
        try:
            chunks, _ = api.get_archive(created["Id"], "/h")
            return stream.feed(zip_of_handins(chunks, "h", {str(i): name for i, name in enumerate(names)}))
        finally:
            try:
                api.remove_container(created["Id"], force=True)
            except NotFound:
                pass

    def _ensure_blocking(self, api: docker.APIClient, volume: ClassVolume, closed: bool) -> bool:
        try:
            api.inspect_volume(volume.volume)
            return False
        except NotFound:
            pass
        try:
            api.create_volume(volume.volume, driver="local", labels=dict(volume.labels))
        except APIError as e:
            if e.is_server_error():
                raise
            raise HomeVolumeFailed(f"the container engine refused to create volume {volume.volume}: "
                                   f"{api_reason(e)}") from e
        # A new volume's root belongs to root: give it to the desktop user, unless it is closed.
        self._helper_blocking(api, [volume.volume], _close_script() if closed else _open_script(volume.uid))
        return True

    def _handins_blocking(self, api: docker.APIClient, class_group: str) -> dict[str, str]:
        answer = api.volumes(filters={"label": [f"{LABEL_INSTANCE}={self._instance}",
                                                f"{LABEL_CLASSWORK}={HANDIN}"]})
        found = {}
        for volume in answer.get("Volumes") or ():
            labels = volume.get("Labels") or {}
            # Filtered here, not by the engine: a class name may hold characters a filter may not.
            if labels.get(LABEL_CLASS) == class_group:
                found[labels.get("org.desktop-relay.owner", "")] = volume["Name"]
        return found

    def _set_closed_blocking(self, api: docker.APIClient, class_group: str, closed: bool, uid: int) -> int:
        volumes = sorted(self._handins_blocking(api, class_group).values())
        if volumes:
            self._helper_blocking(api, volumes, _close_script() if closed else _open_script(uid))
        return len(volumes)

    def _helper_blocking(self, api: docker.APIClient, volumes: Sequence[str], script: str) -> None:
        """Run `script` as root in a container with these volumes at /v/0, /v/1, ..."""
        host_config = api.create_host_config(
            mounts=[DockerMount(f"/v/{i}", name, type="volume") for i, name in enumerate(volumes)],
            network_mode="none", cap_drop=["ALL"], cap_add=_HELPER_CAPS, security_opt=["no-new-privileges"],
            read_only=True, mem_limit="64m", pids_limit=16,
        )
        created = api.create_container(self._image, entrypoint=["sh", "-c", script], user="0:0",
                                       host_config=host_config, labels={LABEL_CLASSWORK: "helper"})
        try:
            api.start(created["Id"])
            code = api.wait(created["Id"], timeout=_HELPER_WAIT).get("StatusCode")
            if code != 0:
                logs = api.logs(created["Id"], tail=3).decode("utf-8", "replace").strip()
                raise HomeVolumeFailed(f"changing the owners in {', '.join(volumes)} failed: {logs}")
        finally:
            try:
                api.remove_container(created["Id"], force=True)
            except NotFound:
                pass
