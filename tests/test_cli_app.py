"""journey.cli.app: recipe (`--config`) errors are one `error:` line naming file:line, exit 1."""

import pytest
from typer.testing import CliRunner

from journey.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command, recipe, error", [
    (["run-tests", "--problems", "p", "--solutions", "s", "--out", "o"], "bogus: 1\n", "r.yaml:1: unknown key 'bogus'"),
    (["gen-tests", "--problems", "p", "--out", "o"], "n: 2\nbogus: 1\n", "r.yaml:2: unknown key 'bogus'"),
    (["build-tree", "--problems", "p", "--out", "o"], "top_k: true\n", "r.yaml:1: top_k takes a value, not true"),
    (["build-tree", "--problems", "p", "--out", "o"], "width: true\n", "r.yaml:1: width takes a value"),
    (["run-tests", "--problems", "p", "--solutions", "s", "--out", "o"], None, "--config {d}/r.yaml: no such file"),
    (["show", "--trees", "t"], "dir", "is a directory"),
])
def test_recipe_errors_are_one_line(tmp_path, command, recipe, error):
    path = tmp_path / "r.yaml"
    if recipe == "dir":
        path.mkdir()
    elif recipe is not None:
        path.write_text(recipe)
    result = runner.invoke(app, [*command, "--config", str(path)])
    assert result.exit_code == 1, result.output
    assert f"error: --config {tmp_path}/" in result.output and error.format(d=tmp_path) in " ".join(result.output.split())
    assert "Usage:" not in result.output
