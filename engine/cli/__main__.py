"""``python -m engine.cli`` is ``disparo``."""

from engine.cli import main

if __name__ == "__main__":  # worker processes (hygiene) import the main module again
    main()
