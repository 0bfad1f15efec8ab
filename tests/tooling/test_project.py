"""``modelfn new``: a project of one's own from the installed package; ``modelfn render`` keeps its infra current."""

from __future__ import annotations

from click.testing import CliRunner
from helpers import ROOT

from modelfn.cli import cli
from modelfn.tooling.render import drifted, render
from modelfn.tooling.resources import asset_tree


def test_new_writes_a_whole_project_and_refuses_a_folder_with_files(tmp_path) -> None:
    runner = CliRunner()
    done = runner.invoke(cli, ["new", str(tmp_path / "proj")])
    assert done.exit_code == 0, done.output
    proj = tmp_path / "proj"
    modules = asset_tree("terraform", "modules")
    assert {f"infra/modules/{name}" for name in modules} <= {p.relative_to(proj).as_posix() for p in proj.rglob("*")}
    assert (proj / ".gitignore").read_text().startswith(".venv/") and (proj / "functions" / ".gitkeep").exists()
    assert "modelfn[convert,gcs,s3]==" in (proj / "requirements.txt").read_text()
    assert drifted(proj, render(proj, allow_empty=True)) == []  # what new wrote is what render writes
    again = runner.invoke(cli, ["new", str(proj)])
    assert again.exit_code == 1 and "exists and is not an empty folder" in again.output
    assert [p.name for p in tmp_path.iterdir()] == ["proj"]  # no scratch folder left behind


def test_render_keeps_the_modules_current_and_never_overwrites_a_root(tmp_path) -> None:
    CliRunner().invoke(cli, ["new", str(tmp_path / "proj")])
    proj = tmp_path / "proj"
    (proj / "infra" / "gcp" / "main.tf").write_text("# the project's own root\n")
    (proj / "infra" / "modules" / "aws" / "main.tf").write_text("# an old module\n")
    files = render(proj, allow_empty=True)
    assert "infra/gcp/main.tf" not in files  # a root is the project's: written only where missing
    assert drifted(proj, files) == ["infra/modules/aws/main.tf"]


def test_this_repositorys_infra_is_the_shipped_one() -> None:
    """infra/modules and the roots link to the package's assets: one copy of each."""
    for name, text in asset_tree("terraform", "modules").items():
        assert (ROOT / "infra" / "modules" / name).read_text() == text
    assert drifted(ROOT, render(ROOT)) == []


def test_new_where_nothing_can_be_written_names_the_fix_without_a_traceback() -> None:
    done = CliRunner().invoke(cli, ["new", "/proc/modelfn-project"])
    assert done.exit_code == 1 and "choose a folder you can write" in done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)
