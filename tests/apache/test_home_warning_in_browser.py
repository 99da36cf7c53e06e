"""The home quota warning on the session page in a real browser: headless Chromium -> the relay as
twistd -> a desktop container whose home a pupil fills past its quota; the bar warns, in English
and in German, with the sizes as each language writes them."""

from __future__ import annotations

from collections.abc import Callable

import docker
import pytest
from desktop_browser import DesktopPage
from relay_harness import RelayProcess

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.mark.parametrize(("lang", "words"), [
    ("en", "Your home folder holds 1.9 MB, more than its 1 MB. Delete files you no longer need."),
    ("de", "Dein persönlicher Ordner enthält 1,9 MB, mehr als die erlaubten 1 MB. "
           "Lösche Dateien, die du nicht mehr brauchst."),
])
def test_a_home_over_its_quota_is_warned_about_in_the_bar(
    relay_factory: Callable[..., RelayProcess], tab: Callable[..., DesktopPage],
    docker_client: docker.DockerClient, lang: str, words: str,
) -> None:
    relay = relay_factory(sections={"homes": {"usage_interval": "1s"}, "desktop:demo": {"home_quota": "1m"}})
    alice = tab(relay, lang=lang)
    alice.start_desktop("demo")
    alice.wait_connected_despite_docker()
    warning = alice.bar("home-warning")
    assert warning.is_hidden()
    (container,) = docker_client.containers.list(
        filters={"label": f"org.desktop-relay.session={alice.session_id}"})
    assert container.exec_run(["sh", "-c", "head -c 2000000 /dev/zero > ~/video.bin"]).exit_code == 0
    # The next measurement (every second here) reaches the page with its next view.
    warning.wait_for(state="visible", timeout=30_000)
    assert alice.bar("home-warning-text").text_content() == words
    assert container.exec_run(["rm", "/home/kasm-user/video.bin"]).exit_code == 0
    warning.wait_for(state="hidden", timeout=30_000)
