"""The sweep report (leaderboard, curves, importances, range warnings, one HTML page) and comparisons."""
