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
# Put on a LongTask by the API: its spec.organization, so one organization's tasks are
# listed by a label selector rather than by reading the namespace (a slug longer than a
# label value's 63 characters goes without).
LABEL_ORGANIZATION = f"{GROUP}/organization"
LABEL_VALUE_MAX = 63  # characters of a label value (Kubernetes, "Labels and Selectors")

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

# The runner's exit codes. The operator's Job maps EXIT_FAILED to a podFailurePolicy
# ``FailJob`` rule (retrying a bad file cannot help); any other non-zero code is a stop or
# a crash, after which a new pod resumes from the last checkpoint.
EXIT_DONE = 0  # the whole task (or rollback) is complete
EXIT_FAILED = 3  # permanent failure: unreadable file, invalid params, too many row errors
EXIT_STOPPED = 75  # stopped by SIGTERM before completion (EX_TEMPFAIL, sysexits.h)
EXIT_FENCED = 76  # another runner took the lease: this one wrote nothing and stepped aside

# Appended for the operator's Job manifests.
ENV_DATABASE_URL = "LONGTASK_DATABASE_URL"  # read by DatabaseSettings (longtask/settings.py)
ENV_PARALLELISM = "LONGTASK_PARALLELISM"  # spec.parallelism: concurrent chunk workers, >= 1

# Finalizer the operator puts on a LongTask so a deleted task stops its runner cleanly.
FINALIZER = f"{GROUP}/cleanup"

# The runner's container name in both Jobs (``kubectl logs job/<name> -c runner``).
RUNNER_CONTAINER = "runner"
