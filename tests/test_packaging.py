"""`pip install .` (the README's first command, not editable) ships the whole package: every
module, subpackage and JSON schema of the source tree is in the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def source_files() -> set[str]:
    """The files of the package that a wheel must hold: Python modules and schemas."""
    package = ROOT / "voice2fa_cli"
    return {
        path.relative_to(ROOT).as_posix()
        for path in package.rglob("*")
        if path.is_file() and path.suffix in (".py", ".json") and "__pycache__" not in path.parts
    }


def test_the_wheel_holds_every_module_subpackage_and_schema(tmp_path):
    tree = tmp_path / "src"  # a copy: building never writes build/ or *.egg-info into the repository
    shutil.copytree(ROOT / "voice2fa_cli", tree / "voice2fa_cli",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    out = tmp_path / "wheel"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(tree)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("voice2fa-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = source_files()
    assert {"voice2fa_cli/stores/__init__.py", "voice2fa_cli/schemas/send.json"} <= expected
    assert sorted(expected - shipped) == []
