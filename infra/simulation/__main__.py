"""``python -m infra.simulation --users 2000 --seed 0``: the in-process run's summary as JSON."""

from infra.simulation.offline import main

raise SystemExit(main())
