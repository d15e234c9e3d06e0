"""Tracking: the MLflow contract (names shared through MLflow), the single writer, and queries of sweeps."""
