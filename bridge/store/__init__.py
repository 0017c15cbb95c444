"""All SQL lives here. Services call these functions inside `Database.write`/`read` transactions."""
