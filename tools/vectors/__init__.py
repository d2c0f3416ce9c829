"""Vector builders, one module per layer; ``tools/gen_vectors.py`` writes what they build."""
