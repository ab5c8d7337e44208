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
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "the unrelated algorithms package | qsm,dql,dipo,qvpo,dacer,sdac,dpmd,sac,td3,qsm_flowrl,qsm_relax"


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


MARKDOWN_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_prose(path: Path) -> list[str]:
    """The lines of a Markdown file outside fenced code blocks, with inline code spans blanked."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", lambda span: " " * len(span.group()), line))
    return lines


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings outside fenced code: lower case, punctuation
    (backticks included) dropped, spaces as hyphens, a repeated anchor numbered `-1`, `-2`, ..."""
    anchors: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"#{1,6} (.*?)\s*$", line)):
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            anchor, n = slug, 0
            while anchor in anchors:
                n += 1
                anchor = f"{slug}-{n}"
            anchors.add(anchor)
    return anchors


def test_every_relative_link_in_the_docs_points_to_an_existing_file_and_heading() -> None:
    """README.md and docs/*.md link each other (the README is a front door to the pages under docs/):
    every relative link must name a file that exists and, with `#anchor`, a heading of that file."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for line in markdown_prose(page):
            for target in MARKDOWN_LINK.findall(line):
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                    continue
                name, _, anchor = target.partition("#")
                linked = (page.parent / name).resolve() if name else page
                if not linked.exists():
                    broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
                elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
                    broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_stays_a_front_door() -> None:
    """The README keeps the two set-up commands and stays short; reference material lives in docs/."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 230, f"README.md has {len(lines)} lines; move reference material to docs/"
    commands = [line.split("#")[0].strip() for line in lines]
    assert "make run" in commands and "make test" in commands


RESULTS_LAYOUT = re.compile(r'"_policies"|"_figures"|"_tensorboard"|\.qsmbench\.lock|checkpoint_seeds_|\.r?glob\(')


def package_modules() -> list[Path]:
    return sorted([*(REPO / "qsmbench").rglob("*.py"), *(REPO / "algorithms").rglob("*.py")])


def test_only_runs_names_the_files_of_a_results_directory() -> None:
    """qsmbench/runs/layout.py defines every path under a results directory, and only runs/ uses its names:
    no other module spells one out (they were written in five modules before)."""
    offending = [
        f"{path.relative_to(REPO)}:{number}"
        for path in package_modules()
        if (REPO / "qsmbench" / "runs") not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if RESULTS_LAYOUT.search(line)
    ]
    assert offending == []


def test_no_module_of_the_package_is_over_400_lines() -> None:
    sizes = {path.relative_to(REPO): len(path.read_text().splitlines()) for path in package_modules()}
    assert {path: lines for path, lines in sizes.items() if lines > 400} == {}
