"""Training (`train`: one CLI, single process or torchrun) and evaluation (`evaluate`: every model-card figure)."""
