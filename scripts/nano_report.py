"""Launches `python -m rexomni_core.nano.report` (the model card's commands call this script)."""

from rexomni_core.nano.report import main

if __name__ == "__main__":
    main()
