"""Harness self-test material: a toy layer with vectors, and a fake adapter that misbehaves."""
