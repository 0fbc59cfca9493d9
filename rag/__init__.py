"""Extractive, cited question answering over news articles."""
