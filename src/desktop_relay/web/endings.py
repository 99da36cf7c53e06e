"""What a user reads when a desktop has ended or could not start: what happened, in words a pupil
understands, and what to do now.

Chosen by the stable codes (lifecycle/reasons.py): the end reason, and for a failed start the
failure. The session's own `reason` (the stored words, with details such as the idle timeout
or the engine's message) is shown beside these, smaller, for whoever helps the pupil.
The words are msgids, translated when a view is made for a reader.
"""

from __future__ import annotations

import attr

from ..i18n import N_, Language
from ..lifecycle import reasons

# Said when nothing better is known; and the plain way out of a stop.
AGAIN = N_("Start it again when you need it.")
TELL = N_("Try again. If it keeps happening, tell your teacher.")


@attr.s(frozen=True, auto_attribs=True)
class Ending:
    """What happened to a desktop, and what the user can do about it."""

    what: str
    action: str

    def view(self, words: Language) -> dict[str, str]:
        """The words for the user API, in the reader's language."""
        return {"what": words.gettext(self.what), "action": words.gettext(self.action)}


_STOPS = {
    reasons.IDLE: Ending(N_("This desktop was stopped because nobody used it for a while."), AGAIN),
    reasons.LIFETIME: Ending(N_("This desktop reached the longest time a desktop may run."),
                             N_("Start it again to go on working.")),
    reasons.DISCONNECTED: Ending(N_("This desktop was stopped because no browser showed it for a while."), AGAIN),
    reasons.USER: Ending(N_("This desktop was stopped by you."), AGAIN),
    reasons.SIGNED_OUT: Ending(N_("This desktop was stopped because you signed out."), AGAIN),
    reasons.ADMIN: Ending(N_("This desktop was stopped by an administrator."),
                          N_("Start it again, or ask your teacher why it was stopped.")),
    reasons.TEACHER: Ending(N_("This desktop was stopped by your teacher."),
                            N_("Ask your teacher before you start it again.")),
    reasons.CONTAINER_EXITED: Ending(N_("This desktop stopped by itself: the desktop exited or crashed."), TELL),
    reasons.OUT_OF_MEMORY: Ending(N_("This desktop ran out of memory and was stopped."),
                                  N_("Start it again and keep fewer programs open at the same time. "
                                     "If it keeps happening, tell your teacher.")),
    reasons.ENGINE_LOST: Ending(N_("This desktop was lost when the server that runs desktops restarted."), AGAIN),
    reasons.UNCLAIMED: Ending(N_("This desktop was started for your lesson and stopped because nobody opened it."),
                              AGAIN),
}

_FAILURES = {
    reasons.IMAGE_MISSING: Ending(N_("This desktop is not installed on the server."),
                                  N_("Trying again will not help. Tell your teacher or the school's administrator.")),
    reasons.ENGINE_REFUSED: Ending(N_("The server could not start this desktop."),
                                   N_("Try again in a few minutes. If it keeps happening, tell your teacher.")),
    reasons.ENGINE_TIMEOUT: Ending(N_("The server that runs desktops took too long to answer."),
                                   N_("Try again in a minute: the server may be busy.")),
    reasons.NOT_READY: Ending(N_("The desktop took too long to start."), TELL),
    reasons.CRASHED: Ending(N_("The desktop stopped while it was starting."), TELL),
    reasons.OUT_OF_MEMORY: Ending(N_("The desktop ran out of memory while it was starting."),
                                  N_("Trying again will not help. Tell your teacher: this desktop needs more "
                                     "memory than the server gives it.")),
    reasons.WITHDRAWN: Ending(N_("This desktop is no longer offered."),
                              N_("Go back to your desktops and choose another one.")),
    reasons.SERVER_ERROR: Ending(N_("Something went wrong on the server."), TELL),
}

_FAILED = Ending(N_("This desktop could not start."), TELL)
_ENDED = Ending(N_("This desktop has ended."), AGAIN)


def ending_of(end_reason: str | None, failure: str | None = None) -> Ending:
    """The words for an ended session: by its failure when its start failed, else by its end reason."""
    if end_reason == reasons.START_FAILED:
        return _FAILURES.get(failure or "", _FAILED)
    return _STOPS.get(end_reason or "", _ENDED)
