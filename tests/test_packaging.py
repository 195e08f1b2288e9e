"""What `pip install .` ships: every module of the source tree and the JSON schemas. CI installs
the package (not editable), so a subpackage left out of the build fails here, not at a user's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "voice2fa_cli"

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
