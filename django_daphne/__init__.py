"""django-daphne: the ASGI server for Django, compatible with Daphne's command line."""

__version__ = "0.1.0"
