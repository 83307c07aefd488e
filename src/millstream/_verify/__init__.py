"""The engine of ``millstream verify``: a Jepsen-style check of a streams deployment.

Private: the command line (``millstream.cli.verify``) is the interface. One job per module:

- ``history``  the operations each process records, one JSON line each, and reading them back
- ``analysis`` a pure function from histories to a verdict (lost, duplicated, inconsistent…)
- ``workers``  the producer, consumer and final-reader loops (``python -m`` entry point)
- ``fleet``    starting, SIGKILLing and restarting worker processes
- ``brokers``  killing and restarting nodes of the test Kafka cluster named by its state.json
- ``runner``   one run: scratch stream, workers, faults, progress, final read, clean-up
- ``report``   the verdict as text lines and as JSON
"""
