from syncline import define_schema, define_table, v
from syncline.accounts import auth_tables

schema = define_schema(
    {**auth_tables, "notes": define_table({"userId": v.id("users"), "text": v.string()})}
)
