from syncline import define_schema, define_table, v

schema = define_schema(
    {
        "users": define_table(
            {
                "name": v.string(),
                "tokenIdentifier": v.string(),
                "profile": v.optional(v.object({"bio": v.string(), "links": v.array(v.string())})),
            }
        ).index("by_token", ["tokenIdentifier"]),
        "messages": define_table(
            {
                "channel": v.string(),
                "body": v.string(),
                "author": v.id("users"),
                "status": v.union(v.literal("sent"), v.literal("read")),
                "likes": v.int64(),
                "attachment": v.optional(v.id("_storage")),
                "meta": v.record(v.string(), v.any()),
            }
        )
        .index("by_channel", ["channel"])
        .search_index("search_body", search_field="body", filter_fields=["channel"]),
    }
)
