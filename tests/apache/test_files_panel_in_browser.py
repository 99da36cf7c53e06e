"""The dashboard's "My files" panel in a real browser, with no desktop running: headless Chromium
-> the relay as twistd on loopback -> the home's files container of the demo image.

A folder made with the keyboard, several files uploaded at once and one dropped, each with its
progress; a download; a delete; a share shown read-only; in English and German, and the panel
passes axe-core.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from axe_pages import assert_accessible
from relay_harness import RelayProcess

from desktop_relay.files.containers import LABEL_FILES_INSTANCE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DROP = """([name, text]) => {
  const files = new DataTransfer();
  files.items.add(new File([text], name, { type: "text/plain" }));
  const drop = document.getElementById("files-drop");
  for (const kind of ["dragenter", "dragover", "drop"]) {
    drop.dispatchEvent(new DragEvent(kind, { dataTransfer: files, bubbles: true, cancelable: true }));
  }
}"""


@pytest.fixture
def relay_with_share(relay_factory: Callable[..., RelayProcess], tmp_path: Path) -> RelayProcess:
    shares = tmp_path / "shares"
    (shares / "maths").mkdir(parents=True)
    (shares / "maths" / "sheet.txt").write_text("1 + 1 = 2\n")
    # Usage measured every second (10 minutes by default), so the panel's usage line shows soon.
    return relay_factory(sections={"homes": {"share_roots": str(shares), "usage_interval": "1s"},
                                   "share:maths": {"path": str(shares / "maths"), "groups": "*"}})


def files_containers(engine: docker.DockerClient, relay: RelayProcess) -> list[object]:
    return engine.containers.list(filters={"label": f"{LABEL_FILES_INSTANCE}={relay.instance}"})


def row(page, name: str):  # type: ignore[no-untyped-def]
    return page.locator("#files-list tbody tr", has_text=name)


@pytest.mark.parametrize("lang", ["en", "de"])
def test_files_are_made_uploaded_dropped_downloaded_and_deleted_in_the_panel(
    relay_with_share: RelayProcess, docker_client: docker.DockerClient, tab, tmp_path: Path, lang: str,
) -> None:
    alice = tab(relay_with_share, "alice", lang)
    page = alice.page
    w = alice.words.gettext
    page.get_by_role("heading", name=w("My files")).wait_for()
    # Shown on request: until then no files container runs for this pupil.
    show = page.get_by_role("button", name=w("Show my files"))
    assert show.get_attribute("aria-expanded") == "false"
    assert not files_containers(docker_client, relay_with_share)
    show.click()
    page.locator("#files-crumbs [aria-current=location]", has_text=w("My files")).wait_for()
    assert len(files_containers(docker_client, relay_with_share)) == 1

    # A folder, with the keyboard alone.
    page.focus("#files-folder-name")
    page.keyboard.type("Homework")
    page.keyboard.press("Enter")
    page.locator("#files-status", has_text=w("Folder {name} made.", name="Homework")).wait_for()
    page.get_by_role("button", name=w("Open folder {name}", name="Homework")).click()
    page.locator("#files-crumbs [aria-current=location]", has_text="Homework").wait_for()
    page.get_by_text(w("This folder is empty.")).wait_for()

    # Two files at once, then one dropped.
    first, second = tmp_path / "essay.txt", tmp_path / "data.bin"
    first.write_text("Once upon a time\n")
    second.write_bytes(bytes(range(256)) * 1000)
    page.set_input_files("#files-input", [str(first), str(second)])
    page.locator("#files-uploads li.done").nth(1).wait_for()
    assert page.locator("#files-uploads progress").evaluate_all("bars => bars.map(b => b.value)") == [100, 100]
    page.evaluate(DROP, ["dropped.txt", "from the desktop\n"])
    page.locator("#files-uploads li.done").nth(2).wait_for()
    row(page, "dropped.txt").wait_for()
    assert row(page, "data.bin").locator("td").nth(1).inner_text() == "250 KB"
    assert_accessible(page, "the dashboard's files panel with a folder and uploads")

    with page.expect_download() as download:
        row(page, "essay.txt").get_by_role("link", name="essay.txt").click()
    assert Path(download.value.path()).read_text() == "Once upon a time\n"
    assert download.value.suggested_filename == "essay.txt"

    page.once("dialog", lambda dialog: dialog.accept())
    row(page, "essay.txt").get_by_role("button", name=w("Delete {name}", name="essay.txt")).click()
    page.locator("#files-status", has_text=w("{name} deleted.", name="essay.txt")).wait_for()
    row(page, "essay.txt").wait_for(state="detached")

    # Left open, it is open again on the next visit, with the home's measured usage.
    holds = w("Your home folder holds {usage}.", usage="\0").split("\0")[0]
    for _ in range(10):
        page.reload()
        page.get_by_role("button", name=w("Hide my files")).wait_for()
        if page.locator("#files-usage").is_visible():
            break
        page.wait_for_timeout(1000)  # the next measurement, at most a second away
    assert page.locator("#files-usage").inner_text().startswith(holds)
    page.get_by_role("button", name=w("Open folder {name}", name="Homework")).wait_for()

    # Back to the home, into the share: read, not changed.
    page.get_by_role("button", name=w("Open folder {name}", name="Shared")).click()
    page.get_by_role("button", name=w("Open folder {name}", name="maths")).click()
    row(page, "sheet.txt").locator(".read-only").wait_for()
    page.get_by_text(w("This is a shared folder: you can read and download, not change it.")).wait_for()
    assert page.locator("#files-choose").is_disabled()
    assert_accessible(page, "the dashboard's files panel in a read-only share")
