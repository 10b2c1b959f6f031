"""The function runtime: decorators, loader, ctx objects, executor."""
