"""`tvo aggregate`: statistics over seeds, baseline comparisons, tables, plots and a report.

Modules: load (read a grid dir, compact metrics), stats (pure statistics), tables (groups and
comparisons), formats (CSV/JSON/markdown/terminal), plots, report, pipeline (the whole command).
"""
