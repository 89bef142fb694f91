"""The dispatcher behind :mod:`asyncworkers.dispatch`: one topic per module.

``_options`` checks the call, ``_schedule`` turns a rate or start offsets into intended
start times, ``_calls`` times one task wherever it runs, ``_engine`` feeds the runtime and
collects outcomes, ``_report`` keeps counts, logs and the timeline and computes the TPS.
"""
