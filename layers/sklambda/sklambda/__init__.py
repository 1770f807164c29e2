"""sklambda runtime library: the S3 model registry, artifact loading, input validation and serving.

Deployed as a Lambda layer. Nothing here talks to AWS or imports scikit-learn at import time.
"""

__version__ = "0.1.0"
