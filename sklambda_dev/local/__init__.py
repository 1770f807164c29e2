"""The embedded local stack: template.yaml resolved locally, moto behind a local AWS endpoint that
serves Lambda invocations with per-function workers, an HTTP gateway, the template's schedules run on
a short local interval, Step Functions state machines run by moto's interpreter, alarms evaluated
against moto's CloudWatch and their state changes delivered through the template's EventBridge rules.

Start here: :class:`EmbeddedStack` (``stack.py``). The other modules are its parts and can be used on
their own (``load_template`` for template checks, ``build_event`` / ``scheduled_event`` for handler
tests, ``evaluate_state`` / ``matches`` for alarm and event-pattern semantics).
"""

from .alarms import AlarmTransition, evaluate_state
from .eventbus import Delivery
from .eventpattern import matches
from .gateway import build_event
from .scheduler import scheduled_event
from .stack import EmbeddedStack
from .template import Template, TemplateError, load_template
from .worker import InvokeResult

__all__ = [
    "AlarmTransition",
    "Delivery",
    "InvokeResult",
    "EmbeddedStack",
    "Template",
    "TemplateError",
    "build_event",
    "evaluate_state",
    "load_template",
    "matches",
    "scheduled_event",
]
