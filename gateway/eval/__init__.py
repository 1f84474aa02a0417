"""Evaluation of the face pipeline: verification (pairs), identification (1:N), calibration."""
