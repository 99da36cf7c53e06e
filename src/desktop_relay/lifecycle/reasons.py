"""Why a desktop session ended, and why a start failed: the stable codes (API, audit, metrics) and
the words stored with them (web/endings.py has what the pages tell the user to do)."""

from __future__ import annotations

from ..i18n import N_, PluralText

IDLE = "idle"
LIFETIME = "lifetime"
DISCONNECTED = "disconnected"
USER = "user"
SIGNED_OUT = "signed-out"
ADMIN = "admin"
# Reserved for a teacher stopping a pupil's desktop (issue 11); nothing ends a session so yet.
TEACHER = "teacher"
CONTAINER_EXITED = "container-exited"
OUT_OF_MEMORY = "out-of-memory"
ENGINE_LOST = "engine-lost"
START_FAILED = "start-failed"
# Started before a lesson (prestart.py) and not opened within the schedule's claim_window.
UNCLAIMED = "unclaimed"

END_REASONS = (
    IDLE, LIFETIME, DISCONNECTED, USER, SIGNED_OUT, ADMIN, TEACHER,
    CONTAINER_EXITED, OUT_OF_MEMORY, ENGINE_LOST, START_FAILED, UNCLAIMED,
)

# A warm pool container the pool removed itself (too old, settings changed, no longer wanted):
# the reason in its log and audit lines. No session ends with it, so it is not an END_REASON.
POOL = "pool"

# Why a start failed (the session's `failure`, beside end_reason start-failed).
IMAGE_MISSING = "image-missing"  # the desktop's image is not on the server
ENGINE_REFUSED = "engine-refused"  # the engine would not create or start the container
ENGINE_TIMEOUT = "engine-timeout"  # the engine did not answer in time
NOT_READY = "not-ready"  # the container ran, but its desktop never answered in time
CRASHED = "crashed"  # the container stopped or vanished while starting
WITHDRAWN = "withdrawn"  # a reload removed the desktop while the start waited
SERVER_ERROR = "server-error"  # a bug in the relay

# OUT_OF_MEMORY serves here too: killed for memory while starting.
FAILURES = (IMAGE_MISSING, ENGINE_REFUSED, ENGINE_TIMEOUT, NOT_READY, CRASHED, OUT_OF_MEMORY, WITHDRAWN, SERVER_ERROR)


def minutes(seconds: float) -> str:
    """A duration as people say it: '45 minutes', '10 hours', '30 seconds' (English, as stored;
    the pages show it in the reader's language, see i18n.Language.stored)."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return str(PluralText("{count} hour", "{count} hours", int(seconds // 3600)))
    if seconds >= 60 and seconds % 60 == 0:
        return str(PluralText("{count} minute", "{count} minutes", int(seconds // 60)))
    if seconds >= 120:
        return str(PluralText("{count} minute", "{count} minutes", round(seconds / 60)))
    if seconds == int(seconds):
        return str(PluralText("{count} second", "{count} seconds", int(seconds)))
    return f"{seconds:g} seconds"


def exit_reason(exit_code: int | None, oom_killed: bool) -> tuple[str, str]:
    """(code, words) for a container that stopped by itself."""
    if oom_killed:
        return OUT_OF_MEMORY, N_("The desktop ran out of memory and was stopped.")
    if exit_code in (137, 139, 134) or (exit_code is not None and exit_code > 128):
        return CONTAINER_EXITED, N_("The desktop crashed or was killed (exit code {code}).").format(code=exit_code)
    if exit_code is None:
        return CONTAINER_EXITED, N_("The desktop's container disappeared.")
    return CONTAINER_EXITED, N_("The desktop stopped by itself (exit code {code}).").format(code=exit_code)
