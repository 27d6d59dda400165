"""`python -m churnstream` is the `churnstream` command."""

from churnstream.cli import main

main()
