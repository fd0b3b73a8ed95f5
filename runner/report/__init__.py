"""`tvo aggregate`: statistics over seeds, baseline comparisons, tables, plots and reports.

Modules: load (read a grid dir, compact metrics), model (the values passed around), tables
(groups and their statistics), compare (paired/Welch tests against the baseline, Holm), stats
(pure statistics), labels and strategy_labels (what tells groups apart), formats (CSV, JSON,
markdown, terminal), latex, plot_data (what plots draw), figures and plots (matplotlib PNG and
SVG), styles (colours shared by figures and charts), render_worker (figures drawn in other
processes), figure_cache (figures kept when unchanged), html_charts and html_report
(report.html), definitions (how each number is computed), report (report.md), pipeline (the
whole command).
"""
