"""What every part shares: domain errors, settings, AWS client factories, S3 error codes, observability.

Imports nothing else of sklambda.
"""
