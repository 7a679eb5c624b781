"""``python -m engine.cli`` is ``disparo``."""

from engine.cli import main

main()
