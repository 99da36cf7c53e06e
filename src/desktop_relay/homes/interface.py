"""What the relay asks of the engine about home volumes, and what it gets back."""

from __future__ import annotations

from collections.abc import Mapping

import attr
from twisted.internet.defer import Deferred
from zope.interface import Interface

from . import Home


class HomeVolumeFailed(Exception):
    """The engine refused to create or remove a home volume; str() is its reason, for an admin."""


class HomeVolumeInUse(HomeVolumeFailed):
    """A container (running or not) still mounts the volume, so the engine keeps it."""


@attr.s(frozen=True, auto_attribs=True)
class HomeVolume:
    """A home volume as the engine lists it, from its labels."""

    volume: str
    owner: str
    key: str
    # Epoch seconds of its creation, as the engine says; None when it does not.
    created: float | None


class IHomeVolumes(Interface):
    """Creates, lists, measures and removes users' home volumes. Every method returns a Deferred
    and never blocks the reactor; engine outages fail with ContainerEngineUnavailable."""

    def ensure(home: Home) -> Deferred[bool]:
        """Create the home's volume, labelled, if it does not exist yet; True when it was
        created now. A new volume is empty: the first container that mounts it over the
        image's home directory fills it with that directory's content and owner (Docker copies
        it into an empty named volume), which is how files come to belong to home.uid.
        HomeVolumeFailed when the engine refuses."""

    def remove(volume: str) -> Deferred[bool]:
        """Remove a home volume and everything in it; False when it did not exist.
        HomeVolumeInUse while a container mounts it."""

    def list(instance: str) -> Deferred[list[HomeVolume]]:
        """The home volumes labelled with this relay instance."""

    def usage(instance: str) -> Deferred[Mapping[str, int]]:
        """Bytes each home volume of this instance holds, by volume name. Costly (the engine
        walks every volume): for the periodic measurement, never per request. A volume the
        engine could not measure is left out."""
