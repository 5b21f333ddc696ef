"""Alembic's environment (env.py, which runs them on the live database engine) and the
migrations themselves (versions/), which import nothing from the live package."""
