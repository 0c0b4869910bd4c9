"""Tables, engine wiring, migrations and the queries that need SQL."""
