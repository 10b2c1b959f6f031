"""The persistence contract: what every storage backend must do for the engine."""
