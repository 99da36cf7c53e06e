"""What a user reads when a desktop has ended or could not start: what happened, in words a pupil
understands, and what to do now.

Chosen by the stable codes (lifecycle/reasons.py): the end reason, and for a failed start the
failure. The session's own `reason` (the stored words, with details such as the idle timeout
or the engine's message) is shown beside these, smaller, for whoever helps the pupil.
"""

from __future__ import annotations

import attr

from ..lifecycle import reasons

# Said when nothing better is known; and the plain way out of a stop.
AGAIN = "Start it again when you need it."
TELL = "Try again. If it keeps happening, tell your teacher."


@attr.s(frozen=True, auto_attribs=True)
class Ending:
    """What happened to a desktop, and what the user can do about it."""

    what: str
    action: str

    def view(self) -> dict[str, str]:
        return {"what": self.what, "action": self.action}


_STOPS = {
    reasons.IDLE: Ending("This desktop was stopped because nobody used it for a while.", AGAIN),
    reasons.LIFETIME: Ending("This desktop reached the longest time a desktop may run.",
                             "Start it again to go on working."),
    reasons.DISCONNECTED: Ending("This desktop was stopped because no browser showed it for a while.", AGAIN),
    reasons.USER: Ending("This desktop was stopped by you.", AGAIN),
    reasons.SIGNED_OUT: Ending("This desktop was stopped because you signed out.", AGAIN),
    reasons.ADMIN: Ending("This desktop was stopped by an administrator.",
                          "Start it again, or ask your teacher why it was stopped."),
    reasons.TEACHER: Ending("This desktop was stopped by your teacher.", "Ask your teacher before you start it again."),
    reasons.CONTAINER_EXITED: Ending("This desktop stopped by itself: the desktop exited or crashed.", TELL),
    reasons.OUT_OF_MEMORY: Ending("This desktop ran out of memory and was stopped.",
                                  "Start it again and keep fewer programs open at the same time. "
                                  "If it keeps happening, tell your teacher."),
    reasons.ENGINE_LOST: Ending("This desktop was lost when the server that runs desktops restarted.", AGAIN),
}

_FAILURES = {
    reasons.IMAGE_MISSING: Ending("This desktop is not installed on the server.",
                                  "Trying again will not help. Tell your teacher or the school's administrator."),
    reasons.ENGINE_REFUSED: Ending("The server could not start this desktop.",
                                   "Try again in a few minutes. If it keeps happening, tell your teacher."),
    reasons.ENGINE_TIMEOUT: Ending("The server that runs desktops took too long to answer.",
                                   "Try again in a minute: the server may be busy."),
    reasons.NOT_READY: Ending("The desktop took too long to start.", TELL),
    reasons.CRASHED: Ending("The desktop stopped while it was starting.", TELL),
    reasons.OUT_OF_MEMORY: Ending("The desktop ran out of memory while it was starting.",
                                  "Trying again will not help. Tell your teacher: this desktop needs more memory "
                                  "than the server gives it."),
    reasons.WITHDRAWN: Ending("This desktop is no longer offered.", "Go back to your desktops and choose another one."),
    reasons.SERVER_ERROR: Ending("Something went wrong on the server.", TELL),
}

_FAILED = Ending("This desktop could not start.", TELL)
_ENDED = Ending("This desktop has ended.", AGAIN)


def ending_of(end_reason: str | None, failure: str | None = None) -> Ending:
    """The words for an ended session: by its failure when its start failed, else by its end reason."""
    if end_reason == reasons.START_FAILED:
        return _FAILURES.get(failure or "", _FAILED)
    return _STOPS.get(end_reason or "", _ENDED)
