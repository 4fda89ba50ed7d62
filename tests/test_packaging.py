"""``pip install .`` and ``pip install -e .`` put pytest-fastcollect.pth in site-packages,
listed in the wheel's RECORD, and ``pip uninstall`` removes it.

Each case installs a copy of the project into a fresh virtualenv with this
environment's pip (``--python``, ``--no-deps``); pip's isolated build
fetches setuptools from the package index, and the test is skipped when no
index answers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PTH = "pytest-fastcollect.pth"

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("editable", [False, True], ids=["regular", "editable"])
def test_install_and_uninstall_the_pth_file(tmp_path: Path, editable: bool) -> None:
    source = tmp_path / "src-copy"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".venv*", ".git", ".nox", "build", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python] if _pip_has_python() else None
    if pip is None:
        pytest.skip("needs pip >= 22.3 (--python) to install into a venv without pip")
    installed_by = subprocess.run(
        [*pip, "install", "-q", "--no-deps", *(["-e"] if editable else []), str(source)],
        check=False,
        capture_output=True,
        text=True,
    )
    if installed_by.returncode != 0 and "No matching distribution found for setuptools" in (
        installed_by.stderr
    ):
        pytest.skip(f"no package index for the build backend: {installed_by.stderr[-300:]}")
    assert installed_by.returncode == 0, installed_by.stderr
    purelib = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    installed = purelib / PTH
    assert installed.read_text() == (REPO / "src" / PTH).read_text()
    records = list(purelib.glob("pytest_fastcollect-*.dist-info/RECORD"))
    assert len(records) == 1
    assert any(line.startswith(f"{PTH},") for line in records[0].read_text().splitlines())
    # The installed line runs at start-up and leaves a plain process alone.
    probe = subprocess.run(
        [python, "-c", "import sys; print(any('fastcollect' in m for m in sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "False", probe.stderr
    assert not probe.stderr
    subprocess.run([*pip, "uninstall", "-q", "-y", "pytest-fastcollect"], check=True)
    assert not installed.exists()


def _pip_has_python() -> bool:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return False
    major, minor = (int(x) for x in proc.stdout.split()[1].split(".")[:2])
    return (major, minor) >= (22, 3)
