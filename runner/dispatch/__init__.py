"""Running a grid: the driver, preflight checks, its output dir, status and cancel."""
