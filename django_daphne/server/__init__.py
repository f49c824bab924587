"""The server, framework-agnostic: any ASGI 3 application, never Django.

``cli`` (the ``daphne`` command), ``runtime`` (the reactor on the asyncio loop, the
listening ports, lifespan and the graceful stop), ``endpoints``, ``supervisor``
(``--workers``), ``metrics``, ``reactor`` and ``loading`` (importing the application).
The layers below: :mod:`django_daphne.protocols` (the wire protocols),
:mod:`django_daphne.asgi` (the ASGI mapping) and :mod:`django_daphne.core` (the
configuration, the shared state); the Django layer (``apps``, ``conf``, ``checks``,
``management``, ``staticfiles``, ``testing``) is built on top and never imported from here.
"""
