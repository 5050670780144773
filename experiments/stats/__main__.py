"""``python -m experiments.stats FILE|-``."""

from experiments.stats.cli import main

raise SystemExit(main())
