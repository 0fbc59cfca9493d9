"""The extractive span reader: windows over passages, span decoding, the trained model."""
