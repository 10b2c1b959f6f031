"""Two versions of one small project, for the deploy tests (server and end to end).

``V1`` -> ``V2``: the function ``tasks:list`` changes, the table gains a field
and an index, a query using both appears. ``VIOLATING``: ``V2`` with the new
field required, which documents written by ``V1`` lack.
"""

from __future__ import annotations

V1 = {
    "schema.py": """
        from syncline import define_schema, define_table, v
        schema = define_schema({"tasks": define_table({"title": v.string()})})
    """,
    "tasks.py": """
        from syncline import mutation, query, v

        @query
        def list(ctx):
            return ["v1:" + d["title"] for d in ctx.db.query("tasks").collect()]

        @mutation(args={"title": v.string()})
        def add(ctx, title):
            return ctx.db.insert("tasks", {"title": title})
    """,
}

#: the function changes, the table gains a field and an index
V2 = {
    "schema.py": """
        from syncline import define_schema, define_table, v
        schema = define_schema({
            "tasks": define_table({"title": v.string(), "done": v.optional(v.boolean())})
                .index("by_title", ["title"]),
        })
    """,
    "tasks.py": """
        from syncline import mutation, query, v

        @query
        def list(ctx):
            return ["v2:" + d["title"] for d in ctx.db.query("tasks").collect()]

        @query
        def open(ctx):
            rows = ctx.db.query("tasks").with_index("by_title", lambda q: q.eq("title", "a"))
            return len(rows.collect())

        @mutation(args={"title": v.string()})
        def add(ctx, title):
            return ctx.db.insert("tasks", {"title": title, "done": False})
    """,
}

#: stored documents lack the required field: refused
VIOLATING = {
    **V2,
    "schema.py": """
        from syncline import define_schema, define_table, v
        schema = define_schema({
            "tasks": define_table({"title": v.string(), "done": v.boolean()})
                .index("by_title", ["title"]),
        })
    """,
}
