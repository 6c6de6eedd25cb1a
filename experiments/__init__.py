"""Experiments: ``main.py`` launches a config from ``configs/``."""
