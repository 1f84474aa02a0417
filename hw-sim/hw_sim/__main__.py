"""``python -m hw_sim`` == ``gateway-sim``."""

from hw_sim.cli import main

raise SystemExit(main())
