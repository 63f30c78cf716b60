"""Migration scripts, one per schema revision, named ``NNNN_title.py``."""
