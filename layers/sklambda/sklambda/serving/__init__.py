"""The request path: artifact loading and runtimes (lean numpy runtime, scikit-learn fallback), request
validation, prediction ids and the per-environment model service. Imports ``core`` and ``registry``;
never scikit-learn or scipy on a lean-served request.
"""
