"""`python -m runner` is `tvo`."""

from runner.entry import main

main()
