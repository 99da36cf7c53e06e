"""A normal `pip install .` makes `twistd desktop-relay` available, as an admin would install it."""

from __future__ import annotations

import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_pip_install_into_a_fresh_venv_provides_the_twistd_plugin(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The dependencies come from the environment running the tests (a .pth file), so the
    # test stays fast and offline-friendly; the package itself is built and installed for real.
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    Path(purelib, "test-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(ROOT)],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    )
    installed = subprocess.run(
        [str(python), "-c", "import desktop_relay, twisted.plugins.desktop_relay_plugin as p; print(desktop_relay.__file__, p.__file__)"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    ).stdout
    package_file, plugin_file = installed.split()
    assert package_file.startswith(str(venv)) and plugin_file.startswith(str(venv))

    # Twisted's own twistd script is not in this venv (Twisted comes through the .pth file);
    # running its entry point with the venv's python is the same program.
    twistd = [str(python), "-c", "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]
    listing = subprocess.run([*twistd, "--help"], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert "desktop-relay" in listing.stdout
    assert "Per-user desktop containers in the browser" in listing.stdout
    options = subprocess.run(
        [*twistd, "-n", "desktop-relay", "--help"], capture_output=True, text=True, cwd=tmp_path, check=True
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
