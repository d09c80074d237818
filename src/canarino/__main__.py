"""``python -m canarino`` runs the command line."""

from .cli import main

main()
