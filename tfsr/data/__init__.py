"""Data: benchmark sets for evaluation, and (tfsr.data.*) the training input pipeline."""
