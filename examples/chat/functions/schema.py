from syncline import define_schema, define_table, v

messages = define_table({"author": v.string(), "body": v.string(), "channel": v.string()})

schema = define_schema({"messages": messages.index("by_channel", ["channel"])})
