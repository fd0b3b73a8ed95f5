"""`python -m runner` is `tvo`."""

from runner.cli import main

main()
