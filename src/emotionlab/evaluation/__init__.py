"""Evaluation: metrics with confidence intervals, figures, and the evaluate command's library side."""
