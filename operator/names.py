"""Deterministic, length-safe names for the objects the operator makes.

A Job's name is a DNS-1123 label of at most 63 characters (Kubernetes API conventions; the
Job controller copies it into the ``batch.kubernetes.io/job-name`` label of its pods, and a
label value has the same limit). A name that would be longer, or that has characters a label
may not, keeps a readable prefix and ends in a short hash of the whole task name, as
kubespawner does for pod names: the same task always gets the same name, two tasks never
share one.
"""

from __future__ import annotations

import hashlib
import re

from longtask.taskrecord import Mode

MAX_LABEL = 63  # DNS-1123 label length (RFC 1123, Kubernetes API conventions)
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NOT_LABEL_CHAR = re.compile(r"[^a-z0-9-]+")
_HASH_CHARS = 8  # 32 bits of sha256: collisions among one namespace's tasks are negligible



def is_dns_label(value: str) -> bool:
    """True when ``value`` is a DNS-1123 label: ``[a-z0-9-]``, alphanumeric ends, ≤ 63."""
    return len(value) <= MAX_LABEL and bool(_LABEL.match(value))


def safe_name(prefix: str, name: str, suffix: str) -> str:
    """``<prefix><name><suffix>`` if that is a DNS-1123 label, else a hashed short form.

    The short form is ``<prefix><stem>-<hash8><suffix>``: ``stem`` is ``name`` lowered, with
    characters a label may not hold turned into ``-`` and cut to fit 63 characters; ``hash8``
    is the first 8 hex digits of the SHA-256 of ``name``. ``prefix`` and ``suffix`` must be
    label characters; ``ValueError`` if they leave no room for a stem.
    """
    plain = f"{prefix}{name}{suffix}"
    if is_dns_label(plain):
        return plain
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_CHARS]
    room = MAX_LABEL - len(prefix) - len(suffix) - len(digest) - 1
    if room < 1:
        raise ValueError(f"no room for a name between {prefix!r} and {suffix!r}")
    stem = _NOT_LABEL_CHAR.sub("-", name.lower())[:room].strip("-")
    return f"{prefix}{stem}-{digest}{suffix}" if stem else f"{prefix}{digest}{suffix}"


def job_name(task_name: str, mode: Mode) -> str:
    """The Job of a task in one mode: ``lt-<task>-run`` or ``lt-<task>-rollback``."""
    return safe_name("lt-", task_name, f"-{mode}")


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NOT_LABEL_VALUE_CHAR = re.compile(r"[^-A-Za-z0-9_.]+")


def label_value(value: str) -> str:
    """A label value for ``value``: itself when it is one, else a cut, hashed form.

    A label value is at most 63 characters of ``[-A-Za-z0-9_.]`` with alphanumeric ends
    (Kubernetes "Labels and Selectors"); case is kept, unlike a DNS label.
    """
    if len(value) <= MAX_LABEL and _LABEL_VALUE.match(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:_HASH_CHARS]
    stem = _NOT_LABEL_VALUE_CHAR.sub("-", value)[: MAX_LABEL - _HASH_CHARS - 1]
    stem = stem.strip("-_.")
    return f"{stem}-{digest}" if stem else digest


def event_name(task_name: str, *identity: object) -> str:
    """The name of a transition's Event: ``<task>.<16 hex digits>`` hashed from ``identity``.

    ``identity`` names the transition (task uid, generation, the phase left and since when,
    the reason), so the same decision repeated after a crash gets the same name and the API
    server refuses the second copy: the task's history holds each transition once.
    """
    digest = hashlib.sha256("|".join(map(str, identity)).encode()).hexdigest()[:16]
    return f"{task_name}.{digest}"
