"""The `show` command: reasoning trees as one self-contained HTML page (inline SVG, JS and CSS).

    journey show --trees trees.jsonl --out trees.html [--id arith-0-00003]

One tree at a time, chosen from a selector; nodes coloured by verdict (right, wrong, invalid),
pruned nodes faded, terminal nodes with the right answer ringed in gold; the shortcut drawn
thick and the journey's failed trials dashed (both computed here with derive-longthought's own
functions and the same flags); click or hover a node for its step, score, verdict, reason and
the path above it; a stats panel per tree. `trees.html?id=TREE&node=N` opens a tree with a
node selected. Layout (x by leaf order, y by depth) is computed in
Python so the page stays a plain renderer; it stays usable at a few hundred nodes per tree.
The page loads nothing from the network.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from journey.config import ShowConfig
from journey.longthought.paths import format_errors, journey, shortcut
from journey.runtime.io import check_output, output_lock, write_text_atomic
from journey.search.tree import Tree
from journey.stages.build_tree import load_trees
from journey.stages.derive import tree_rng
from journey.tasks import TASKS

X_GAP, Y_GAP, MARGIN = 34, 74, 30


def layout(tree: Tree) -> dict[int, tuple[float, float]]:
    """Node positions: leaves spaced evenly left to right in DFS order, parents centred above.

    root with children [a, b], a with [c, d] -> c, d, b at x = 0, 1, 2; a at 0.5; root at 1.25
    """
    pos: dict[int, tuple[float, float]] = {}
    next_x = 0.0
    stack: list[tuple[int, bool]] = [(0, False)]  # (node, its children placed); no recursion: trees may be deep
    while stack:
        nid, placed = stack.pop()
        kids = tree.children(nid)
        if not kids:
            pos[nid] = (next_x, tree.node(nid)["depth"])
            next_x += 1
        elif placed:
            pos[nid] = ((pos[kids[0]][0] + pos[kids[-1]][0]) / 2, tree.node(nid)["depth"])
        else:
            stack.append((nid, True))
            stack.extend((k, False) for k in reversed(kids))
    return {n: (MARGIN + x * X_GAP, MARGIN + d * Y_GAP) for n, (x, d) in pos.items()}


def tree_view(tree: Tree, max_trials: int, trial_prob: float, seed: int) -> dict:
    """Everything the page needs for one tree (plain JSON)."""
    pos = layout(tree)
    path = shortcut(tree) or []
    trial_nodes: list[int] = []
    if path:
        task = TASKS.get(tree.recorded("task", "arith"), TASKS["arith"])()
        skip = format_errors(tree, task.well_formed)  # as derive-longthought: never a trial
        events, _ = journey(tree, path, max_trials, trial_prob, tree_rng(seed, tree.id), skip=skip)
        on_path = set(path)
        trial_nodes = [e.node for e in events if e.kind == "step" and e.node not in on_path]
    nodes = [{
        "id": n["id"], "parent": n["parent"], "x": round(pos[n["id"]][0], 1), "y": pos[n["id"]][1],
        "text": n["text"], "score": n["score"], "verdict": n["verdict"], "reason": n["reason"],
        "terminal": n["terminal"], "answer": n["answer"], "correct": n["correct"],
        "pruned": n["pruned"], "count": n["count"], "depth": n["depth"],
        "visits": n.get("visits"), "q": n.get("q"),
    } for n in tree.nodes()]
    run = tree.run or {}
    return {
        "id": tree.id, "problem": tree.problem, "nodes": nodes, "shortcut": path, "trials": trial_nodes,
        "width": max(x for x, _ in pos.values()) + MARGIN, "height": max(y for _, y in pos.values()) + MARGIN,
        "stats": {
            "nodes": len(nodes) - 1,
            "depth": max(n["depth"] for n in nodes),
            "right answers": sum(bool(n["terminal"] and n["correct"]) for n in nodes),
            "wrong steps": sum(n["verdict"] == "incorrect" for n in nodes),
            "pruned": sum(bool(n["pruned"]) for n in nodes),
            "steps generated": tree.costs.get("steps_generated", "?"),
            "exhaustive bound": run.get("exhaustive_steps", "?"),
        },
    }


def render_page(views: list[dict], title: str) -> str:
    """The whole HTML page, with the trees' data inlined as JSON."""
    data = json.dumps(views, ensure_ascii=False).replace("</", "<\\/")  # safe inside <script>
    return PAGE.replace("__TITLE__", html.escape(title)).replace("__DATA__", data)


