"""The Model Registry side: the logged-model format, the best model of a sweep, promotion and prediction."""
