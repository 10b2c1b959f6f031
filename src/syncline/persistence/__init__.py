"""Storage backends for the database engine."""
