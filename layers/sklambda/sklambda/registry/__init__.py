"""The model registry contract: the manifest and alias documents, the feature schema, and the S3 store
that keeps versions immutable and moves aliases atomically. Imports ``core`` only.
"""
