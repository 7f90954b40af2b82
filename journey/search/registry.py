"""Names -> search algorithms: the table `--search` picks from.

Each entry is (the lockstep builder, its config class). A new search algorithm is one module in
`journey/search/` and one line here; the CLI's choices, the config check and the stage read
this table. It lives apart from the algorithms so no algorithm imports it (no import circle).

    builder_cls, config_cls = SEARCHES["mcts"]
"""

from __future__ import annotations

from journey.search.build import SearchConfig, TreeBuilder
from journey.search.mcts import MCTSBuilder, MCTSConfig

SEARCHES: dict[str, tuple[type, type[SearchConfig]]] = {
    "beam": (TreeBuilder, SearchConfig),  # top-K per depth (Part 1)
    "mcts": (MCTSBuilder, MCTSConfig),  # PUCT selection (o1-Coder, rStar-Math)
}
