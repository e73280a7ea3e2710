"""Rex-Omni browser demo. `python app.py [--model PATH_OR_ID] [--host H] [--port P] [--share]`.

Starts on 127.0.0.1 with the embedded Rex-Omni-nano model and no network.
"""

from rexomni_core.demo import main

if __name__ == "__main__":
    main()
