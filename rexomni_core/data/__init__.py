"""Data engines: nano-world generators (worlds), task samplers, real-data formats, engines.

Training code takes `samplers.ConversationStream` (or `samplers.sample_conversation` on one
`worlds.generate(...)` scene); users with real data read it through `formats`.
"""
