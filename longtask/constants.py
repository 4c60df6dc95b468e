"""Names shared by the CRD, the operator, the API and the chart: one definition each."""

from __future__ import annotations

GROUP = "collect.atlan.com"
VERSION = "v1alpha1"
KIND = "LongTask"
PLURAL = "longtasks"
SHORT_NAME = "lt"
API_VERSION = f"{GROUP}/{VERSION}"

# Labels put on every Job and pod the operator creates.
LABEL_TASK = f"{GROUP}/task"
LABEL_TASK_UID = f"{GROUP}/task-uid"
LABEL_MODE = f"{GROUP}/mode"  # "run" | "rollback"
LABEL_TYPE = f"{GROUP}/type"

# Annotations a client sets on the LongTask to say who asked for a control action and why.
ANNOTATION_REQUESTED_BY = f"{GROUP}/requested-by"
ANNOTATION_REASON = f"{GROUP}/reason"

# Environment variables through which the operator's Job hands a task to the runner.
ENV_TASK_UID = "LONGTASK_TASK_UID"
ENV_TASK_NAME = "LONGTASK_TASK_NAME"
ENV_TASK_NAMESPACE = "LONGTASK_TASK_NAMESPACE"
ENV_TASK_TYPE = "LONGTASK_TASK_TYPE"
ENV_TASK_ORGANIZATION = "LONGTASK_TASK_ORGANIZATION"
ENV_TASK_PARAMS = "LONGTASK_TASK_PARAMS"  # JSON object
ENV_RATE_LIMIT = "LONGTASK_RATE_LIMIT"  # rows per second, optional
ENV_POD_NAME = "LONGTASK_POD_NAME"
