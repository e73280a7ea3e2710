"""Hugging Face Space entry point: the rexomni-core demo, on ZeroGPU when the Space has it.

The released checkpoint is loaded onto the GPU when one is available (ZeroGPU attaches it per
request through `@spaces.GPU`); otherwise, or if loading fails, the embedded Rex-Omni-nano model
runs on CPU so the Space always works.
"""

import os

try:  # the `spaces` package exists on Hugging Face Spaces only
    import spaces

    gpu = spaces.GPU(duration=120)
except ImportError:
    gpu = None

import torch

from rexomni_core.demo import LAUNCH_OPTIONS, build_demo, load_model, serve
from rexomni_core.model import RELEASED_MODEL_ID

RELEASED = os.environ.get("REXOMNI_MODEL", RELEASED_MODEL_ID)

loaded = load_model(RELEASED) if torch.cuda.is_available() else None
if loaded is None or loaded.error:
    reason = loaded.error if loaded else "no GPU"
    print(f"Space: serving Rex-Omni-nano on CPU ({RELEASED} not loaded: {reason})")
    loaded = load_model(None)
    gpu = None

demo = serve(build_demo(loaded, gpu=gpu, cache_examples=True))

if __name__ == "__main__":
    demo.launch(**LAUNCH_OPTIONS)
