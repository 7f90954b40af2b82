"""One module per command: the only place that reads and writes files and loads models.

Each stage takes its config (`journey.config`), does the I/O (atomic writes, locks, resume
journals from `journey.runtime`), builds the models (`journey.models.registry`) and hands them to
the pure core (`journey.search`, `journey.longthought`). Stages import downward only.
"""
