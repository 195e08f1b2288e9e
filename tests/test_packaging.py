"""What `pip install .` ships: every module of the source tree and the JSON schemas. CI installs
the package (not editable), so a subpackage left out of the build fails here, not at a user's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "voice2fa_cli"

LIST_INSTALLED = """
import json, pkgutil, voice2fa_cli
from pathlib import Path
names = [m.name for m in pkgutil.walk_packages(voice2fa_cli.__path__, "voice2fa_cli.")]
schemas = sorted(p.name for p in (Path(voice2fa_cli.__file__).parent / "schemas").glob("*.json"))
print(json.dumps({"modules": sorted(names), "schemas": schemas, "file": voice2fa_cli.__file__}))
"""


def source_modules() -> list[str]:
    names = []
    for path in SOURCE.rglob("*.py"):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1 and parts[-1] != "__main__":
            names.append(".".join(parts))
    return sorted(names)


def test_the_installed_package_has_every_module_and_schema(tmp_path):
    # Run from elsewhere, so that the import is the installed package's, not this tree's.
    out = subprocess.run([sys.executable, "-c", LIST_INSTALLED], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    installed = json.loads(out.stdout)
    assert [m for m in installed["modules"] if not m.endswith("__main__")] == source_modules()
    assert installed["schemas"] == sorted(p.name for p in (SOURCE / "schemas").glob("*.json"))


# Whatever way this test run installed the package (editable too): a wheel built from the tree.


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
