"""Fuzz targets and their runner (python -m tools.fuzz)."""
