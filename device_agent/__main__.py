"""`python -m device_agent ...` is `paybridge-agent ...`."""

from device_agent.cli import main

raise SystemExit(main())
