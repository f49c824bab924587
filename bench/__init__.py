"""The side-by-side benchmark of django-daphne against Daphne, Uvicorn, Hypercorn and Granian.

Run it with ``python bench/run.py`` (see ``--help`` and bench/README.md).
"""
