"""`python -m workbench ...`: the command-line interface (see `workbench.cli`)."""

from .cli import main

raise SystemExit(main())