def write_page(trees: list[Tree], out: Path, max_trials: int = 2, trial_prob: float = 0.8,
               seed: int = 0, title: str = "journey trees") -> int:
    """Write the page for `trees` to `out` (atomically); returns the number of trees shown."""
    views = [tree_view(t, max_trials, trial_prob, seed) for t in trees]
    write_text_atomic(out, render_page(views, title))
    return len(views)


PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
 body{font:14px system-ui,sans-serif;margin:0;display:flex;height:100vh;color:#222}
 #main{flex:1;display:flex;flex-direction:column;min-width:0}
 header{padding:8px 12px;border-bottom:1px solid #ddd;display:flex;gap:12px;align-items:center;flex-wrap:wrap}
 #question{font-family:monospace;font-size:15px}
 #canvas{flex:1;overflow:auto;background:#fbfbfb}
 aside{width:340px;border-left:1px solid #ddd;padding:10px 12px;overflow:auto;background:#fff}
 h3{margin:10px 0 4px;font-size:13px;text-transform:uppercase;color:#666}
 table{border-collapse:collapse;width:100%} td{padding:2px 4px;border-bottom:1px solid #eee}
 td:last-child{text-align:right;font-variant-numeric:tabular-nums}
 pre{white-space:pre-wrap;background:#f4f4f4;padding:6px;margin:4px 0;font-size:13px}
 .legend span{display:inline-block;margin-right:10px} .dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:3px;vertical-align:middle}
 circle.node{stroke:#333;stroke-width:1;cursor:pointer} circle.node:hover,circle.node.sel{stroke-width:3}
 circle.correct{fill:#4caf50} circle.incorrect{fill:#e53935} circle.invalid{fill:#bdbdbd} circle.root{fill:#fff}
 circle.pruned{fill-opacity:.35;stroke-dasharray:2 2} circle.right-answer{stroke:#f9a825;stroke-width:4}
 line.edge{stroke:#bbb;stroke-width:1.2} line.shortcut{stroke:#1565c0;stroke-width:4} line.trial{stroke:#ef6c00;stroke-width:2.5;stroke-dasharray:6 4}
 text.score{font-size:9px;fill:#555;pointer-events:none}
 text.mcts{font-size:8px;fill:#36c;pointer-events:none}
</style></head><body>
<div id="main">
 <header><label>tree <select id="pick"></select></label><span id="question"></span>
 <span class="legend"><span><i class="dot" style="background:#4caf50"></i>right</span><span><i class="dot" style="background:#e53935"></i>wrong</span><span><i class="dot" style="background:#bdbdbd"></i>invalid</span><span><i class="dot" style="background:#fff;border:3px solid #f9a825"></i>right answer</span><span style="color:#1565c0">━ shortcut</span><span style="color:#ef6c00">╍ journey trials</span></span></header>
 <div id="canvas"><svg id="tree" xmlns="http://www.w3.org/2000/svg"></svg></div>
</div>
<aside><h3>Stats</h3><table id="stats"></table><h3>Node</h3><div id="detail">Click or hover a node.</div></aside>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const TREES = JSON.parse(document.getElementById("data").textContent);
const NS = "http://www.w3.org/2000/svg";
const pick = document.getElementById("pick"), svg = document.getElementById("tree");
function el(tag, attrs, parent) { const e = document.createElementNS(NS, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); parent.appendChild(e); return e; }
function esc(s) { return String(s ?? "").replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c])); }
function show(t, n) {
  const byId = new Map(t.nodes.map(x => [x.id, x])); const steps = [];
  for (let c = n; c && c.id !== 0; c = byId.get(c.parent)) steps.unshift(c.text);
  document.querySelectorAll("circle.sel").forEach(c => c.classList.remove("sel"));
  document.getElementById("node-" + n.id).classList.add("sel");
  document.getElementById("detail").innerHTML = n.id === 0 ? "<b>root</b>: the question" :
    `<table><tr><td>node</td><td>${n.id} (depth ${n.depth})</td></tr><tr><td>verdict</td><td>${esc(n.verdict)}${n.pruned ? " (pruned)" : ""}</td></tr>
     <tr><td>PRM score</td><td>${n.score ?? "-"}</td></tr><tr><td>samples</td><td>${n.count}</td></tr>
     ${n.visits !== null ? `<tr><td>MCTS visits</td><td>${n.visits}</td></tr><tr><td>MCTS q</td><td>${n.q === null ? "-" : Number(n.q).toFixed(3)}</td></tr>` : ""}
     ${n.terminal ? `<tr><td>answer</td><td>${esc(n.answer)} ${n.correct ? "✓" : "✗"}</td></tr>` : ""}</table>
     <h3>Step</h3><pre>${esc(n.text)}</pre><h3>Reason</h3><pre>${esc(n.reason)}</pre><h3>Path</h3><pre>${esc(steps.join("\n"))}</pre>`;
}
function draw(i) {
  const t = TREES[i]; svg.innerHTML = "";
  svg.setAttribute("width", t.width); svg.setAttribute("height", t.height);
  document.getElementById("question").textContent = `${t.problem.question}   (answer ${t.problem.answer})`;
  document.getElementById("stats").innerHTML = Object.entries(t.stats).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join("");
  const byId = new Map(t.nodes.map(n => [n.id, n])), path = new Set(t.shortcut), trial = new Set(t.trials);
  const edges = el("g", {}, svg), dots = el("g", {}, svg);
  for (const n of t.nodes) {
    if (n.id === 0) continue; const p = byId.get(n.parent);
    const cls = path.has(n.id) ? "edge shortcut" : trial.has(n.id) ? "edge trial" : "edge";
    el("line", {x1: p.x, y1: p.y, x2: n.x, y2: n.y, class: cls, "data-child": n.id}, edges);
  }
  for (const n of t.nodes) {
    const cls = ["node", n.verdict, n.pruned ? "pruned" : "", n.terminal && n.correct ? "right-answer" : ""].join(" ").trim();
    const c = el("circle", {cx: n.x, cy: n.y, r: n.id === 0 ? 9 : 7, class: cls, id: "node-" + n.id}, dots);
    el("title", {}, c).textContent = n.id === 0 ? t.problem.question : n.text;
    c.addEventListener("click", () => show(t, n)); c.addEventListener("mouseenter", () => show(t, n));
    if (n.score !== null && n.id !== 0) el("text", {x: n.x + 9, y: n.y - 8, class: "score"}, dots).textContent = Number(n.score).toFixed(2);
    if (n.visits !== null) el("text", {x: n.x + 9, y: n.y + 12, class: "mcts"}, dots).textContent = `n=${n.visits} q=${n.q === null ? "-" : Number(n.q).toFixed(2)}`;
  }
  svg.dataset.tree = t.id;
}
TREES.forEach((t, i) => { const o = document.createElement("option"); o.value = i; o.textContent = `${t.id}  (${t.stats.nodes} nodes${t.shortcut.length ? ", solved" : ""})`; pick.appendChild(o); });
pick.addEventListener("change", () => draw(+pick.value));
// Deep links: trees.html?id=TREE&node=N opens that tree with that node selected.
const params = new URLSearchParams(location.search);
const start = Math.max(0, TREES.findIndex(t => t.id === params.get("id")));
pick.value = start; draw(start);
const selected = TREES[start].nodes.find(n => String(n.id) === params.get("node"));
if (selected) show(TREES[start], selected);
</script></body></html>
"""


def run_show(cfg: ShowConfig) -> int:
    """`journey show`: the trees of `cfg.trees` (only `cfg.ids`, when given) drawn to `cfg.out`;
    returns how many. ValueError for an id not in the file."""
    check_output(cfg.out, inputs={"--trees": cfg.trees})
    chosen = load_trees(cfg.trees)
    if cfg.ids:
        known = {t.id for t in chosen}
        missing = [i for i in cfg.ids if i not in known]
        if missing:
            raise ValueError(f"--id {missing[0]}: no such tree in {cfg.trees}")
        chosen = [t for t in chosen if t.id in set(cfg.ids)]
    with output_lock(cfg.out):
        return write_page(chosen, cfg.out, cfg.max_trials, cfg.trial_prob, cfg.seed,
                          title=f"journey trees: {cfg.trees.name}")
