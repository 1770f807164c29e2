"""The embedded local stack: template.yaml resolved locally, moto, per-function workers, an HTTP gateway,
and the template's schedules run on a short local interval.

Start here: :class:`LocalStack` (``stack.py``). The other modules are its parts and can be used on
their own (``load_template`` for template checks, ``build_event`` / ``scheduled_event`` for handler
tests).
"""

from .gateway import build_event
from .scheduler import scheduled_event
from .stack import LocalStack
from .template import Template, TemplateError, load_template
from .worker import InvokeResult

__all__ = [
    "InvokeResult",
    "LocalStack",
    "Template",
    "TemplateError",
    "build_event",
    "load_template",
    "scheduled_event",
]
