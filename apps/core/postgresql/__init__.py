"""Django's PostgreSQL backend with connections that keep to the request's database budget (base.py)."""
