"""The web console: server-rendered pages (Jinja2) with small hand-written JavaScript and CSS."""
