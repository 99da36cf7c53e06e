"""A normal `pip install .` makes `twistd desktop-relay` available, as an admin would install it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_pip_install_into_a_fresh_venv_provides_the_twistd_plugin(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # A normal, non-editable install with its dependencies (from pip's cache after the first run).
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(ROOT)],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    )
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import desktop_relay, twisted.plugins.desktop_relay_plugin as p; print(desktop_relay.__file__, p.__file__)"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    ).stdout.split()
    assert all(path.startswith(str(venv)) for path in installed), installed

    twistd = str(venv / "bin" / "twistd")
    listing = subprocess.run([twistd, "--help"], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert "desktop-relay" in listing.stdout
    assert "Per-user desktop containers in the browser" in listing.stdout
    options = subprocess.run(
        [twistd, "-n", "desktop-relay", "--help"], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert "--config=" in options.stdout and "etc/relay.ini" in options.stdout


def test_plugin_module_imports_nothing_heavy() -> None:
    code = (
        "import sys; import twisted.plugins.desktop_relay_plugin; "
        "heavy = [m for m in ('desktop_relay.service', 'docker', 'autobahn', 'klein') if m in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"},
    )
    assert result.stdout.strip() == "[]"


def test_twisted_plugin_cache_is_not_tracked() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "twisted/plugins/dropin.cache"], cwd=ROOT, capture_output=True, text=True
    )
    assert ignored.returncode == 0
