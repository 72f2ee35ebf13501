"""Where variances live after a run: the store a finance team works from."""
