"""Production static files for ``manage.py daphne --static``: the ASGI handler that serves
``STATIC_ROOT`` (``handler``) and the storage that writes its precompressed siblings
(``storage``)."""
