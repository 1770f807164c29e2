"""The local EventBridge bus: the template's rules matched against events and delivered to targets.

moto's EventBridge cannot target Step Functions, so the local stack matches events itself (see
:mod:`.eventpattern`) against every enabled rule of the template (``AWS::Events::Rule`` resources
with an ``EventPattern`` and the ``EventBridgeRule``/``CloudWatchEvent`` events of functions and
state machines) and delivers each match to the rule's targets:

- state machine → ``StartExecution`` in moto with the (transformed) event as input;
- Lambda function (ARN with or without alias) → an asynchronous invocation of the local worker;
- SNS topic → ``Publish`` of the (transformed) event as JSON text.

Other target types are logged and skipped. Deliveries are made right away, once: EventBridge's
retry policy and dead-letter queues are not emulated. Only events put on the local stack (alarm
state changes, :meth:`EventBus.put_event`) reach the rules; events an AWS service would emit
itself (S3, Step Functions status changes, ...) are not generated.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .eventpattern import matches, target_input, validate_pattern
from .template import EventRule, RuleTarget, TemplateError

__all__ = ["Delivery", "EventBus"]

log = logging.getLogger(__name__)

_HISTORY = 1000  # deliveries kept in memory


@dataclass
class Delivery:
    """One event delivered (or not) to one target of one matching rule."""

    rule: str  # rule name
    source: str  # the rule's template source ("Rule" or "Resource.Event")
    target_id: str
    target_arn: str
    kind: str
    ok: bool
    detail: str = ""  # execution ARN, message id, or the error
    input: Any = None


class EventBus:
    """Matches events against ``rules`` and hands them to targets via the callables given.

    ``start_execution(state_machine_arn, input_json) -> execution_arn``, ``invoke_function(arn,
    payload) -> None`` (asynchronous) and ``publish(topic_arn, message) -> message_id`` do the work.
    """

    def __init__(
        self,
        rules: Iterable[EventRule],
        *,
        start_execution: Callable[[str, str], str],
        invoke_function: Callable[[str, Any], None],
        publish: Callable[[str, str], str],
        account_id: str,
        region: str,
    ) -> None:
        self.rules = list(rules)
        for rule in self.rules:
            try:
                validate_pattern(rule.pattern, rule.source)
            except ValueError as exc:
                raise TemplateError(f"EventBridge rule {rule.source}: {exc}") from None
        self._start_execution = start_execution
        self._invoke_function = invoke_function
        self._publish = publish
        self.account_id = account_id
        self.region = region
        self.deliveries: list[Delivery] = []  # the last 1,000 deliveries, oldest first

    def normalise(self, event: dict[str, Any], event_bus: str = "default") -> dict[str, Any]:
        """The event as EventBridge delivers it: version, id, time, account, region, resources filled in."""
        if not isinstance(event, dict) or not event.get("source") or not event.get("detail-type"):
            raise ValueError("an event needs at least 'source' and 'detail-type'")
        detail = event.get("detail", {})
        if isinstance(detail, str):
            detail = json.loads(detail) if detail.strip() else {}
        return {
            "version": "0",
            "id": event.get("id") or str(uuid.uuid4()),
            "detail-type": event["detail-type"],
            "source": event["source"],
            "account": event.get("account") or self.account_id,
            "time": event.get("time") or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": event.get("region") or self.region,
            "resources": list(event.get("resources") or []),
            "detail": detail,
        }

    def matching_rules(self, event: dict[str, Any], event_bus: str = "default") -> list[EventRule]:
        return [r for r in self.rules if r.enabled and r.event_bus == event_bus and matches(r.pattern, event)]

    def put_event(self, event: dict[str, Any], event_bus: str = "default") -> list[Delivery]:
        """Deliver ``event`` to the targets of every enabled rule on ``event_bus`` that matches it."""
        event = self.normalise(event, event_bus)
        rules = self.matching_rules(event, event_bus)
        if not rules:
            log.info("event %s %r from %s matched no rule", event["id"], event["detail-type"], event["source"])
        result = []
        for rule in rules:
            for target in rule.targets:
                delivery = self._deliver(rule, target, event)
                result.append(delivery)
                self.deliveries.append(delivery)
        del self.deliveries[:-_HISTORY]
        return result

    def _deliver(self, rule: EventRule, target: RuleTarget, event: dict[str, Any]) -> Delivery:
        delivery = Delivery(rule.name, rule.source, target.id, target.arn, target.kind, ok=False)
        try:
            payload = target_input(
                event,
                input=target.input,
                input_path=target.input_path,
                input_transformer=target.input_transformer,
                rule_name=rule.name,
                rule_arn=rule.arn,
            )
            delivery.input = payload
            if target.kind == "state_machine":
                text = payload if isinstance(payload, str) else json.dumps(payload)
                delivery.detail = self._start_execution(target.arn, text)
            elif target.kind == "function":
                self._invoke_function(target.arn, payload)
                delivery.detail = "invoked asynchronously"
            elif target.kind == "topic":
                text = payload if isinstance(payload, str) else json.dumps(payload)
                delivery.detail = self._publish(target.arn, text)
            else:
                delivery.detail = "target type not supported locally"
                log.warning("rule %s: target %s (%s) is not supported locally", rule.name, target.id, target.arn)
                return delivery
            delivery.ok = True
            log.info(
                "event %s %r → rule %s → %s %s: %s",
                event["id"],
                event["detail-type"],
                rule.name,
                target.kind.replace("_", " "),
                target.arn,
                delivery.detail,
            )
        except Exception as exc:
            delivery.detail = f"{type(exc).__name__}: {exc}"
            log.error(
                "rule %s: delivering event %s to %s failed: %s", rule.name, event["id"], target.arn, delivery.detail
            )
        return delivery
