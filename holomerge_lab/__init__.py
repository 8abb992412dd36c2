"""holomerge_lab: a hands-on toolkit for continual model merging (tangent fine-tuning, Adam-v merging, alignment)."""

__version__ = "0.1.0"
