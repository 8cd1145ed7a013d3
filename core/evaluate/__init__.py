"""Evaluation: lip vertex error, lip-sync DTW, FDD, closures (``python -m core evaluate``)."""
