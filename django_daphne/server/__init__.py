"""The server, framework-agnostic: any ASGI 3 application, never Django.

``config`` (every option, once), ``cli`` (the ``daphne`` command), ``runtime`` (the reactor
on the asyncio loop, the listening ports, lifespan and the graceful stop), ``state`` (what
every connection of one server shares), ``endpoints``, ``supervisor`` (``--workers``),
``reactor``, ``loading`` (importing the application) and ``access_log``.  The wire
protocols are in :mod:`django_daphne.protocols`, the ASGI mapping in
:mod:`django_daphne.asgi`; the Django layer (``apps``, ``conf``, ``checks``,
``management``, ``staticfiles``, ``testing``) is built on top and never imported from here.
"""
