"""Rex-Omni-nano: the embedded model's architecture, vocabulary, diagnostics and reports."""
