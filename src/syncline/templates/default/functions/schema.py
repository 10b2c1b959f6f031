"""The schema: which tables exist, what their documents hold, and their indexes.

Every write is checked against it; `syncline dev` checks existing data
against it again when you change it.
"""

from syncline import define_schema, define_table, v

schema = define_schema(
    {
        "tasks": define_table(
            {
                "text": v.string(),
                "done": v.boolean(),
            }
        ).index("by_done", ["done"]),
    }
)
