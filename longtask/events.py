"""The one builder of the Kubernetes Events the operator and the API post on a LongTask.

Both components post ``core/v1`` Events, so ``kubectl describe lt`` and the API's history
show one kind of record: the transition's (the operator, named after the transition so it is
posted once) and the control request's (the API, with its ``action``).
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Mapping
from typing import Any

from longtask.constants import API_VERSION, KIND

EVENT_MESSAGE_MAX = 1024  # characters of a message kept; the server refuses longer ones
INSTANCE = socket.gethostname()[:128]  # the pod's name in a cluster


def event_for(obj: Mapping[str, Any], type_: str, reason: str, message: str, *,
              component: str, name: str | None = None, action: str | None = None,
              moment: dt.datetime | None = None) -> dict[str, Any]:
    """A ``core/v1`` Event about ``obj`` (a LongTask as read from the server), from
    ``component``, at ``moment`` (now when not given).

    ``name`` names the Event (posting it again is refused as already there); without one
    the server makes a name from the task's. With ``action`` (what a client asked for) the
    Event also carries its ``eventTime`` to the microsecond, so requests made within one
    second keep their order. The message is cut to :data:`EVENT_MESSAGE_MAX` characters.
    """
    meta = obj["metadata"]
    moment = moment or dt.datetime.now(dt.UTC)
    now = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    naming = {"name": name} if name else {"generateName": f"{meta['name']}."}
    event: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {**naming, "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", API_VERSION),
            "kind": obj.get("kind", KIND),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:EVENT_MESSAGE_MAX],
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": INSTANCE,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    if action is not None:
        event["action"] = action
        event["eventTime"] = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return event
