"""Development and test infrastructure: throwaway servers started on this machine.

Nothing in ``runner/``, ``operator/`` or ``api/`` imports this package. It starts:

- :mod:`devcluster.postgres`: a throwaway PostgreSQL cluster from the local binaries;
- :mod:`devcluster.kube`: a real Kubernetes control plane (etcd, kube-apiserver,
  kube-controller-manager) with a process kubelet.
"""
