"""Training jobs for the models this project ships (the span reader)."""
