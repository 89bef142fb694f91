"""Drop-in replacements for other task runners' APIs, on top of :func:`asyncworkers.dispatch`.

- :mod:`asyncworkers.compat.worker_dispatcher`: worker-dispatcher's ``start(config)`` and its
  ``get_*`` functions; switch with ``from asyncworkers.compat import worker_dispatcher``.
"""
