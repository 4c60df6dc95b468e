"""LongTask: pause, resume, terminate and roll back long-running data tasks.

The distribution maps four folders to import names:

- ``longtask/`` (this package): what every component shares: phases, the task-type
  registry and parameter schemas, settings, the database schema (``longtask.db``).
- ``runner/`` -> ``longtask.runner``: the data engine run inside Kubernetes Jobs.
- ``operator/`` -> ``longtask.operator``: the kopf operator.
- ``api/`` -> ``longtask.api``: the FastAPI REST API.
"""

from __future__ import annotations

__version__ = "0.1.0"
