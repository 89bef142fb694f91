"""The runtime's private modules; import from :mod:`asyncworkers` instead."""
