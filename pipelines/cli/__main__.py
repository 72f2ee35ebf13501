"""`python -m clearline.pipelines.cli`: the same command line, for a process that starts another."""

from clearline.pipelines.cli import main

main()
