"""Everything about a grid as a whole: the CLI, grid files, expansion, dispatch and aggregation."""
