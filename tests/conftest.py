"""Fixtures shared by the whole suite.

Every test runs against real servers: a throwaway PostgreSQL cluster (or the one named by
``LONGTASK_TEST_DATABASE_URL``) and, for the control-plane tests, the local Kubernetes
control plane from :mod:`devcluster.kube`.
"""
