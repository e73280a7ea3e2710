"""Data engines that turn one kind of annotation into another (mask → point, caption → boxes)."""
