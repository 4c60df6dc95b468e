"""The operator's process: ``python -m longtask.operator``.

Reads :class:`~longtask.operator.settings.OperatorSettings` (``LONGTASK_OPERATOR_*``) and the
database URL (``LONGTASK_DATABASE_URL``), logs in with the in-cluster service account or
``$KUBECONFIG``, and runs the handlers of :mod:`longtask.operator.handlers` until SIGTERM or
SIGINT. Watches ``LONGTASK_OPERATOR_WATCH_NAMESPACES`` (comma-separated), or every namespace
when that is empty. Unless ``LONGTASK_OPERATOR_STANDALONE`` is true, the handlers run only
while this process holds the operator's Lease (:mod:`longtask.operator.leader`); a standby
waits. Log lines are JSON objects, the event name in ``event`` (:mod:`longtask.logs`, as
in the runner and the API).
"""

from __future__ import annotations

import asyncio
import logging

import kopf
from kubernetes import client
from longtask.operator import leader
from longtask.operator.kube import Kube
from longtask.operator.settings import OperatorSettings

from longtask import logs


def main() -> None:
    """Run the operator in the foreground; returns when kopf (or a standby) has stopped."""
    settings = OperatorSettings()  # type: ignore[call-arg]  # from the environment
    logs.setup(settings.log_level)
    if settings.log_level != "DEBUG":
        # asyncio's own lines are noise outside debugging (kopf's configure() did the same).
        logging.getLogger("asyncio").setLevel(logging.WARNING)
    if settings.log_level != "DEBUG":
        # kopf says "Handler 'x' succeeded" at INFO for every call, once a second per task
        # with the progress timer; our own lines say what was done. Its warnings stay.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        # The client's election says at INFO what it tries every retry period; leader.py
        # logs the transitions and the failed renewals itself.
        logging.getLogger("leaderelection").setLevel(logging.WARNING)
    # Nothing is read at import: the handlers are registered with these settings, which
    # kopf hands to the start-up handler in its memo.
    from longtask.operator import handlers

    handlers.register(settings)
    memo = kopf.Memo(settings=settings)

    clusterwide, namespaces = not settings.namespaces, settings.namespaces
    if settings.standalone:
        kopf.run(clusterwide=clusterwide, namespaces=namespaces, standalone=True,
                 liveness_endpoint=settings.liveness_endpoint or None, memo=memo)
        return

    # The client loads its API classes on first use, seconds of CPU on a busy node: load
    # the ones the handlers use now, before standing for election, not after winning it.
    with client.ApiClient() as unused:
        Kube(unused)

    # kopf's own peering stays off: the Lease decides which process is active, and this
    # process serves the liveness probe itself, as a standby too.
    async def operate(ready: asyncio.Event) -> None:
        await kopf.operator(clusterwide=clusterwide, namespaces=namespaces, standalone=True,
                            ready_flag=ready, memo=memo)

    leader.run_elected(settings, operate)


if __name__ == "__main__":
    main()
