"""Watching served models: the capture record and sink, the capture store, drift statistics and the
drift job, live quality, ground-truth feedback and reports. Imports ``core``, ``registry``, ``serving``.
"""
