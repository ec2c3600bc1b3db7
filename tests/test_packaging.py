"""The wheel carries the library only: no test harness, no tests, no test-only dependency. (pip builds it in
an isolated environment: setuptools and wheel come from the package registry, like every install here.)"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEST_ONLY = ("pytest", "hypothesis", "matplotlib", "ruff", "mypy", "fasteners", "build", "twine")


def test_the_wheel_holds_the_library_only(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("alunai_clarity-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = [line.split(":", 1)[1].strip() for line in z.read(meta).decode().splitlines()
                    if line.startswith("Requires-Dist:") and "extra ==" not in line]
    tops = {n.split("/", 1)[0] for n in names}
    assert tops <= {"clarity"} | {n.split("/", 1)[0] for n in names if ".dist-info/" in n}, tops
    assert not [n for n in names if "/testing/" in n or "harness" in n or n.startswith("tests/")]
    assert "clarity/platform/locks.py" in names and "clarity/model_data/all-MiniLM-L6-v2/tokenizer.json" in names
    leaked = [r for r in requires if r.split(">")[0].split("=")[0].split("<")[0].strip().lower() in TEST_ONLY]
    assert not leaked, leaked
