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


BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
sys.argv = {argv!r}
from voice2fa_cli.cli import main
main()
"""


def run_without(package: str, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    code = BLOCK.format(blocked=[package], argv=["voice2fa", *argv])
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_a_redis_store_without_the_redis_package_is_one_line(state_dir, tmp_path):
    import os

    env = dict(os.environ, VOICE2FA_STORE=f"unix://{tmp_path}/r.sock", VOICE2FA_STATE_DIR=str(state_dir))
    result = run_without("redis", ["verify", "+15551234567", "--code", "123456"], env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: VOICE2FA_STORE names a Redis store, which needs the redis package: "
        "pip install '.[redis]' in voice2fa's checkout"
    )


def test_serve_without_prometheus_client_is_one_line(state_dir):
    import os

    env = dict(os.environ, VOICE2FA_STATE_DIR=str(state_dir))
    result = run_without("prometheus_client", ["serve", "--sandbox", "--listen-api", "127.0.0.1:0"], env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: voice2fa serve needs the prometheus-client package: "
        "pip install '.[serve]' in voice2fa's checkout"
    )
