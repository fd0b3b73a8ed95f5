"""The `tvo` command line: one module per command, the console, progress and interrupts."""
