"""Evaluators (numpy only; pycocotools is imported lazily where AP is asked for)."""
