"""Launches `python -m rexomni_core.nano.ablations` (the model card's commands call this script)."""

from rexomni_core.nano.ablations import main

if __name__ == "__main__":
    main()
