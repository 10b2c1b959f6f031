"""The database engine: catalog, transactions, read and write sets, queries, the writer."""
