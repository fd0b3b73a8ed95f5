"""`tvo aggregate`: statistics over seeds, baseline comparisons, tables, plots and reports.

Modules: load (read a grid dir, compact metrics), stages (a comparison grid's tuning and final
runs), model (the values passed around), tables (groups and their statistics), baseline (paired
or Welch tests against the baseline, Holm), summary (the steps in order), identical (groups
with bit-identical runs), stats and bootstrap (pure statistics: t intervals and tests; scipy's
bootstrap, IQM, P(A > B)), tasks (statistics across data sets or architectures), tuning (tuning
curves), selection (what the report says of a comparison, answer first), verdicts (a sentence
per method), labels and strategy_labels (what tells groups apart), formats (CSV, JSON, markdown
and terminal cells), contents and document (the report once, as blocks), markdown, html and
html_charts (report.md, report.html), latex, definitions (how each number is computed),
plot_data (what plots draw), figure_layout, figures, calibration_figure, tuning_figures and
plots (matplotlib PNG and SVG), styles (the looks shared by figures and charts), render_worker
(figures drawn in other processes), figure_cache (figures kept when unchanged), pipeline (the
whole command).
"""
