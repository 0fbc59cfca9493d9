"""Evaluation harness: question sets, metrics, calibration and reports for the pipeline."""
