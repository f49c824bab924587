"""The core: what every layer above reads, importing nothing of ours above it.

``config`` (the :class:`~.config.Config` object), ``options`` (the ``OPTIONS`` table:
every option, once), ``converters`` (how each option's value is read and checked),
``state`` (what every connection of one server shares: the coarse clock, the ``Date``
header, the sweep that fires every deadline), ``counts`` (what the hot path counts for the
metrics), ``errors`` (a refused request, the ASGI errors, the server's own error pages),
``syntax`` (the HTTP field syntax every parser follows), ``trust`` (the trusted proxies)
and ``access_log`` (its formats and its writer).

The layers, each importing only those below it (``tests/project/test_static_analysis.py``
enforces it, ``TYPE_CHECKING`` and function-local imports included)::

    Django layer   apps, conf, checks, management/, staticfiles/, testing, daphne_compat
    server/        runtime, cli, supervisor, endpoints, metrics, listeners, ...
    protocols/     connection, http1, http2/, websocket: the wire protocols
    asgi/          http, websocket, lifespan, scope: the one ASGI mapping and its wire
                   contracts
    core/          this package
"""
