"""Tables, queries, migrations and the batched run-log writer."""
