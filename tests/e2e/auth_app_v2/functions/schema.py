from syncline import define_schema
from syncline.accounts import auth_tables

schema = define_schema(auth_tables)
