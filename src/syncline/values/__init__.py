"""Values: the Convex value model, its wire encoding, index keys, ids, validators."""

from syncline.values.types import INT64_MAX, INT64_MIN, UNDEFINED, Document, Int64, Value

__all__ = ["INT64_MAX", "INT64_MIN", "UNDEFINED", "Document", "Int64", "Value"]
