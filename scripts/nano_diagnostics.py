"""Launches `python -m rexomni_core.nano.diagnostics` (the model card's commands call this script)."""

from rexomni_core.nano.diagnostics import main

if __name__ == "__main__":
    main()
