from syncline import define_schema, define_table, v

schema = define_schema({
    "tasks": define_table({
        "title": v.string(),
        "done": v.boolean(),
    }).index("by_done", ["done"]),
})
