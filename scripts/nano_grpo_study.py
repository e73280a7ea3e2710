"""Launches `python -m rexomni_core.nano.grpo_study` (the model card's commands call this script)."""

from rexomni_core.nano.grpo_study import main

if __name__ == "__main__":
    main()
