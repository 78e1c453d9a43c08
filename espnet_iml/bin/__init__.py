"""Command-line entry points (python -m espnet_iml.bin.<name>)."""
