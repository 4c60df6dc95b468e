"""The reasons of the LongTask's conditions and Events (CamelCase, as in ``metav1.Condition``)."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """``reason`` of conditions and events (CamelCase, ``metav1.Condition`` pattern)."""

    # before the start
    WAITING_FOR_KEY = "WaitingForKey"
    WAITING_FOR_ORGANIZATION = "WaitingForOrganization"
    PAUSED_BEFORE_START = "PausedBeforeStart"
    INVALID_PARAMS = "InvalidParams"
    # running
    STARTED = "Started"
    RUNNING = "Running"
    RESUMED = "Resumed"
    JOB_RECREATED = "JobRecreated"
    WAITING_FOR_OLD_POD = "WaitingForOldPod"
    # pausing
    PAUSE_REQUESTED = "PauseRequested"
    STOPPED_AT_CHECKPOINT = "StoppedAtCheckpoint"
    STOPPED_WITHOUT_RECORD = "StoppedWithoutRecord"
    # outcomes of the run
    COMPLETED = "Completed"
    COMPLETED_BEFORE_TERMINATE = "CompletedBeforeTerminate"
    RUNNER_FAILED = "RunnerFailed"
    JOB_FAILED = "JobFailed"
    RECORD_MISMATCH = "RecordMismatch"
    # terminate and rollback
    TERMINATE_REQUESTED = "TerminateRequested"
    TERMINATED_KEPT = "TerminatedKept"
    TERMINATED_BEFORE_START = "TerminatedBeforeStart"
    NOTHING_WRITTEN = "NothingWritten"
    ROLLBACK_STARTED = "RollbackStarted"
    ROLLBACK_RUNNING = "RollbackRunning"
    ROLLBACK_JOB_RECREATED = "RollbackJobRecreated"
    ROLLED_BACK = "RolledBack"
    ROLLBACK_FAILED = "RollbackFailed"
    ROLLBACK_INTERRUPTED = "RollbackInterrupted"
    # the throttle
    RATE_LIMIT_CHANGED = "RateLimitChanged"
    # bounds the operator enforces
    SCHEDULED_RESUME = "ScheduledResume"
    MAX_PAUSE_REACHED = "MaxPauseReached"
    MAX_RUNNING_REACHED = "MaxRunningReached"
    # requests that change nothing
    ACTION_IGNORED = "ActionIgnored"
