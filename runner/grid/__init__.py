"""A grid as a whole: its file, sweeps, search spaces, expansion to jobs, and the comparison
protocol."""
