"""The installed package: importable under one name beside other packages, and self-contained."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUTSIDE_THE_REPO = re.compile(r"\.\./shared|/work/|shared/reference")  # the team's private notes and machines


def test_algorithms_import_as_qsmbench_algorithms_beside_an_unrelated_algorithms_package(tmp_path: Path) -> None:
    """PyPI has an unrelated, widely installed package called `algorithms`; ours must not need that name."""
    other = tmp_path / "site" / "algorithms"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("NAME = 'the unrelated algorithms package'\n")
    script = (
        "import algorithms, qsmbench.cli\n"
        "from qsmbench.algorithms import ALGORITHMS\n"
        "print(algorithms.NAME, '|', ','.join(ALGORITHMS))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": ""},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "the unrelated algorithms package | qsm,dql,sac,td3"


def test_no_file_cites_a_path_outside_the_repository() -> None:
    """Cite public sources (paper, repository@commit, file); readers of the repo cannot open our notes."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    offenders = []
    for name in tracked:
        path = REPO / name
        if path.suffix not in (".py", ".md", ".toml", ".txt", ".csv", "") or path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE_THE_REPO.search(line):
                offenders.append(f"{name}:{number}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)
