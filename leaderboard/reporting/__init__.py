"""Reporting: the leaderboard's tables, results.csv and plots, pure functions of the records."""
