"""A Django + Channels site that shows what django-daphne serves."""
