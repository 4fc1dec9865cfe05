"""``python -m orchestrator`` runs the mbctl command line."""

from orchestrator.cli.main import main

main()
