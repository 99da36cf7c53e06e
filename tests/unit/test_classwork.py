"""Hand-outs and hand-ins without an engine: the volumes' names and labels, which folders whose
desktop mounts and how, when a folder may be changed, due times as the API takes them, and the
due-time timer with a fake clock."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from provisioner_contract import make_desktop
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock, deferLater

from desktop_relay.auth.classes import ClassScope
from desktop_relay.classwork import ClassVolume, handin_volume, handout_volume
from desktop_relay.classwork.archive import zip_of_handins
from desktop_relay.classwork.mounts import classwork_mounts
from desktop_relay.classwork.places import HANDIN_CLOSED, READ_ONLY, refusal
from desktop_relay.classwork.service import Classwork
from desktop_relay.config.classes import ClassSettings
from desktop_relay.store import SQLiteStore
from desktop_relay.web.classwork import MAX_DUE_AHEAD, _due_of
from desktop_relay.web.responses import Problem

SCOPE = ClassScope(ClassSettings(class_groups=("klasse-*",), admins_see_all_classes=True))
DESKTOP = make_desktop("demo:latest")


class RecordingVolumes:
    """The classwork volumes, as the calls made to them."""

    def __init__(self) -> None:
        self.made: list[tuple[str, bool]] = []
        self.closings: list[tuple[str, bool]] = []

    def ensure(self, volume: ClassVolume, closed: bool = False) -> Deferred[bool]:
        self.made.append((volume.volume, closed))
        return succeed(True)

    def set_closed(self, class_group: str, closed: bool, uid: int) -> Deferred[int]:
        self.closings.append((class_group, closed))
        return succeed(1)


@pytest_twisted.async_yield_fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "relay.sqlite3", reactor)
    await store.open()
    yield store
    await store.close()


def test_volume_names_hide_classes_and_pupils_and_differ_per_pupil_and_class() -> None:
    anna = handin_volume("school", "klasse-5a", "anna@example.org", 1000, "/handin")
    assert anna.volume.startswith("dr-school-handin-") and "anna" not in anna.volume and "5a" not in anna.volume
    assert anna.volume != handin_volume("school", "klasse-5a", "ben", 1000, "/handin").volume
    assert anna.volume != handin_volume("school", "klasse-5b", "anna@example.org", 1000, "/handin").volume
    handout = handout_volume("school", "klasse-5a", 1000, "/handout")
    assert handout.labels == {"org.desktop-relay.instance": "school", "org.desktop-relay.owner": "klasse-5a",
                              "org.desktop-relay.classwork": "handout", "org.desktop-relay.class": "klasse-5a"}
    # No home label: the home measurement and the home API never take it for a home.
    assert "org.desktop-relay.home" not in anna.labels


def test_a_pupil_mounts_each_classes_handout_read_only_and_their_handin_until_it_closes() -> None:
    groups = frozenset({"klasse-5a", "klasse-6b", "chor"})
    mounts = classwork_mounts(SCOPE, "school", DESKTOP, "anna", "pupil", groups, closed={"klasse-6b"})
    assert [(m.volume.kind, m.target, m.read_only) for m in mounts] == [
        ("handout", "/home/kasm-user/Handout/klasse-5a", True),
        ("handin", "/home/kasm-user/Hand-in/klasse-5a", False),
        ("handout", "/home/kasm-user/Handout/klasse-6b", True),
        ("handin", "/home/kasm-user/Hand-in/klasse-6b", True),
    ]
    assert {m.volume.owner for m in mounts if m.volume.kind == "handin"} == {"anna"}


def test_a_teacher_mounts_the_handouts_they_teach_read_write_and_no_handins() -> None:
    mounts = classwork_mounts(SCOPE, "school", DESKTOP, "herr-k", "teacher",
                              frozenset({"klasse-5a", "lehrer"}), closed=())
    assert [(m.volume.kind, m.target, m.read_only) for m in mounts] == [
        ("handout", "/home/kasm-user/Handout/klasse-5a", False)]
    # A see-all admin's desktop carries only the classes they are in, not every class.
    assert classwork_mounts(SCOPE, "school", DESKTOP, "root", "admin", frozenset({"admins"}), closed=()) == ()


def test_a_class_name_that_cannot_be_a_folder_is_left_out() -> None:
    scope = ClassScope(ClassSettings(class_groups=("klasse*",)))
    mounts = classwork_mounts(scope, "school", DESKTOP, "anna", "pupil", frozenset({"klasse/../x", "klasse.."}),
                              closed=())
    assert [m.target for m in mounts] == ["/home/kasm-user/Handout/klasse..", "/home/kasm-user/Hand-in/klasse.."]


def test_the_handins_zip_is_made_from_the_engines_tar_stream_piece_by_piece() -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in (("h", None), ("h/0/essay.txt", b"anna's essay"), ("h/1/x/big.bin", b"\0" * 200_000),
                           ("h/2/ignored.txt", b"not asked for")):
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    data = raw.getvalue()
    pieces = list(zip_of_handins(iter([data[i:i + 1000] for i in range(0, len(data), 1000)]), "h",
                                 {"0": "anna", "1": "ben"}))
    assert len(pieces) > 3  # written as it was read, not at the end
    with zipfile.ZipFile(io.BytesIO(b"".join(pieces))) as archive:
        assert archive.namelist() == ["anna/essay.txt", "ben/x/big.bin"]
        assert archive.read("anna/essay.txt") == b"anna's essay" and len(archive.read("ben/x/big.bin")) == 200_000


def test_due_times_are_iso_with_a_zone_or_epoch_and_within_a_year() -> None:
    now = 1_800_000_000.0
    assert _due_of("2027-01-15T09:00:00+01:00", now) == now
    assert _due_of(now + 60, now) == now + 60
    assert _due_of("2027-01-15T07:00:00Z", now) == _due_of("2027-01-15T08:00:00+01:00", now)
    for bad in ("2027-01-15T08:00:00", "tomorrow", None, True, [], now + MAX_DUE_AHEAD + 1, float("nan"), -5):
        with pytest.raises(Problem) as caught:
            _due_of(bad, now)
        assert caught.value.status == 422


@pytest_twisted.ensureDeferred
async def test_the_timer_closes_at_due_and_moving_the_due_time_opens_again(store: SQLiteStore) -> None:
    clock, volumes = Clock(), RecordingVolumes()
    clock.advance(1000)
    work = Classwork(SCOPE, volumes, store, clock, "school", "demo:latest")  # type: ignore[arg-type]
    await work.start()
    await work.set_due("klasse-5a", 1060, "herr-k")
    assert not work.closed("klasse-5a") and volumes.closings == []
    handin = work.handin("klasse-5a", "anna")
    assert refusal(work, handin, for_teacher=False) is None
    clock.advance(61)
    await _settled()
    assert work.closed("klasse-5a") and volumes.closings == [("klasse-5a", True)]
    assert refusal(work, handin, for_teacher=False) == HANDIN_CLOSED
    assert refusal(work, work.handout("klasse-5a"), for_teacher=False) == READ_ONLY
    assert refusal(work, work.handout("klasse-5a"), for_teacher=True) is None
    assert (await store.due_times())["klasse-5a"].closed
    # A new desktop of the pupil's mounts the closed hand-in read-only, and makes it closed.
    mounts = await work.mounts_for(DESKTOP, "anna", "pupil", frozenset({"klasse-5a"}))
    assert [m.read_only for m in mounts] == [True, True] and volumes.made[-1] == (handin.volume, True)
    await work.set_due("klasse-5a", 5000, "herr-k")
    assert volumes.closings[-1] == ("klasse-5a", False) and not work.closed("klasse-5a")
    assert await work.set_due("klasse-5a", None, "herr-k") is True
    assert await work.set_due("klasse-5a", None, "herr-k") is False
    audit = await store.audit_trail()
    assert [(a["actor"], a["action"], a["target"]) for a in audit] == [("herr-k", "handin.due", "klasse-5a")] * 3
    work.stop()


async def _settled() -> Any:
    """Let the store's thread finish what the timer began."""
    for _ in range(20):
        await deferLater(reactor, 0.02, lambda: None)
