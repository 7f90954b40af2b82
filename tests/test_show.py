"""journey show, tested as a user sees it: the page rendered by headless Chromium."""

import json
import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from journey.cli import app
from journey.longthought.paths import shortcut
from journey.stages.show import layout
from tests.helpers import hand_tree, small_tree

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
runner = CliRunner()


def chromium(tmp_path, url: str, *flags: str) -> subprocess.CompletedProcess:
    """Headless Chromium as this machine allows it: no sandbox (root), no network chatter."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chrome-profile'}", "--enable-logging=stderr", "--v=0",
           *flags, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def test_layout_hand_worked():
    # root -> [1, 2]; 1 -> [3]: leaves 3 and 2 at x = 0 and 1; node 1 above 3; root between.
    pos = layout(small_tree())
    xs = {n: (x - 30) / 34 for n, (x, _) in pos.items()}
    assert xs == {4: 0.0, 3: 0.0, 1: 0.0, 2: 1.0, 0: 0.5}
    assert [pos[n][1] for n in (0, 1, 3, 4)] == [30, 104, 178, 252]


def write_trees(path, trees):
    path.write_text("".join(json.dumps(t.to_json()) + "\n" for t in trees))


def test_show_bad_input(tmp_path):
    trees = tmp_path / "t.jsonl"
    trees.write_text('{"format": "journey.tree/v0"}\n')
    result = runner.invoke(app, ["show", "--trees", str(trees), "--out", str(tmp_path / "x.html")])
    assert result.exit_code == 1 and "t.jsonl:1: expected format 'journey.tree/v2'" in result.output
    write_trees(trees, [hand_tree()])
    result = runner.invoke(app, ["show", "--trees", str(trees), "--id", "nope", "--out", str(tmp_path / "x.html")])
    assert result.exit_code == 1 and "--id nope: no such tree" in result.output
    assert not (tmp_path / "x.html").exists()


@needs_chromium
def test_page_in_headless_chromium(tmp_path, policy):
    from journey.models.registry import build_prm
    from journey.search.build import SearchConfig, TreeBuilder, build_trees
    from journey.tasks import get_task

    task = get_task("arith")
    builder = TreeBuilder(task, policy, build_prm("verifier", task), SearchConfig(6, 8, 3, seed=2))
    real = list(build_trees(task.generate(6, seed=8), builder, trees_in_flight=6))
    trees = [hand_tree(), *real]
    path = tmp_path / "trees.jsonl"
    write_trees(path, trees)
    page = tmp_path / "trees.html"
    result = runner.invoke(app, ["show", "--trees", str(path), "--out", str(page), "--trial-prob", "1"])
    assert result.exit_code == 0, result.output
    assert "http://" not in page.read_text().replace("http://www.w3.org/2000/svg", "")  # offline

    # The hand tree with node 7 selected: every node drawn, the shortcut and the trials marked.
    dom = chromium(tmp_path, f"file://{page}?id=h1&node=7", "--dump-dom")
    assert dom.returncode == 0 and not console_errors(dom.stderr), dom.stderr[-2000:]
    html = dom.stdout
    assert len(re.findall(r'<circle [^>]*class="node', html)) == 10
    assert len(re.findall(r'class="edge shortcut"', html)) == len(shortcut(hand_tree())) == 4
    assert len(re.findall(r'class="edge trial"', html)) == 3  # the three failed trials, one step each
    assert "right-answer" in html and "pruned" in html
    assert "20 - 5 is 15, not 16." in html  # the selected node's reason in the side panel
    assert "(2 + 3) * 4 - 5" in html

    # The biggest real tree, as a user would open it; and a screenshot of it.
    big = max(real, key=lambda t: len(t.nodes()))
    dom = chromium(tmp_path, f"file://{page}?id={big.id}", "--dump-dom")
    assert len(re.findall(r'<circle [^>]*class="node', dom.stdout)) == len(big.nodes())
    assert f'data-tree="{big.id}"' in dom.stdout
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"file://{page}?id={big.id}", f"--screenshot={shot}", "--window-size=1200,800")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


@needs_chromium
def test_console_errors_are_caught(tmp_path):
    """The check above can fail: a page that throws is reported."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>throw new Error('boom')</script></body></html>")
    assert console_errors(chromium(tmp_path, f"file://{bad}", "--dump-dom").stderr)
