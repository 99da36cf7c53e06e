"""What the relay asks of the engine about home volumes."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface import Interface

from . import Home


class IHomeVolumes(Interface):
    """Creates and keeps users' home volumes. Every method returns a Deferred and never blocks
    the reactor; engine outages fail with ContainerEngineUnavailable."""

    def ensure(home: Home) -> Deferred[bool]:
        """Create the home's volume, labelled, if it does not exist yet; True when it was
        created now. A new volume is empty: the first container that mounts it over the
        image's home directory fills it with that directory's content and owner (Docker copies
        it into an empty named volume), which is how files come to belong to home.uid."""
