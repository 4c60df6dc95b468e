"""Development and test infrastructure: throwaway servers started on this machine.

Nothing in ``runner/``, ``operator/`` or ``api/`` imports this package. It starts:

- :mod:`devcluster.postgres`: a throwaway PostgreSQL cluster from the local binaries;
- :mod:`devcluster.kube`: a real Kubernetes cluster (etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler) with a real node — containerd and the kubelet,
  :mod:`devcluster.node` — running the images of :mod:`devcluster.images`, or with the
  process kubelet (:mod:`devcluster.kubelet`).
"""
