"""The paper's cross-validation study (``rdcl cv``): splits, the runner, scoring, tables,
statistics and figures.

- :mod:`~rdcl.study.splits`: split files (the official Task-1 split) and seeded splits.
- :mod:`~rdcl.study.rows`: the table rows (baseline, pretrain_<set>, ..., rdcl).
- :mod:`~rdcl.study.runner`: one ``rdcl train`` process per (row, fold, seed), resumable.
- :mod:`~rdcl.study.scoring`: predict and score a fold's test cases.
- :mod:`~rdcl.study.stats`: paired comparisons by training run (t-interval, Wilcoxon and t-test
  p; the primary analysis) and by case (bootstrap CI, wins, Wilcoxon signed-rank).
- :mod:`~rdcl.study.paper_tables`: the paper's table format as Markdown, CSV and JSON.
- :mod:`~rdcl.study.figures`, :mod:`~rdcl.study.outputs`: figures and ``report.md``.
"""
