"""Experiment configs: ``<model>_<dataset>.py`` files with ``get_config(arg)``."""
