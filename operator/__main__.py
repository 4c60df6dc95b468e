"""The operator's process: ``python -m longtask.operator``.

Reads :class:`~longtask.operator.settings.OperatorSettings` (``LONGTASK_OPERATOR_*``) and the
database URL (``LONGTASK_DATABASE_URL``), logs in with the in-cluster service account or
``$KUBECONFIG``, and runs the handlers of :mod:`longtask.operator.handlers` until SIGTERM or
SIGINT. Watches ``LONGTASK_OPERATOR_WATCH_NAMESPACES`` (comma-separated), or every namespace
when that is empty. Log lines are JSON objects, the event name in ``message``.
"""

from __future__ import annotations

import logging

import kopf
from longtask.operator.settings import OperatorSettings


def main() -> None:
    """Run the operator in the foreground; returns when kopf has stopped."""
    settings = OperatorSettings()  # type: ignore[call-arg]  # from the environment
    kopf.configure(log_format=kopf.LogFormat.JSON, log_refkey="object")
    logging.getLogger().setLevel(settings.log_level)
    if settings.log_level != "DEBUG":
        # kopf says "Handler 'x' succeeded" at INFO for every call, once a second per task
        # with the progress timer; our own lines say what was done. Its warnings stay.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Importing the module registers its handlers with kopf's default registry.
    from longtask.operator import handlers  # noqa: F401

    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=settings.standalone,
        peering_name=None if settings.standalone else settings.peering_name,
        liveness_endpoint=settings.liveness_endpoint or None,
    )


if __name__ == "__main__":
    main()
