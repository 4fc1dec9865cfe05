"""``python -m orchestrator.cli`` runs the mbctl command line."""

from orchestrator.cli.main import main

main()
